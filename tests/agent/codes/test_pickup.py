"""A code read at the locker opens its door through the locker's own path, once; wrong
codes lock the reader out; what cannot open keeps its code; the cloud hears in order."""

import asyncio

import pytest

from agent.codes.held import HeldCodes
from agent.codes.message import parse_codes
from agent.codes.pickup import Pickup
from agent.storage.codes import CodeStore
from tests.agent.codes.orders import NOW, put


class Clock:
    def __init__(self):
        self.at = 1000.0

    def __call__(self):
        return self.at


@pytest.fixture
def codes(tmp_path, locker):
    store = CodeStore(tmp_path / "codes.sqlite3")
    doors = {k: ("front", "rear") if c.rear else ("front",) for k, c in locker.cabinets.items()}
    held = HeldCodes(store, doors, wall=lambda: NOW)
    held.provision(
        parse_codes(
            {
                "put": [
                    put("right"),
                    put("rear", key=0, order=7, rearload=True),
                    put("old", key=3, order=9, expires=NOW - 1),
                ]
            }
        )
    )
    yield held
    store.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pickup(locker, codes, actuator, clock):
    return Pickup(locker, codes, clock=clock)


def told(outbox, event):
    return [m for m in outbox.pending(1000) if m.event == event]


async def test_a_right_code_opens_its_door_once_and_the_cloud_hears_it(
    pickup, actuator, outbox, codes
):
    assert await pickup.scanned("front", "right") == "opened"
    assert actuator.pulses == [(1, "front")]
    [message] = told(outbox, "code_opened")
    assert message.detail == {"order_id": 46188, "side": "front"}
    assert message.cabinets == ({"key": 1, "front_status": "open", "rear_status": "closed"},)
    events = [m.event for m in outbox.pending(1000)]
    assert events.index("door_changed") < events.index("code_opened")  # the door first
    assert await pickup.scanned("front", "right") == "spent"  # twice: no second pulse
    assert actuator.pulses == [(1, "front")]
    assert codes.match("right").state == "spent"


async def test_a_rearload_code_opens_the_rear_door(pickup, actuator):
    assert await pickup.scanned("front", "rear") == "opened"
    assert actuator.pulses == [(0, "rear")]


async def test_an_expired_code_opens_nothing_and_is_not_a_wrong_code(pickup, actuator):
    for _ in range(10):
        assert await pickup.scanned("front", "old") == "expired"
    assert actuator.pulses == []
    assert pickup.locked_for("front") == 0


async def test_a_disabled_cabinet_refuses_and_keeps_the_code(pickup, locker, actuator, codes):
    locker.cabinets[1].enabled = False
    assert await pickup.scanned("front", "right") == "refused"
    assert actuator.pulses == [] and codes.match("right").state == "held"
    locker.cabinets[1].enabled = True
    assert await pickup.scanned("front", "right") == "opened"


async def test_a_silent_board_refuses_and_keeps_the_code(pickup, locker, actuator, codes):
    locker.door_sensed(1, "front", None)
    assert await pickup.scanned("front", "right") == "refused"
    assert actuator.pulses == [] and codes.match("right").state == "held"


async def test_a_lock_pulsed_whose_door_never_reads_open_spends_its_code(
    pickup, actuator, codes, outbox
):
    # Jammed, or a broken switch on a door that did open: the agent cannot tell, and
    # a code that let every scan pulse twice more would open the door forever.
    actuator.jammed.add((1, "front"))
    assert await pickup.scanned("front", "right") == "unconfirmed"
    assert actuator.pulses == [(1, "front"), (1, "front")]
    assert codes.match("right").state == "spent"
    [message] = told(outbox, "code_opened")
    assert message.detail == {"order_id": 46188, "side": "front", "confirmed": False}
    assert told(outbox, "lock_jammed")  # the cloud hears the door was not seen, too
    assert await pickup.scanned("front", "right") == "spent"
    assert actuator.pulses == [(1, "front"), (1, "front")]  # never pulsed again


async def test_a_run_of_wrong_codes_locks_the_reader_out_for_a_growing_time(
    pickup, clock, outbox, actuator
):
    for _ in range(4):
        assert await pickup.scanned("front", "guess") == "wrong"
    assert await pickup.scanned("front", "guess") == "wrong"
    assert pickup.locked_for("front") == 30
    assert await pickup.scanned("front", "right") == "locked_out"  # not even a right one
    assert await pickup.scanned("side", "right") == "opened"  # another reader is not locked
    [event] = told(outbox, "reader_locked_out")
    assert event.detail == {"reader": "front", "locked_s": 30}
    clock.at += 31
    for _ in range(5):
        await pickup.scanned("front", "guess")
    assert pickup.locked_for("front") == 60  # doubled
    assert len(told(outbox, "reader_locked_out")) == 2


async def test_a_right_code_ends_the_run(pickup, clock):
    for _ in range(4):
        await pickup.scanned("front", "guess")
    assert await pickup.scanned("front", "rear") == "opened"
    for _ in range(4):
        await pickup.scanned("front", "guess")
    assert pickup.locked_for("front") == 0


async def test_scans_while_a_door_opens_are_not_judged(pickup, actuator):
    actuator.delay = 0.2
    first = asyncio.create_task(pickup.scanned("front", "right"))
    await asyncio.sleep(0.05)
    assert await pickup.scanned("front", "rear") == "busy"
    assert await first == "opened"
    assert actuator.pulses == [(1, "front")]


async def test_a_code_left_opening_by_a_power_cut_is_told_unconfirmed_at_start(
    locker, codes, outbox, actuator
):
    codes.mark(codes.match("right"), "opening")
    Pickup(locker, codes).start()
    [message] = told(outbox, "code_opened")
    assert message.detail == {"order_id": 46188, "side": "front", "confirmed": False}
    assert codes.match("right").state == "spent"


async def test_a_refused_code_flashes_on_its_cabinet_then_the_indicator_goes_back(
    pickup, locker, actuator, monkeypatch
):
    import agent.codes.pickup as module

    monkeypatch.setattr(module, "REFUSED_SHOW_S", 0.05)
    locker.cabinets[1].enabled = False
    assert await pickup.scanned("front", "right") == "refused"
    await asyncio.sleep(0.01)
    assert actuator.patterns[1][-1] == "code_refused"
    await asyncio.sleep(0.1)
    assert actuator.patterns[1][-1] == "disabled"
