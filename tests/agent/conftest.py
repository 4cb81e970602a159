"""A locker with a fake actuator: the hardware answers a pulse by opening the door."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from agent.locker.cabinet import Cabinet, Door, Side
from agent.locker.errors import Unavailable
from agent.locker.locker import Locker
from agent.storage.outbox import Outbox
from agent.storage.store import StateStore


class FakeActuator:
    """Plays the hardware: a pulse opens a latch door after ``delay`` unless jammed; a
    motor reaches its end switch after ``delay`` unless obstructed (then the door
    stops half open)."""

    def __init__(self, locker: Locker) -> None:
        self.locker = locker
        self.pulses: list[tuple[int, Side]] = []
        self.drives: list[tuple[int, Side, str]] = []
        self.patterns: dict[int, list[str]] = {}
        self.jammed: set[tuple[int, Side]] = set()
        self.obstructed: set[tuple[int, Side]] = set()
        self.unavailable = False
        self.delay = 0.01

    def indicate(self, key: int, pattern: str) -> None:
        self.patterns.setdefault(key, []).append(pattern)

    def why_unknown(self, key: int, side: Side) -> str | None:
        return None

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        if self.unavailable:
            raise Unavailable("bus gpio: closed")
        self.drives.append((key, side, "open" if opening else "close"))
        await asyncio.sleep(self.delay)
        if (key, side) in self.obstructed:
            self.locker.door_sensed(key, side, True)  # stuck half way
            self.locker.door_fully_open(key, side, False)
            return False
        if opening:
            self.locker.door_sensed(key, side, True)
            self.locker.door_fully_open(key, side, True)
        else:
            self.locker.door_fully_open(key, side, False)
            self.locker.door_sensed(key, side, False)
        return True

    async def release(self, key: int, side: Side) -> None:
        if self.unavailable:
            raise Unavailable("bus rs485: port not open")
        self.pulses.append((key, side))
        if (key, side) not in self.jammed:
            asyncio.get_running_loop().call_later(
                self.delay, self.locker.door_sensed, key, side, True
            )


def refuse_writes(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The outbox's disk is full: every append fails as SQLite fails on ENOSPC. Returns
    the monotonic time of each try, appended as they come."""
    tries: list[float] = []

    def full(*_a: object, **_k: object) -> None:
        tries.append(time.monotonic())
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(outbox, "_make_room", full)
    return tries


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def store(tmp_path):
    state = StateStore(tmp_path / "state.sqlite3")
    yield state
    state.close()


@pytest.fixture
def locker(outbox: Outbox, store: StateStore) -> Locker:
    cabinets = [Cabinet(k, "mini", rear=Door() if k < 2 else None) for k in range(6)]
    locker = Locker(cabinets, outbox, store, confirm_s=0.3, jam_retry_s=0.05, announce_s=0)
    for cab in cabinets:
        locker.door_sensed(cab.key, "front", False)
        if cab.rear:
            locker.door_sensed(cab.key, "rear", False)
    locker.report_startup()
    return locker


@pytest.fixture
def actuator(locker: Locker) -> FakeActuator:
    fake = FakeActuator(locker)
    locker.attach(fake)
    return fake


def make_touchless(outbox, store, open_at_start=frozenset()):
    """Cabinets 0-1 with a motorised front door and a latch rear door; short timers."""
    cabinets = [Cabinet(k, "mini", front=Door(motorised=True), rear=Door()) for k in range(2)]
    locker = Locker(
        cabinets,
        outbox,
        store,
        confirm_s=0.3,
        jam_retry_s=0.05,
        announce_s=0.02,
        timer_s=0.3,
        left_open_s=0.5,
    )
    for cab in cabinets:
        for side in ("front", "rear"):
            is_open = (cab.key, side) in open_at_start
            locker.door_sensed(cab.key, side, is_open)
            if side == "front":
                locker.door_fully_open(cab.key, side, is_open)
    return locker


@pytest.fixture
def touchless(outbox: Outbox, store: StateStore) -> Locker:
    locker = make_touchless(outbox, store)
    locker.report_startup()
    return locker


@pytest.fixture
async def open_at_start(outbox: Outbox, store: StateStore):
    """Cabinet 0's front and cabinet 1's rear door were open when the agent started."""
    locker = make_touchless(outbox, store, {(0, "front"), (1, "rear")})
    fake = FakeActuator(locker)
    locker.attach(fake)
    locker.report_startup()
    return locker, fake


@pytest.fixture
def motors(touchless: Locker) -> FakeActuator:
    fake = FakeActuator(touchless)
    touchless.attach(fake)
    return fake
