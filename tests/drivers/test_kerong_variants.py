"""The Kerong driver against every board variant the public clients show (answers its
unlocks or not, in either ADDR form, at once or once the lock moved, behind a gateway),
each through a clean line and a faulty one (bytes split, dropped, delayed, duplicated)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.kerong import codec
from drivers.kerong.bus import BoardStatus, KerongBus, KerongBusConfig
from simulator.kerong_board import KerongBoardEmulator
from simulator.kerong_core import VARIANTS, KerongBank
from tests.drivers.kerong_line import CLEAN, FAULTY, TUNING, WAIT, LinePort, eventually

BOARDS = [0, 1]


def section(**changes) -> KerongBusConfig:
    """The bus section the tests and the emulator share (the agent's model)."""
    settings = {"name": "rs485", "port": "/dev/ttyFAKE", "boards": BOARDS, "pulse_s": 0.05}
    return KerongBusConfig.model_validate({**settings, **changes})


class Doors:
    """What the bus reported, per board: every status in order."""

    def __init__(self) -> None:
        self.seen: dict[int, list[BoardStatus | None]] = {b: [] for b in BOARDS}

    def __call__(self, board: int, status: BoardStatus | None) -> None:
        self.seen[board].append(status)

    def last(self, board: int) -> BoardStatus | None:
        return self.seen[board][-1] if self.seen[board] else None


def truth(bank: KerongBank, board: int) -> tuple[bool, ...]:
    return tuple(bank.feedback_closed(board, ch) for ch in range(1, codec.CHANNELS + 1))


async def open_and_shut(bus: KerongBus, bank: KerongBank, doors: Doors, channel: int) -> None:
    """Unlock one lock, see it open, shut it, see it shut (as the agent confirms)."""
    await asyncio.wait_for(bus.unlock(0, channel), WAIT)
    await eventually(lambda: (s := doors.last(0)) is not None and not s.closed[channel - 1])
    bank.shut_door(0, channel)
    await eventually(lambda: (s := doors.last(0)) is not None and s.closed == truth(bank, 0))


@pytest.mark.parametrize("faults", [CLEAN, FAULTY], ids=["clean", "faulty"])
@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
async def test_every_variant_pulses_once_reads_true_and_has_no_twins(variant, faults):
    config = section()
    bank = KerongBank.for_bus(config, variant=VARIANTS[variant])
    port = LinePort(bank, faults)
    doors = Doors()
    bus = KerongBus(config, doors, connect=port, tuning=TUNING)
    try:
        await bus.start()
        await eventually(lambda: all(doors.last(b) is not None for b in BOARDS))
        for channel in (6, 1, 16, 6):
            await open_and_shut(bus, bank, doors, channel)
        # One pulse a command: never a second.
        assert bank.unlocked == [(0, 6), (0, 1), (0, 16), (0, 6)]
        # Every status reported was true when the board sent it: a door reported open
        # was unlocked, and the last word is the truth.
        for board in BOARDS:
            assert all(s is not None for s in doors.seen[board])
            assert doors.last(board).closed == truth(bank, board)
        # No phantom twin: the unlock answers are the unlocks'.
        assert sum(n for (_, kind), n in bus.counts.items() if kind == "twins") == 0
        answers = bus.counts[(0, "unlock_replies")]
        if VARIANTS[variant].unlock_reply == "none":
            assert answers == 0
        elif faults is CLEAN:
            assert answers == 4
        assert bus.silent_boards() == []
    finally:
        await bus.close()


@pytest.mark.parametrize("variant", ["lock-at-once", "board-at-once"])
async def test_an_unlock_answered_at_once_holds_the_bus_for_its_answer(variant):
    """On a half-duplex line, the request after an unlock must not talk over the board's
    answer: the bus waits for it, and for a board that stays quiet, only once."""
    config = section()
    behind_a_gateway = VARIANTS[variant].model_copy(update={"reply_delay_s": 0.02})
    bank = KerongBank.for_bus(config, variant=behind_a_gateway)
    port = LinePort(bank)
    doors = Doors()
    bus = KerongBus(config, doors, connect=port, tuning=TUNING)
    try:
        await bus.start()
        await eventually(lambda: doors.last(1) is not None)
        unlock = codec.unlock_request(0, 3)
        await bus.unlock(0, 3)
        await eventually(lambda: len(port.line.written) > port.line.written.index(unlock) + 1)
        line = port.line
        i = line.written.index(unlock)
        # The next request went once the answer (20 ms behind the gateway) was in.
        assert line.written_at[i + 1] - line.written_at[i] >= 0.02
        assert bus.counts[(0, "unlock_replies")] == 1
        assert bus._matcher.unlock_answers == {0: True}
    finally:
        await bus.close()


async def test_an_unanswered_unlock_all_says_nothing_of_single_unlocks():
    """A board that answers its unlocks may leave an unlock-all unanswered (the emulator
    does): the next single unlock still holds the bus for its answer."""
    config = section()
    bank = KerongBank.for_bus(config, variant=VARIANTS["board-at-once"])
    doors = Doors()
    bus = KerongBus(config, doors, connect=LinePort(bank), tuning=TUNING)
    try:
        await bus.start()
        await eventually(lambda: doors.last(1) is not None)
        await bus.unlock(0, 3)
        await eventually(lambda: bus.counts[(0, "unlock_replies")] == 1)
        await bus.unlock_all(0)
        assert bus._matcher.unlock_answers == {0: True}
    finally:
        await bus.close()


@pytest.mark.parametrize("variant", ["board-once-moved", "lock-once-moved"])
async def test_an_answer_once_the_lock_moved_is_a_fresh_reading(variant):
    # Polls far apart, a long pulse: only the board's answer can tell the door opened.
    config = section(poll_interval_s=5, pulse_s=1.0)
    bank = KerongBank.for_bus(config, variant=VARIANTS[variant])
    port = LinePort(bank)
    doors = Doors()
    bus = KerongBus(config, doors, connect=port, tuning=TUNING)
    try:
        await bus.start()
        await eventually(lambda: doors.last(1) is not None)
        reads = bank.status_reads[0]
        bank.variant = VARIANTS[variant].model_copy(update={"unlock_reply_after_s": 0.01})
        unlock = asyncio.create_task(bus.unlock(0, 9))
        await eventually(lambda: (s := doors.last(0)) is not None and not s.closed[8], 0.5)
        assert bank.status_reads[0] == reads  # told by the answer, not by a read
        assert bus.counts[(0, "unlock_replies")] == 1
        assert bus.counts[(0, "twins")] == 0
        unlock.cancel()
    finally:
        await bus.close()


async def test_the_pty_emulator_plays_each_variant_from_the_same_config():
    config = section(port="/dev/null", baud=9600, locked_bit=0)
    emulator = KerongBoardEmulator.for_bus(config, variant=VARIANTS["gateway-lock-once-moved"])
    await emulator.start()
    try:
        assert (emulator.baud, emulator.bank.locked_bit, emulator.boards) == (9600, 0, BOARDS)
        assert emulator.reply_delay_s == VARIANTS["gateway"].reply_delay_s
        real = section(port=emulator.port, baud=9600, locked_bit=0)
        doors = Doors()
        bus = KerongBus(real, doors, tuning=TUNING)
        try:
            await bus.start()
            await eventually(lambda: doors.last(0) is not None)
            await bus.unlock(0, 2)
            await eventually(lambda: bus.counts[(0, "unlock_replies")] == 1)
            assert emulator.bank.unlocked == [(0, 2)]
            assert not doors.last(0).closed[1]
            assert bus.counts[(0, "twins")] == 0
        finally:
            await bus.close()
    finally:
        await emulator.close()
