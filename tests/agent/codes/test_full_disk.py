"""A disk that refuses an open's end never leaves a customer locked out, nor opens twice.

Finding: when the disk refused the write that put a code back to "held" (its open was
refused before any pulse), the code stayed "opening" until a restart, then was spent
and told unsure: the customer could not try again though nothing had pulsed. Now the
memory holds the truth at once (held again, or spent), the row keeps "opening" (what a
power cut must find) and the write is retried by the next scan, the housekeeping and
the stop. A full disk is SQLite refusing writes as it does on ENOSPC (as
``tests/agent/locker/test_full_disk.py`` fills the outbox); the files are real.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3

import pytest

from agent.codes.held import HeldCodes
from agent.codes.message import parse_codes
from agent.codes.pickup import Pickup
from agent.locker.errors import Unavailable
from agent.storage.codes import CodeStore
from simulator.run import Simulation
from tests.agent.codes.orders import NOW, put


class Disk:
    """The code store's disk: while ``full``, every write fails as SQLite fails on a full
    disk; ``fill_after(n)``: the next ``n`` writes pass, then it is full."""

    def __init__(self, store: CodeStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self._room: int | None = None
        real = store._file.transaction

        def transaction(work):
            if self._room is not None:
                if self._room == 0:
                    self.full, self._room = True, None
                else:
                    self._room -= 1
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return real(work)

        monkeypatch.setattr(store._file, "transaction", transaction)

    def fill_after(self, writes: int) -> None:
        self._room = writes


def on_disk(path, code: str) -> str:
    """The state the file holds for ``code``, read as a restart would."""
    store = CodeStore(path)
    try:
        sha = hashlib.sha256(code.encode()).hexdigest()
        [state] = [row.state for row in store.rows() if row.sha256 == sha]
        return state
    finally:
        store.close()


def told(outbox, event: str) -> list:
    return [m for m in outbox.pending(1000) if m.event == event]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "codes.sqlite3"


@pytest.fixture
def code_store(path):
    codes = CodeStore(path)
    yield codes
    codes.close()


@pytest.fixture
def codes(code_store, locker):
    doors = {k: ("front", "rear") if c.rear else ("front",) for k, c in locker.cabinets.items()}
    held = HeldCodes(code_store, doors, wall=lambda: NOW)
    held.provision(parse_codes({"put": [put("right")]}))
    return held


@pytest.fixture
def disk(code_store, monkeypatch):
    return Disk(code_store, monkeypatch)


def refuse_once_opening(actuator, disk):
    """The board is not there (nothing sent), and the disk fills as the open is refused;
    the board comes back by ``del actuator.release``."""

    async def gone(key, side):
        disk.full = True
        raise Unavailable("bus rs485: port not open")

    actuator.release = gone


async def test_a_refusal_before_any_pulse_leaves_the_code_usable_while_the_disk_refuses(
    locker, codes, actuator, disk, path, outbox
):
    pickup = Pickup(locker, codes)
    refuse_once_opening(actuator, disk)
    assert await pickup.scanned("front", "right") == "refused"
    assert codes.match("right").state == "held"  # the truth, at once
    assert on_disk(path, "right") == "opening" and codes.unsaved == 1
    del actuator.release  # the board is back; the disk is still full
    assert await pickup.scanned("front", "right") == "opened"  # the customer tries again
    assert actuator.pulses == [(1, "front")]
    assert codes.match("right").state == "spent"
    assert on_disk(path, "right") == "opening"  # a cut now: spent, told unsure, no pulse
    [message] = told(outbox, "code_opened")
    assert message.detail == {"order_id": 46188, "side": "front"}
    assert await pickup.scanned("front", "right") == "spent"
    assert actuator.pulses == [(1, "front")]  # never twice
    disk.full = False
    assert codes.save_unsaved() == 0
    assert on_disk(path, "right") == "spent" and codes.unsaved == 0


async def test_the_next_scan_writes_what_the_disk_refused(locker, codes, actuator, disk, path):
    pickup = Pickup(locker, codes)
    refuse_once_opening(actuator, disk)
    assert await pickup.scanned("front", "right") == "refused"
    disk.full = False
    assert await pickup.scanned("front", "guess") == "wrong"  # any scan tries the write
    assert on_disk(path, "right") == "held" and codes.unsaved == 0


async def test_a_disk_refusing_the_opening_write_pulses_nothing(
    locker, codes, actuator, disk, path
):
    disk.full = True
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "refused"
    assert actuator.pulses == [] and codes.match("right").state == "held"
    assert on_disk(path, "right") == "held" and codes.unsaved == 0


async def test_a_spent_code_the_disk_refused_is_not_opened_again_nor_left_busy(
    locker, codes, actuator, disk, path, outbox
):
    disk.fill_after(1)  # "opening" is written; "spent" is refused
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "opened"
    assert on_disk(path, "right") == "opening" and codes.match("right").state == "spent"
    assert await pickup.scanned("front", "right") == "spent"  # not "busy" until a restart
    assert actuator.pulses == [(1, "front")]


async def test_a_restart_before_the_disk_takes_it_spends_the_code_said_unsure(
    locker, codes, actuator, disk, path, outbox, code_store
):
    """The cost, written in ADR 0017: nothing survives a restart that the disk refused.
    The code is then spent and told unsure (the row says a pulse may have gone): never a
    pulse the locker cannot account for, at the price of this customer's code."""
    pickup = Pickup(locker, codes)
    refuse_once_opening(actuator, disk)
    assert await pickup.scanned("front", "right") == "refused"
    code_store.close()  # the power is cut
    again = CodeStore(path)
    try:
        doors = {k: ("front",) for k in locker.cabinets}
        held = HeldCodes(again, doors, wall=lambda: NOW)
        Pickup(locker, held).start()
        assert held.match("right").state == "spent"
        [message] = told(outbox, "code_opened")
        assert message.detail == {"order_id": 46188, "side": "front", "confirmed": False}
    finally:
        again.close()


