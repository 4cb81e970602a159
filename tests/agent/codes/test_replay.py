"""A code opens once, whatever the cloud replays: findings of a hostile review.

A `codes` message sent again after an offline pickup revived the spent code (it
opened twice) and let an older order's code take a reused cabinet from a newer
order; a put during an open left the row "held" for a power cut to lose; a
customer's own spent code, scanned between guesses, ended every run of wrong codes;
a code put again for another order silently moved to another cabinet.
"""

from __future__ import annotations

import asyncio

import pytest

from agent.codes.held import HeldCodes
from agent.codes.message import parse_codes
from agent.codes.pickup import Pickup
from agent.locker.errors import Conflict, Invalid, Unavailable
from agent.storage.codes import CodeStore
from tests.agent.codes.orders import NOW, put


class Clock:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def held(tmp_path, locker):
    store = CodeStore(tmp_path / "codes.sqlite3")
    doors = {k: ("front", "rear") if c.rear else ("front",) for k, c in locker.cabinets.items()}
    codes = HeldCodes(store, doors, wall=lambda: NOW)
    codes.provision(parse_codes({"put": [put("right"), put("other", key=2, order=2)]}))
    yield codes
    store.close()


async def test_a_spent_code_put_again_stays_spent(locker, held, actuator):
    pickup = Pickup(locker, held, clock=Clock())
    assert await pickup.scanned("front", "right") == "opened"
    held.provision(parse_codes({"put": [put("right")]}))  # the same message, replayed
    assert held.match("right").state == "spent"
    assert await pickup.scanned("front", "right") == "spent"
    assert actuator.pulses == [(1, "front")]


async def test_an_older_orders_replay_never_takes_a_reused_cabinet(locker, held, actuator):
    pickup = Pickup(locker, held, clock=Clock())
    assert await pickup.scanned("front", "right") == "opened"
    held.provision(parse_codes({"put": [put("new99", order=99)]}))
    held.provision(parse_codes({"put": [put("right")]}))  # an older message, replayed
    assert await pickup.scanned("front", "new99") == "opened"
    assert actuator.pulses == [(1, "front"), (1, "front")]
    assert held.match("right").state == "spent"


