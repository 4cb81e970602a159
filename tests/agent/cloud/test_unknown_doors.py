"""Bodies for doors not known: said as ``null`` where the cloud takes it, never a guess,
and never skipped for want of a door (ADR 0019). The clouds are real aiohttp servers
on loopback: the fake SYNQ cloud (the spec's validator), and a stricter one that
refuses an empty ``cabinets`` list as Laravel's ``required`` does."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from agent.cloud.feedback import build_body, locker_info
from agent.cloud.uplink import EMPTY_REFUSED, Uplink
from agent.codes.entries import CodeOpened
from agent.locker.cabinet import Cabinet, Door
from agent.locker.journal import BoardSeen, BusSeen
from agent.locker.locker import Locker
from agent.locker.supervision import AlarmChange
from simulator.cloud.spec import FeedbackValidator, load_feedback_schema
from simulator.run import free_port

KEY = "the-api-key"  # what the shared `cloud` fixture accepts


def test_a_door_not_known_is_null_and_one_left_out_stays_out():
    body = build_body(
        [
            {"key": 0, "front_status": "closed", "rear_status": None},
            {"key": 1, "rear_status": "open"},
        ],
        "active",
        locker_info(),
    )
    assert body["cabinets"] == [
        {"key": 0, "front_status": "closed", "rear_status": None},
        {"key": 1, "rear_status": "open"},
    ]
    assert body["event"] == {"type": "active"}  # the event's unset fields stay out


def test_a_cabinet_with_no_door_known_is_no_entry_and_no_cabinet_is_a_body():
    with pytest.raises(ValidationError):  # the cloud refuses it: never built
        build_body([{"key": 0, "front_status": None}], "active", locker_info())
    assert build_body([], "bus_offline", locker_info(), {"bus": "rs485", "boards": [0]}) == {
        "cabinets": [],
        "locker_info": locker_info().model_dump(),
        "event": {"type": "bus_offline", "bus": "rs485", "boards": [0]},
    }


def test_the_spec_takes_these_bodies_and_refuses_a_cabinet_with_no_status():
    """Checked by the fake cloud's validator: the spec's document, and its prose rule
    read as the cloud's Laravel reads it (null counts as absent)."""
    spec = FeedbackValidator(load_feedback_schema())
    info = locker_info()
    for cabinets, event, detail in [
        ([], "startup", None),
        ([], "bus_offline", {"bus": "rs485", "boards": [0]}),
        ([], "temperature_out_of_band", {"key": 1}),
        ([{"key": 0, "front_status": "closed", "rear_status": None}], "active", None),
    ]:
        assert spec.errors(build_body(cabinets, event, info, detail)) == {}
    refused = {"cabinets": [{"key": 0, "front_status": None}], "event": {"type": "active"}}
    assert "cabinets.0.front_status" in spec.errors(refused)


async def test_the_journal_queues_what_it_used_to_skip(outbox, store):
    """No door known: start-up, board and bus events, a cabinet's alarm and a code's
    opening are all queued; those of a cabinet with no door known name it by ``key``
    and carry what is known of the locker (a cloud refusing an empty list still takes
    them). A door never known beside a known one is null."""
    cabinets = [Cabinet(0, "mini", rear=Door()), Cabinet(1, "mini")]
    locker = Locker(cabinets, outbox, store)
    try:
        locker.report_startup()
        locker.journal.publish(BoardSeen("rs485", 1, False, (1,)))  # silent since start
        locker.journal.publish(BusSeen("rs485", False, (0,), (0, 1)))
        locker.journal.publish(AlarmChange(cabinets[1], "temperature_out_of_band", None, True))
        locker.journal.publish(CodeOpened(cabinets[1], "front", 46188, confirmed=False))
        locker.door_sensed(0, "front", False)  # one door answers
        locker.journal.publish(AlarmChange(cabinets[0], "thermal_stalled", None, True))
        locker.journal.publish(AlarmChange(cabinets[1], "food_time_exceeded", None, True))
        locker.journal.publish(CodeOpened(cabinets[1], "front", 46189, confirmed=True))
        told = [(m.event, list(m.cabinets), m.detail) for m in outbox.pending()]
    finally:
        await locker.close()
    assert told == [
        ("startup", [], None),
        ("board_offline", [], {"bus": "rs485", "board": 1}),
        ("bus_offline", [], {"bus": "rs485", "boards": [0]}),
        ("temperature_out_of_band", [], {"key": 1}),
        ("code_opened", [], {"order_id": 46188, "side": "front", "confirmed": False, "key": 1}),
        ("door_changed", [{"key": 0, "front_status": "closed"}], None),
        ("thermal_stalled", [{"key": 0, "front_status": "closed", "rear_status": None}], None),
        (
            "food_time_exceeded",
            [{"key": 0, "front_status": "closed", "rear_status": None}],
            {"key": 1},
        ),
        (
            "code_opened",
            [{"key": 0, "front_status": "closed", "rear_status": None}],
            {"order_id": 46189, "side": "front", "key": 1},
        ),
    ]


