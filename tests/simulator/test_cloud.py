"""The fake SYNQ cloud, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from simulator.cloud import FEEDBACK_PATH, FakeCloud

KEY = "the-api-key"  # what the shared `cloud` fixture accepts
WAIT = 5.0
GOOD = {
    "cabinets": [{"key": 5, "front_status": "open", "rear_status": "closed"}],
    "locker_info": {"ip": "10.0.0.2", "firmware": "1.0.0"},
    "event": {"type": "door"},
}


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as s:
        yield s


async def post(session, cloud, body=None, *, data=None, key=KEY):
    headers = {} if key is None else {"api-key": key}
    async with session.post(
        cloud.url + FEEDBACK_PATH, json=body, data=data, headers=headers
    ) as resp:
        return resp.status, resp.headers, await resp.json()


async def test_accepts_and_records(cloud, session):
    status, _, answer = await post(session, cloud, GOOD)
    assert (status, answer) == (200, {"message": "Updated successfully"})
    second = {
        "cabinets": [
            {"key": 1, "front_status": None, "rear_status": "open"},
            {"key": 2, "front_status": "closed"},
        ]
    }
    assert (await post(session, cloud, second))[0] == 200

    assert [r["body"] for r in cloud.received] == [GOOD, second]
    assert all(isinstance(r["received_at"], float) for r in cloud.received)
    assert [c["key"] for c in cloud.cabinet_updates()] == [5, 1, 2]
    async with session.get(cloud.url + "/_sim/feedback") as resp:
        assert [r["body"] for r in await resp.json()] == [GOOD, second]


@pytest.mark.parametrize("key", [None, "", "wrong"])
async def test_unauthorized(cloud, session, key):
    status, _, answer = await post(session, cloud, GOOD, key=key)
    assert (status, answer) == (401, {"error": "Unauthorized", "message": "Invalid API key"})
    assert cloud.received == []
    assert cloud.rejected[-1]["status"] == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "cabinets"),
        ([], "body"),
        ({"cabinets": "x"}, "cabinets"),
        ({"cabinets": [{"front_status": "open"}]}, "cabinets.0.key"),
        ({"cabinets": [{"key": "5", "front_status": "open"}]}, "cabinets.0.key"),
        ({"cabinets": [{"key": 5, "front_status": "ajar"}]}, "cabinets.0.front_status"),
        ({"cabinets": [{"key": 5}]}, "cabinets.0.front_status"),
        (
            {"cabinets": [{"key": 5, "front_status": None, "rear_status": None}]},
            "cabinets.0.front_status",
        ),
        ({"cabinets": [{"key": 5, "front_status": "open"}], "event": {"type": 1}}, "event.type"),
    ],
)
async def test_invalid_body(cloud, session, body, field):
    status, _, answer = await post(session, cloud, body)
    assert status == 422
    assert field in answer["errors"], answer
    assert all(isinstance(m, str) for msgs in answer["errors"].values() for m in msgs)
    assert isinstance(answer["message"], str)
    assert cloud.received == []
    assert cloud.rejected[-1]["body"] == body


async def test_not_json(cloud, session):
    status, _, answer = await post(session, cloud, data=b"{not json")
    assert status == 422
    assert "body" in answer["errors"]
    assert cloud.received == []


async def test_fail_next_with_retry_after(cloud, session):
    cloud.fail_next(503, count=2, retry_after=1.5)
    for _ in range(2):
        status, headers, _ = await post(session, cloud, GOOD)
        assert status == 503
        assert headers["Retry-After"] == "2"  # whole seconds, rounded up
    cloud.fail_next(429)
    status, headers, _ = await post(session, cloud, GOOD)
    assert status == 429 and "Retry-After" not in headers
    assert cloud.rejected[-1]["status"] == 429
    assert cloud.received == []
    assert (await post(session, cloud, GOOD))[0] == 200


async def test_drop_next(cloud, session):
    cloud.drop_next(1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, cloud, GOOD)
    assert cloud.received == []

    cloud.drop_next(1, after_processing=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, cloud, GOOD)
    assert len(cloud.received) == 1  # taken, but the answer was lost
    assert (await post(session, cloud, GOOD))[0] == 200


async def test_delay_still_answers(cloud, session):
    cloud.delay = 0.05
    started = time.monotonic()
    assert (await post(session, cloud, GOOD))[0] == 200
    assert time.monotonic() - started >= 0.05
    cloud.heal()
    assert cloud.delay == 0.0


async def test_wait_for(cloud, session):
    waiter = asyncio.create_task(cloud.wait_for(lambda c: c["key"] == 7, WAIT))
    await asyncio.sleep(0)
    await post(session, cloud, GOOD)
    assert not waiter.done()
    await post(session, cloud, {"cabinets": [{"key": 7, "front_status": "closed"}]})
    assert await waiter == {"key": 7, "front_status": "closed"}

    # Already received: answers at once; a body-level predicate works too.
    body = await cloud.wait_for(lambda b: b["event"]["type"] == "door", WAIT)
    assert body == GOOD
    with pytest.raises(TimeoutError):
        await cloud.wait_for(lambda c: c["key"] == 99, 0.05)


async def test_close_is_idempotent():
    fake = FakeCloud(KEY)
    with pytest.raises(RuntimeError):
        _ = fake.url
    await fake.start()
    assert fake.url.startswith("http://127.0.0.1:")
    await fake.close()
    await fake.close()


def test_spec_copy_matches_shared():
    here = Path(__file__).resolve()
    copy = here.parents[2] / "simulator" / "spec" / "synq-lockers-api.yaml"
    shared = here.parents[3] / "shared" / "spec" / "synq-lockers-api.yaml"
    if not shared.exists():
        pytest.skip("shared spec not present")
    assert copy.read_bytes() == shared.read_bytes()


async def raw_post(session, cloud, body):
    async with session.post(
        cloud.url + FEEDBACK_PATH,
        json=body,
        headers={"api-key": KEY},
        allow_redirects=False,
        auto_decompress=False,
    ) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_odd_acceptances_are_recorded_and_undecodable(cloud, session):
    cloud.odd_next("not_utf8")
    cloud.odd_next("false_gzip")
    status, _, body = await raw_post(session, cloud, GOOD)
    assert status == 200
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    status, headers, body = await raw_post(session, cloud, GOOD)
    assert (status, headers["Content-Encoding"]) == (200, "gzip")
    assert not body.startswith(b"\x1f\x8b")  # no gzip magic: a liar
    assert len(cloud.received) == 2


async def test_odd_refusals_are_not_recorded(cloud, session):
    cloud.odd_next("redirect")
    cloud.odd_next("retry_after", 2, retry_after="soon")
    status, headers, _ = await raw_post(session, cloud, GOOD)
    assert status == 307 and headers["Location"].endswith("/_sim/redirected")
    for _ in range(2):
        status, headers, _ = await raw_post(session, cloud, GOOD)
        assert (status, headers["Retry-After"]) == (503, "soon")
    assert cloud.received == [] and cloud.redirected == []
    given = [(a["kind"], a["retry_after"]) for a in cloud.odd_answers]
    assert given == [("redirect", None), ("retry_after", "soon"), ("retry_after", "soon")]
    async with session.post(cloud.url + "/_sim/redirected", headers={"api-key": KEY}):
        pass
    assert cloud.redirected == [{"method": "POST", "api_key_sent": True}]
    with pytest.raises(ValueError):
        cloud.odd_next("teapot")
    cloud.odd_next("redirect")
    cloud.heal()
    assert (await raw_post(session, cloud, GOOD))[0] == 200


async def test_answer_delay_records_first_then_answers_late(cloud, session):
    cloud.answer_delay_s = 0.3
    short = aiohttp.ClientTimeout(total=0.1)
    with pytest.raises(TimeoutError):
        async with session.post(
            cloud.url + FEEDBACK_PATH, json=GOOD, headers={"api-key": KEY}, timeout=short
        ):
            pass
    assert len(cloud.received) == 1  # taken at once; only the answer was slow
    cloud.heal()
    assert cloud.answer_delay_s == 0.0


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


async def test_the_cloud_listens_below_the_ephemeral_range_and_comes_back_there():
    """A CI run failed when an outgoing connection took the fake cloud's port during a
    simulated outage (an ephemeral port): "address already in use", a 500 on cloud_up."""
    low = ephemeral_low()
    cloud = FakeCloud("k")
    await cloud.start()
    try:
        port = int(cloud.url.rsplit(":", 1)[1])
        assert 10000 <= port < low
        await cloud.close()
        await cloud.start()
        assert cloud.url.endswith(f":{port}")
    finally:
        await cloud.close()


def test_a_port_chosen_is_not_chosen_again_by_another_process(tmp_path, monkeypatch):
    """Two test workers chose the same free port before either bound it: both started
    on it and one agent stopped at start. A choice is claimed for CLAIM_S, for every
    process of this user's."""
    import os
    import subprocess
    import sys

    from simulator.cloud import server

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the claims folder: here, not in /tmp
    monkeypatch.setattr(server.tempfile, "tempdir", None)  # read TMPDIR again
    assert server.claim(20001)
    ask = "import sys; from simulator.cloud.server import claim; sys.exit(claim(20001))"
    other = subprocess.run([sys.executable, "-c", ask], env=os.environ, timeout=30)
    assert other.returncode == 0  # claim() was False in the other process
    marker = tmp_path / f"locker-agent-ports-{os.getuid()}" / "20001"
    past = time.time() - server.CLAIM_S - 1
    os.utime(marker, (past, past))  # CLAIM_S on: long bound, or given up
    other = subprocess.run([sys.executable, "-c", ask], env=os.environ, timeout=30)
    assert other.returncode == 1
    assert not server.claim(20001)  # and claimed again by the other


