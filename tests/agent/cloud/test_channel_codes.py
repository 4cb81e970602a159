"""The ``codes`` message on the command channel: put and drop answered like a command,
refused whole with the field named, bounded in what a peer can make the locker keep."""

import hashlib
import json

import pytest
from pydantic import SecretStr

from agent.cloud.channel import CommandChannel
from agent.codes.held import HeldCodes
from agent.codes.message import MAX_PUT, parse_codes
from agent.storage.codes import CodeStore

KEY = "the-api-key"
WAIT = 5.0


def sha(code):
    return hashlib.sha256(code.encode()).hexdigest()


def put(code, key=5, order=46188):
    return {
        "key": key,
        "rearload": False,
        "order_id": order,
        "sha256": sha(code),
        "expires_at": "2099-12-06T10:00:00Z",
    }


@pytest.fixture
async def held(tmp_path, locker):
    store = CodeStore(tmp_path / "codes.sqlite3")
    doors = {k: ("front", "rear") if c.rear else ("front",) for k, c in locker.cabinets.items()}
    yield HeldCodes(store, doors, max_codes=50)
    store.close()


@pytest.fixture
async def channel(cloud, locker, actuator, held):
    channel = CommandChannel(
        cloud.commands_url,
        SecretStr(KEY),
        locker,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        codes=lambda data: held.provision(parse_codes(data)),
    )
    await channel.start()
    await cloud.wait_for_agent(WAIT)
    yield channel
    await channel.close()


async def test_codes_are_put_and_dropped_and_answered_like_a_command(cloud, channel, held):
    answer = await cloud.send_command(
        {"id": "c1", "type": "codes", "put": [put("a"), put("b", 4, 9)]}
    )
    assert answer == {"id": "c1", "ok": True, "held": 2, "put": 2, "dropped": 0}
    assert held.match("a") is not None
    answer = await cloud.send_command({"id": 2, "type": "codes", "drop": [sha("a")]})
    assert answer == {"id": 2, "ok": True, "held": 1, "put": 0, "dropped": 1}
    assert held.match("a") is None and held.match("b") is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "codes", "put": [{**put("a"), "sha256": "nothex"}]}, "put.0.sha256"),
        ({"type": "codes", "put": [put("a", key=99)]}, "put.0.key"),
        ({"type": "codes", "put": [{**put("a"), "open_code": "a"}]}, "put.0.open_code"),
        ({"type": "codes", "put": [put(str(i)) for i in range(MAX_PUT + 1)]}, "put"),
        ({"type": "order", "put": []}, "type"),
    ],
)
async def test_a_bad_codes_message_is_refused_whole_naming_the_field(
    cloud, channel, held, body, field
):
    answer = await cloud.send_command({"id": "bad", **body})
    assert answer["ok"] is False and answer["id"] == "bad"
    assert answer["error"]["type"] == "INVALID_REQUEST"
    assert field in answer["error"]["errors"]
    assert len(held) == 0


async def test_a_peer_cannot_grow_the_store_past_its_bound(cloud, channel, held):
    for n in range(5):
        body = {
            "id": n,
            "type": "codes",
            "put": [put(f"{n}-{i}", key=i % 6, order=f"{n}-{i}") for i in range(12)],
        }
        answer = await cloud.send_command(body)
    assert answer["ok"] is False and answer["error"]["type"] == "CONFLICT"
    assert len(held) <= held.max_codes


async def test_a_codes_message_without_an_id_is_refused(cloud, channel):
    await cloud.send_raw(json.dumps({"type": "codes", "put": []}))
    answer = await cloud.wait_for_answer(lambda a: a.get("ok") is False, WAIT)
    assert answer["id"] is None and "id" in answer["error"]["errors"]


async def test_a_repeated_message_changes_nothing_more_and_a_cut_one_nothing(cloud, channel, held):
    body = {"id": "again", "type": "codes", "put": [put("a"), put("b", 4, 9)], "drop": []}
    first = await cloud.send_command(body)
    second = await cloud.send_command(body)  # the cloud resends an id it heard nothing for
    assert first["ok"] and second["ok"] and second["held"] == 2 and len(held) == 2
    text = json.dumps({"id": "cut", "type": "codes", "put": [put("c", 3, 11)]})
    await cloud.send_raw(text[: len(text) // 2])  # a message cut short
    answer = await cloud.wait_for_answer(lambda a: a.get("ok") is False, WAIT)
    assert answer["error"]["type"] == "INVALID_REQUEST" and held.match("c") is None