async def test_a_heartbeat_goes_with_no_door_known_and_with_nulls(cloud, outbox):
    snap: list[dict] = []
    uplink = Uplink(cloud.url, SecretStr(KEY), outbox, lambda: snap, heartbeat_s=0.05)
    await uplink.start()
    try:
        body = await cloud.wait_for(lambda b: b["event"]["type"] == "active", timeout=5)
        assert body["cabinets"] == []
        snap.append({"key": 0, "front_status": "closed", "rear_status": None})
        body = await cloud.wait_for(lambda b: b["event"] == {"type": "active"} and b["cabinets"], 5)
        assert body["cabinets"] == [{"key": 0, "front_status": "closed", "rear_status": None}]
        assert uplink.problems() == []
    finally:
        await uplink.close()
    assert cloud.rejected == []


class StrictCloud:
    """A cloud that refuses ``cabinets: []`` with 422, as Laravel's ``required`` rule
    does (the spec's own 422 example reads "The cabinets field is required.")."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.refused = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/lockers/cabinet/status", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body["cabinets"]:
            self.refused += 1
            message = "The cabinets field is required."
            return web.json_response(
                {"message": message, "errors": {"cabinets": [message]}}, status=422
            )
        self.bodies.append(body)
        return web.json_response({"message": "Updated successfully"})


async def test_a_cloud_that_refuses_an_empty_list_is_asked_once(outbox):
    """The refused body is set aside with the cloud's answer (never retried for ever);
    beats with no door known then wait, and /healthz says why the cloud hears nothing;
    once a door is known, beats go again."""
    strict = StrictCloud()
    await strict.start()
    snap: list[dict] = []
    uplink = Uplink(strict.url, SecretStr(KEY), outbox, lambda: snap, heartbeat_s=0.05)
    await uplink.start()
    try:
        async with asyncio.timeout(5):
            while not strict.refused:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # ten beats' time
        assert strict.refused == 1
        assert [d["event"] for d in outbox.dead()] == ["active"]
        assert outbox.dead()[0]["status"] == 422
        assert uplink.problems() == [EMPTY_REFUSED]
        snap.append({"key": 0, "front_status": "open"})
        async with asyncio.timeout(5):
            while not strict.bodies:
                await asyncio.sleep(0.01)
        assert strict.bodies[0]["cabinets"] == snap
        assert uplink.problems() == []
    finally:
        await uplink.close()
        await strict.close()


async def test_only_a_refused_beat_or_start_up_says_the_empty_list_is_refused(outbox):
    """Review finding: any refused body with no cabinets (a reader_locked_out refused
    for its own fields) stopped empty beats for good and had /healthz say the cloud
    refuses empty lists. Now only a beat or the start-up says so, and one beat in
    RETRY_EMPTY_EVERY asks again, so a mended cloud is heard."""
    strict = StrictCloud()
    await strict.start()
    snap: list[dict] = [{"key": 0, "front_status": "open"}]  # beats carry a door
    uplink = Uplink(strict.url, SecretStr(KEY), outbox, lambda: snap, heartbeat_s=0.005)
    await uplink.start()
    try:
        outbox.append("alarm", "reader_locked_out", [], {"reader": "front", "locked_s": 30})
        async with asyncio.timeout(5):
            while not strict.refused or not strict.bodies:
                await asyncio.sleep(0.01)
        assert uplink.problems() == []  # refused for itself, not for the list
        snap.clear()  # no door known: beats go empty, are refused, then asked again
        async with asyncio.timeout(10):
            while strict.refused < 3:  # the lock-out, the first empty beat, a retry
                await asyncio.sleep(0.01)
        assert uplink.problems() == [EMPTY_REFUSED]
    finally:
        await uplink.close()
        await strict.close()