async def test_a_code_opening_is_left_alone_by_puts_and_drops(tmp_path, locker, held, actuator):
    pickup = Pickup(locker, held, clock=Clock())
    task = asyncio.create_task(pickup.scanned("front", "right"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.match("right").state == "opening"
    sha = put("right")["sha256"]
    held.provision(parse_codes({"put": [put("right")], "drop": [sha]}))
    store = CodeStore(tmp_path / "codes.sqlite3")  # what a power cut now leaves on disk
    after = HeldCodes(store, {1: ("front", "rear"), 2: ("front",)}, wall=lambda: NOW)
    assert after.match("right").state == "opening"  # told unconfirmed at the next start
    store.close()
    assert await task == "opened"


async def test_a_spent_code_between_guesses_does_not_end_the_run(locker, held, actuator):
    clock = Clock()
    pickup = Pickup(locker, held, clock=clock)
    assert await pickup.scanned("front", "right") == "opened"
    outcomes = []
    for i in range(40):
        code = "right" if i % 4 == 3 else f"guess{i}"
        outcomes.append(await pickup.scanned("front", code))
        clock.at += 0.5
    assert "locked_out" in outcomes


def test_a_code_put_again_for_another_order_is_a_conflict(held):
    held.provision(parse_codes({"put": [put("123456", key=1, order=1)]}))
    with pytest.raises(Conflict, match="held for another order"):
        held.provision(parse_codes({"put": [put("123456", key=2, order=2)]}))
    assert held.match("123456").key == 1
    held.provision(parse_codes({"put": [put("123456", key=2, order=1)]}))  # its own order
    assert held.match("123456").key == 2


def test_an_order_id_is_bounded_as_a_number_too():
    with pytest.raises(Invalid, match="order_id"):
        parse_codes({"put": [put("x", order=10**4000)]})


def test_an_unsure_clock_running_ahead_deletes_no_code(tmp_path):
    """Finding: RTC garbage two days ahead at housekeeping pruned a code that had an
    hour to go; with the clock right again, its customer's scan was "wrong"."""
    wall = [NOW]
    store = CodeStore(tmp_path / "c.sqlite3")
    codes = HeldCodes(store, {1: ("front",)}, wall=lambda: wall[0])
    codes.provision(parse_codes({"put": [put("right", expires=NOW + 3600)]}))
    wall[0] = NOW + 2 * 86_400 + 10
    codes.note_clock(False)
    assert codes.prune() == 0
    wall[0] = NOW
    codes.note_clock(True)
    assert codes.match("right").state == "held"
    store.close()


def test_a_refused_code_never_paints_an_open_door():
    """Finding: a spent code scanned turned another customer's open door red."""
    from agent.locker.cabinet import Cabinet
    from agent.locker.door import DoorState
    from agent.locker.indicator import pattern_for

    cabinet = Cabinet(key=1, size="medium")
    assert pattern_for(cabinet, "ok", "code_refused") == "code_refused"  # shut: shown
    cabinet.front.sense(1, "front", True)
    assert cabinet.front.seen in (DoorState.OPEN, DoorState.OPENING)
    assert pattern_for(cabinet, "ok", "code_refused") == "open"


async def opening_on_a_silent_board(locker, held, actuator, monkeypatch):
    """Code "right" scanned and opening on a board that does not answer (nothing sent)
    until ``go`` is set; returns ``(go, the Pickup, the scan's task)``."""
    go = asyncio.Event()

    async def silent(key, side):
        await go.wait()
        raise Unavailable("bus rs485: port not open")

    monkeypatch.setattr(actuator, "release", silent)
    pickup = Pickup(locker, held, clock=Clock())
    task = asyncio.create_task(pickup.scanned("front", "right"))
    async with asyncio.timeout(3):
        while held.match("right").state != "opening":
            await asyncio.sleep(0.01)
    return go, pickup, task


async def test_a_code_dropped_while_its_open_was_refused_opens_nothing_after(
    tmp_path, locker, held, actuator, monkeypatch
):
    """Finding: a drop sent while the code was opening was skipped ("settled first, then
    dropped", but never dropped): an order cancelled during a refused open stayed
    usable at the locker."""
    go, pickup, task = await opening_on_a_silent_board(locker, held, actuator, monkeypatch)
    answer = held.provision(parse_codes({"drop": [put("right")["sha256"]]}))  # cancelled
    assert answer["dropped"] == 1
    go.set()
    assert await task == "refused"
    monkeypatch.undo()
    assert held.match("right") is None
    assert await pickup.scanned("front", "right") == "wrong"
    assert actuator.pulses == []
    store = CodeStore(tmp_path / "codes.sqlite3")  # and a restart does not bring it back
    try:
        again = HeldCodes(store, {1: ("front", "rear"), 2: ("front",)}, wall=lambda: NOW)
        assert again.match("right") is None and again.match("other") is not None
    finally:
        store.close()


async def test_a_code_dropped_while_it_opened_is_told_and_gone(locker, held, actuator, outbox):
    actuator.delay = 0.2
    pickup = Pickup(locker, held, clock=Clock())
    task = asyncio.create_task(pickup.scanned("front", "right"))
    async with asyncio.timeout(3):
        while not actuator.pulses:
            await asyncio.sleep(0.01)
    held.provision(parse_codes({"drop": [put("right")["sha256"]]}))
    assert await task == "opened"
    [message] = [m for m in outbox.pending(1000) if m.event == "code_opened"]
    assert message.detail == {"order_id": 46188, "side": "front"}
    assert held.match("right") is None and held.unsaved == 0


async def test_a_cabinet_given_to_another_order_during_a_refused_open_is_not_taken_back(
    tmp_path, locker, held, actuator, monkeypatch
):
    """Break pass: a put for the door of a code being opened did not supersede it (only
    held codes are): once its open was refused before any pulse, the older order's code
    went back to held beside the newer order's, and opened the reused cabinet."""
    go, pickup, task = await opening_on_a_silent_board(locker, held, actuator, monkeypatch)
    held.provision(parse_codes({"put": [put("newer", order=7)]}))  # cabinet 1 reused
    go.set()
    assert await task == "refused"
    monkeypatch.undo()
    assert held.match("right").state == "superseded"
    assert await pickup.scanned("front", "right") == "superseded"
    assert actuator.pulses == []
    assert await pickup.scanned("front", "newer") == "opened"
    store = CodeStore(tmp_path / "codes.sqlite3")  # and so it is on disk
    try:
        again = HeldCodes(store, {1: ("front", "rear"), 2: ("front",)}, wall=lambda: NOW)
        assert again.match("right").state == "superseded"
    finally:
        store.close()
