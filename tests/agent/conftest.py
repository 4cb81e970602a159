"""A locker with a fake actuator: the hardware answers a pulse by opening the door."""

from __future__ import annotations

import asyncio

import pytest

from agent.cabinet import Cabinet, Door, Side
from agent.locker import HardwareUnavailable, Locker
from agent.outbox import Outbox


class FakeActuator:
    """Plays a lock board: a pulse opens the door after ``delay`` unless jammed."""

    def __init__(self, locker: Locker) -> None:
        self.locker = locker
        self.pulses: list[tuple[int, Side]] = []
        self.jammed: set[tuple[int, Side]] = set()
        self.unavailable = False
        self.delay = 0.01

    async def release(self, key: int, side: Side) -> None:
        if self.unavailable:
            raise HardwareUnavailable("bus rs485: port not open")
        self.pulses.append((key, side))
        if (key, side) not in self.jammed:
            asyncio.get_running_loop().call_later(
                self.delay, self.locker.door_sensed, key, side, True
            )


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def locker(outbox: Outbox) -> Locker:
    cabinets = [Cabinet(k, "mini", rear=Door() if k < 2 else None) for k in range(6)]
    locker = Locker(cabinets, outbox, confirm_timeout=0.3)
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
