"""The bus-wide status on buses whose boards answer it partly, late, or lose a reply: the
findings left open by issue 19's review, each against the emulator's board variants
through the fake transport the driver tests use (``kerong_line``). Functional, not
timed: bounds many times apart."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from drivers.kerong import codec
from drivers.kerong.bus import KerongBus, KerongBusConfig
from drivers.kerong.sweep import GIVE_UP_AFTER
from simulator.kerong_core import VARIANTS, BoardVariant, KerongBank
from tests.drivers.kerong_line import TUNING, FaultyLine, LinePort, Seen, eventually

BOARDS = [0, 1, 2]


def section(**changes) -> KerongBusConfig:
    settings = {
        "name": "rs485",
        "port": "/dev/ttyUSB0",
        "boards": BOARDS,
        "rest_poll_interval_s": 0.1,
        "active_hold_s": 0.3,
    }
    return KerongBusConfig.model_validate({**settings, **changes})


def requests(bank: KerongBank, cmd: int) -> int:
    return sum(1 for raw in bank.received if raw[2] == cmd)


async def at_rest(bus: KerongBus) -> None:
    await eventually(lambda: bus.ready and not bus._poller.active)


@pytest.mark.parametrize("variant", ["quiet", "gateway", "lock-once-moved"])
async def test_a_board_that_does_not_answer_the_sweep_is_read_alone_and_not_waited_for(variant):
    """Finding: where some boards answer the bus-wide status and some do not, every sweep
    waited its whole window (a reply timeout: 0.5 s through a gateway), so every door at
    rest came late and every command waited behind it."""
    config = section(reply_timeout_s=0.5)  # the worst case the old window waited for
    bank = KerongBank.for_bus(config, variant=VARIANTS[variant])
    bank.no_bus_status.add(2)
    port = LinePort(bank)
    seen = Seen()
    bus = KerongBus(config, seen, connect=port, tuning=TUNING)
    await bus.start()
    try:
        sweep = bus._poller._sweep
        await at_rest(bus)
        await eventually(lambda: 2 in sweep.deaf)
        assert sweep.usable and sweep.deaf == {2}  # the others still answer it
        await at_rest(bus)
        line = port.line
        mark = len(line.written)
        reads = dict(bank.status_reads)
        await asyncio.sleep(0.6)
        # Boards 0 and 1 by the sweep alone; board 2 on its own, at the rest pace.
        assert bank.status_reads[0] == reads.get(0, 0)
        assert bank.status_reads[1] == reads.get(1, 0)
        assert 0 < bank.status_reads[2] - reads.get(2, 0) <= 2 * 0.6 / 0.1
        # No sweep waits out the reply timeout: the request after each follows its
        # answers (the window would be 0.5 s and more).
        sent = list(zip(line.written[mark:], line.written_at[mark:], strict=True))
        gaps = [
            later - at
            for (frame, at), (_, later) in itertools.pairwise(sent)
            if frame == codec.bus_status_request()
        ]
        assert gaps and max(gaps) < 0.25
        assert sweep.window_s(2) < 0.25  # from the evidence, not the timeout
        # A door on the board read alone still comes through at rest.
        bank.force_open(2, 9)
        await eventually(lambda: seen.closed(2, 9) is False)
        assert bus.silent_boards() == []
    finally:
        await bus.close()


async def test_a_board_that_answers_the_sweep_again_is_waited_for_again():
    config = section()
    bank = KerongBank.for_bus(config)
    bank.no_bus_status.add(1)
    bus = KerongBus(config, Seen(), connect=LinePort(bank), tuning=TUNING)
    await bus.start()
    try:
        sweep = bus._poller._sweep
        await eventually(lambda: 1 in sweep.deaf)
        bank.no_bus_status.clear()  # its firmware updated, say
        await eventually(lambda: not sweep.deaf)
        await at_rest(bus)
        reads = sum(bank.status_reads.values())
        await asyncio.sleep(0.4)
        assert sum(bank.status_reads.values()) == reads  # every board by the sweep again
    finally:
        await bus.close()


async def test_a_bus_none_of_whose_boards_answer_gives_the_sweep_up_after_the_probe():
    config = section()
    bank = KerongBank.for_bus(config)
    bank.no_bus_status.update(BOARDS)
    bus = KerongBus(config, Seen(), connect=LinePort(bank), tuning=TUNING)
    await bus.start()
    try:
        sweep = bus._poller._sweep
        await eventually(lambda: not sweep.usable)
        assert sweep.sweeps == GIVE_UP_AFTER and sweep.deaf == set(BOARDS)
        sweeps = requests(bank, codec.CMD_BUS_STATUS)
        await asyncio.sleep(0.4)
        assert requests(bank, codec.CMD_BUS_STATUS) == sweeps
    finally:
        await bus.close()


class LateSweepPort(LinePort):
    """Lines on which every board answers the bus-wide status ``delay_s`` late (a board
    that waits its turn, or a gateway that holds them): later than the sweep's window,
    in order with everything else on the wire (the line's replies never overtake)."""

    delay_s = 0.0

    async def __call__(self, factory):
        line, protocol = await super().__call__(factory)
        write = line.write
        self.sweeps_at: list[float] = []

        def late_write(data, line: FaultyLine = line) -> None:
            write(data)
            if bytes(data) == codec.bus_status_request() and not line.closing:
                self.sweeps_at.append(line.loop.time())
                bank = line.bank
                answers = b"".join(
                    codec.encode(b << 4, codec.REPLY_BUS_STATUS, bank.status_reply(b)[3:7])
                    for b in bank.boards
                    if b not in bank.offline
                )
                line._send(answers, self.delay_s)

        line.write = late_write
        return line, protocol


async def test_a_late_sweep_answer_is_its_own_sweeps_never_the_next_ones():
    """Finding: an answer to a sweep that came after the sweep's window was taken by the
    next sweep as a fresh reading. Each answer is matched to the sweep it answers (its
    write time), late ones are counted, and the window learns how long they take."""
    config = section(reply_timeout_s=0.1)
    bank = KerongBank.for_bus(config)
    bank.no_bus_status.update(BOARDS)  # the port answers the sweeps, late
    port = LateSweepPort(bank)
    port.delay_s = 0.2  # past the window (reads here take a few ms), within 3 timeouts
    seen = Seen()
    bus = KerongBus(config, seen, connect=port, tuning=TUNING)
    sweep = bus._poller._sweep
    answered: list[float | None] = []  # per board 0 answer: the write time it was matched to
    hand_on = bus._matcher.on_bus_answer
    assert hand_on is not None

    def watch(expectation, frame) -> None:
        if frame.board == 0:
            answered.append(None if expectation is None else expectation.sent)
        hand_on(expectation, frame)

    bus._matcher.on_bus_answer = watch
    await bus.start()
    try:
        await at_rest(bus)
        await eventually(lambda: len(answered) >= 6)
        assert bus.counts[(0, "late")] >= 1  # counted, not taken for a later sweep's
        # The i-th answer of board 0 answers the i-th sweep: never a later one.
        for i, sent in enumerate(answered):
            assert sent is None or sent == pytest.approx(port.sweeps_at[i], abs=0.005)
        assert sum(sent is not None for sent in answered) >= 4
        assert sweep.window_s(len(BOARDS)) >= port.delay_s  # it has learnt
        # And a door at rest still reaches the bus's listener, never flapping back.
        bank.force_open(0, 3)
        await eventually(lambda: seen.closed(0, 3) is False)
        mark = len(seen.calls)
        await asyncio.sleep(0.6)
        assert all(s is None or not s.closed[2] for b, s in seen.calls[mark:] if b == 0)
        for board in BOARDS:
            assert bus.counts[(board, "twins")] == 0
    finally:
        await bus.close()


@pytest.mark.parametrize("late", [2.5, 3.5], ids=["250%-late", "350%-late"])
async def test_a_board_answering_past_three_timeouts_is_never_shown_silent_at_start(late):
    """Finding: a board whose replies came more than 3x late was reported silent at
    start-up (doors unknown, offline sent to the cloud) while its frames arrived."""
    config = KerongBusConfig.model_validate(
        {"name": "rs485", "port": "/dev/ttyUSB0", "boards": [0, 1]}
    )
    delay_s = config.reply_timeout_s * (1 + late)
    bank = KerongBank.for_bus(config, variant=BoardVariant(reply_delay_s=delay_s))
    seen = Seen()
    bus = KerongBus(config, seen, on_health=seen.on_health, connect=LinePort(bank), tuning=TUNING)
    await bus.start()
    try:
        await eventually(lambda: all(seen.last(b) is not None for b in (0, 1)))
        await asyncio.sleep(4 * delay_s)
        assert all(status is not None for _, status in seen.calls)
        assert seen.health == []
        assert bus.counts[(0, "late")] + bus.counts[(1, "late")] >= 1
    finally:
        await bus.close()


async def test_a_lost_reply_costs_its_board_no_pause_where_another_board_answered_after_it():
    """Finding: the resync after a missed read paused its board once more per genuine
    miss (the time the missed read had taken, three timeouts and more). A reply to a
    later request of another board proves the missed one lost (one wire keeps replies in
    order): the board is read again at once, with no pause, and never misread."""
    config = section(rest_poll_interval_s=0.005, bus_status=False)  # the wire's pace
    bank = KerongBank.for_bus(config)
    bank.set_flapping(0, answer=20, miss=1)  # board 0 misses one request in 21
    port = LinePort(bank)
    seen = Seen()
    bus = KerongBus(config, seen, connect=port, tuning=TUNING)
    await bus.start()
    try:
        await eventually(lambda: bank.faults["missed"] >= 5)
        reads0, reads1 = bank.status_reads[0], bank.status_reads[1]
        await eventually(lambda: bank.faults["missed"] >= 10)
        assert bus.counts[(0, "resyncs")] == 0
        assert bus.counts[(0, "lost")] >= 5
        # Board 0 is read about as often as board 1: a miss costs it one timeout, not
        # three or six (at 20 answers and 1 miss, a pause of 0.6 s would halve it).
        assert bank.status_reads[0] - reads0 >= 0.6 * (bank.status_reads[1] - reads1)
        assert bus.silent_boards() == []
        assert seen.last(0) is not None
    finally:
        await bus.close()


async def test_boards_read_by_the_sweeps_count_their_replies():
    """Finding: /metrics showed no replies from healthy boards at rest: only a board's
    own read counted one, and at rest the sweeps read every board."""
    config = section()
    bank = KerongBank.for_bus(config)
    bus = KerongBus(config, Seen(), connect=LinePort(bank), tuning=TUNING)
    await bus.start()
    try:
        sweep = bus._poller._sweep
        await eventually(lambda: sweep.answered)
        await at_rest(bus)
        reads = sum(bank.status_reads.values())
        replies = {board: bus.counts[(board, "replies")] for board in BOARDS}
        rtt_s = {board: bus.rtt_s[board] for board in BOARDS}
        sweeps = sweep.sweeps
        await eventually(lambda: sweep.sweeps >= sweeps + 3)
        assert sum(bank.status_reads.values()) == reads  # the sweeps alone read them
        for board in BOARDS:
            assert bus.counts[(board, "replies")] >= replies[board] + 2
            assert bus.rtt_s[board] > rtt_s[board]
    finally:
        await bus.close()


async def test_the_reply_timeout_comes_back_down_at_rest_once_the_replies_are_fast_again():
    """Finding: the reply clock learnt only from a board's own reads, and at rest the
    sweeps read every board: after a slow spell the timeout stayed high for good."""
    config = section(reply_timeout_s=0.1)
    bank = KerongBank.for_bus(config, variant=BoardVariant(reply_delay_s=0.15))  # late, < 3x
    bus = KerongBus(config, Seen(), connect=LinePort(bank), tuning=TUNING)
    await bus.start()
    try:
        await eventually(lambda: bus.clock.timeout_s >= 0.3)  # the slow spell taught it
        await at_rest(bus)
        reads = sum(bank.status_reads.values())
        bank.variant = BoardVariant()  # fast again, the bus at rest
        await eventually(lambda: bus.clock.timeout_s == config.reply_timeout_s)
        assert sum(bank.status_reads.values()) == reads  # by the sweeps' answers alone
        assert not bus._poller.active
    finally:
        await bus.close()