async def test_a_put_again_while_unsaved_writes_the_row_and_clears_it(
    locker, codes, actuator, disk, path
):
    pickup = Pickup(locker, codes)
    refuse_once_opening(actuator, disk)
    assert await pickup.scanned("front", "right") == "refused"
    disk.full = False
    codes.provision(parse_codes({"put": [put("right")]}))  # the cloud sends it again
    assert on_disk(path, "right") == "held" and codes.unsaved == 0


async def test_a_drop_carried_out_at_an_opens_end_is_written_once_the_disk_takes_it(
    locker, codes, actuator, disk, path
):
    pickup = Pickup(locker, codes)

    async def cancelled_meanwhile(key, side):
        codes.provision(parse_codes({"drop": [put("right")["sha256"]]}))  # written
        disk.full = True
        raise Unavailable("bus rs485: port not open")

    actuator.release = cancelled_meanwhile
    assert await pickup.scanned("front", "right") == "refused"
    assert codes.match("right") is None and codes.unsaved == 1
    assert on_disk(path, "right") == "opening"
    disk.full = False
    assert codes.save_unsaved() == 0
    with pytest.raises(ValueError):  # no row left
        on_disk(path, "right")


# --- the whole agent: health says it, the stop tries once more ----------------------


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_the_agent_says_an_unsaved_end_and_writes_it_when_the_disk_frees(
    tmp_path, monkeypatch
):
    sim = Simulation(storage_dir=tmp_path)
    await sim.start()
    try:
        assert sim.boards is not None and sim.agent is not None
        codes = sim.agent.codes
        await sim.cloud.wait_for_agent(10)
        order = await sim.cloud.create_order(5, code="FOXTROT-6")
        assert order["provisioned"], order
        sim.boards.set_offline(0)  # cabinet 5's board falls silent: nothing can be sent
        cabinet = sim.agent.locker.cabinets[5]
        await until(lambda: cabinet.front.sensed is None)
        disk = Disk(codes.store, monkeypatch)
        disk.fill_after(1)  # "opening" is written, the way back refused
        sim.scanner.scan("FOXTROT-6")
        await until(lambda: codes.pickup.outcomes.get("refused") == 1)
        assert codes.held.match("FOXTROT-6").state == "held"
        line = "1 pickup codes' ends not saved (the disk refuses): a restart now would spend"
        assert any(p.startswith(line) for p in sim.agent.problems())
        sim.boards.set_offline(0, False)
        await until(lambda: cabinet.front.sensed is False)
        sim.scanner.scan("FOXTROT-6")  # the disk still full: it opens all the same
        await until(lambda: sim.door_open(5))
        await until(lambda: sim.cloud.orders[0]["collected"])
        assert sim.boards.bank.unlocked.count((0, 6)) == 1
        disk.full = False
        await sim.agent.close()  # the stop writes what the disk refused
        sim.agent = None
        assert on_disk(tmp_path / "codes.sqlite3", "FOXTROT-6") == "spent"
    finally:
        await sim.close()


async def test_on_a_real_full_disk_a_refused_code_opens_once_the_board_is_back(small_disk):
    """The whole agent on a tmpfs filled until it refuses (ENOSPC), every store on it."""
    sim = Simulation(storage_dir=small_disk.path)
    await sim.start()
    try:
        assert sim.boards is not None and sim.agent is not None
        agent = sim.agent
        await sim.cloud.wait_for_agent(10)
        order = await sim.cloud.create_order(6, code="HOTEL-8")
        assert order["provisioned"], order
        sim.boards.set_offline(0)
        cabinet = agent.locker.cabinets[6]
        await until(lambda: cabinet.front.sensed is None)
        submit = agent.locker.submit

        def fills_then_submits(key, cmd, command_id=None):
            small_disk.fill()  # "opening" is on disk; from now on nothing is
            return submit(key, cmd, command_id)

        agent.locker.submit = fills_then_submits  # type: ignore[method-assign]
        sim.scanner.scan("HOTEL-8")
        await until(lambda: agent.codes.pickup.outcomes.get("refused") == 1)
        agent.locker.submit = submit  # type: ignore[method-assign]
        assert agent.codes.held.match("HOTEL-8").state == "held" and agent.codes.held.unsaved
        sim.boards.set_offline(0, False)
        await until(lambda: cabinet.front.sensed is False)
        sim.scanner.scan("HOTEL-8")  # the disk still full
        await until(lambda: sim.door_open(6))
        assert sim.boards.bank.unlocked == [(0, 7)]
        small_disk.free()
        await until(lambda: sim.cloud.orders[0]["collected"], timeout=20)
        sim.scanner.scan("HOTEL-8")
        await until(lambda: agent.codes.pickup.outcomes.get("spent") == 1)
        assert sim.boards.bank.unlocked == [(0, 7)]  # once
        opened = [
            r["body"]["event"]
            for r in sim.cloud.received
            if r["body"]["event"]["type"] == "code_opened"
        ]
        assert opened == [{"type": "code_opened", "order_id": order["id"], "side": "front"}]
        await agent.close()
        sim.agent = None
        assert on_disk(small_disk.path / "codes.sqlite3", "HOTEL-8") == "spent"
    finally:
        await sim.close()