def test_the_claims_folder_is_never_written_through_a_link(tmp_path, monkeypatch):
    import os

    from simulator.cloud import server

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"locker-agent-ports-{os.getuid()}").symlink_to(elsewhere)
    monkeypatch.setattr(server.tempfile, "gettempdir", lambda: str(tmp_path))
    assert server.claim(20002)  # as good as random, as before claims
    assert list(elsewhere.iterdir()) == []


def test_a_seeded_random_module_does_not_choose_the_port(monkeypatch):
    """Hypothesis seeds the random module with 0 for each example: every worker chose
    22623, then 23781, at the same time."""
    import random

    from simulator.cloud import server

    monkeypatch.setattr(server, "claim", lambda port: True)  # choice alone
    random.seed(0)
    first = server.outside_ephemeral("127.0.0.1")
    random.seed(0)
    assert server.outside_ephemeral("127.0.0.1") != first


def test_a_claim_dated_ahead_by_a_clock_set_back_is_not_held_for_ever(tmp_path, monkeypatch):
    """A clock set back by an hour (NTP after a boot without RTC) left every claim of
    the last hour dated in the future: "age < a minute" held those ports for the hour."""
    import os

    from simulator.cloud import server

    monkeypatch.setattr(server.tempfile, "gettempdir", lambda: str(tmp_path))
    assert server.claim(20003)
    marker = server.claims() / "20003"
    ahead = time.time() + 3600
    os.utime(marker, (ahead, ahead))
    assert server.claim(20003)  # stale: taken again, and now dated now
    assert not server.claim(20003)
    soon = time.time() + 5  # a few seconds ahead (another host's clock): still a claim
    os.utime(marker, (soon, soon))
    assert not server.claim(20003)


def test_an_old_claim_is_taken_again_by_one_process_alone(tmp_path, monkeypatch):
    """Processes that found the same old claim each took it (stat, then utime): both
    then bound the port. Eight processes race for one old claim: exactly one wins."""
    import os
    import subprocess
    import sys

    from simulator.cloud import server

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(server.tempfile, "tempdir", None)
    assert server.claim(20004)
    marker = server.claims() / "20004"
    go = tmp_path / "go"
    ask = (
        "import os, sys, time\n"
        "from simulator.cloud import server\n"
        "utime = os.utime\n"
        "def slow(*a, **k):\n"  # the window between looking and taking, made wide
        "    time.sleep(0.3)\n"
        "    utime(*a, **k)\n"
        "os.utime = slow\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.001)\n"
        "sys.exit(server.claim(20004))\n"
    )
    for _ in range(3):
        past = time.time() - server.CLAIM_S - 1
        os.utime(marker, (past, past))
        go.unlink(missing_ok=True)
        racers = [subprocess.Popen([sys.executable, "-c", ask]) for _ in range(8)]
        time.sleep(1.5)  # all of them waiting for the word
        go.touch()
        won = [p.wait(timeout=30) for p in racers]
        assert won.count(1) == 1, won
