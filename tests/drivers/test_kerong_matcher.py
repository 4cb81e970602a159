"""ReplyMatcher on its own: which write each frame answers, told from its expectations."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from drivers.kerong import codec
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.timing import ReplyClock

ALL_SHUT = (True,) * codec.CHANNELS
NO_ITEMS = (False,) * codec.CHANNELS


def status(board: int, addr: int | None = None, open_channel: int | None = None) -> codec.Frame:
    bits = tuple(ch != open_channel for ch in range(1, codec.CHANNELS + 1))
    raw = codec.status_reply(board, bits, NO_ITEMS)
    if addr is not None:
        raw = codec.encode(addr, codec.REPLY_STATUS, raw[3:7])
    [frame] = codec.FrameParser().feed(raw)
    return frame


class Bench:
    """A matcher with its counts and every reading it handed on."""

    def __init__(self, timeout_s: float = 0.05) -> None:
        self.counts: Counter[tuple[int, str]] = Counter()
        self.clock = ReplyClock(timeout_s)
        self.matcher = ReplyMatcher("t", self.clock, self.counts, boards=[0, 1])
        self.readings: list[tuple[bytes, bool]] = []
        self.matcher.on_reading = lambda frame, confirm: self.readings.append((frame.raw, confirm))

    def poll(self, board: int):
        expectation = self.matcher.expect_status(board)
        self.matcher.written(expectation, codec.status_request(board))
        return expectation

    def frame(self, frame: codec.Frame) -> None:
        self.matcher.frame_received(frame)


async def test_a_poll_takes_its_reply_and_a_single_second_answer_is_a_stray():
    bench = Bench()
    poll = bench.poll(0)
    bench.frame(status(0))
    assert poll.reply.result() == status(0)
    bench.matcher.finished(poll, same_link=True)
    bench.frame(status(0))  # once: a stray, not a board
    assert (bench.counts[(0, "twins")], bench.counts[(0, "strays")]) == (0, 1)
    assert bench.readings == []  # a second answer is not a reading


async def test_two_answers_to_two_polls_in_a_row_are_a_twin():
    bench = Bench()
    for _ in range(3):
        poll = bench.poll(0)
        bench.frame(status(0))
        bench.frame(status(0, open_channel=3))  # the other board's door 3 is open
        bench.matcher.finished(poll, same_link=True)
    assert bench.counts[(0, "twins")] == 2
    assert bench.matcher.twinned(0)


@pytest.mark.parametrize("form", ["board", "lock"])
async def test_an_unlocks_answer_is_its_own_and_a_reading(form):
    bench = Bench()
    addr = 0x05  # board 0, channel 6
    unlock = bench.matcher.expect_unlock(0, addr, pulse_s=0.5)
    bench.matcher.written(unlock, codec.unlock_request(0, 6))
    poll = bench.poll(0)  # the bus went on before the board answered
    answer = status(0, addr if form == "lock" else None, open_channel=6)
    bench.frame(status(0))  # the poll's reply
    bench.frame(answer)  # the unlock's, after it
    assert poll.reply.result() == status(0)
    assert bench.counts[(0, "unlock_replies")] == 1
    assert bench.counts[(0, "twins")] + bench.counts[(0, "strays")] == 0
    assert bench.readings == [(answer.raw, False)]
    bench.matcher.finished(unlock, same_link=True)
    assert bench.matcher.unlock_answers == {0: True}


async def test_an_answer_in_the_unlocks_form_never_answers_a_poll():
    bench = Bench()
    poll = bench.poll(0)
    bench.frame(status(0, addr=0x0F))  # nobody unlocked channel 16: a stray
    assert not poll.reply.done()
    assert bench.counts[(0, "strays")] == 1
    assert bench.readings == [(status(0, addr=0x0F).raw, True)]  # to confirm by a read


async def test_a_late_reply_is_its_own_requests_and_ends_the_drain():
    bench = Bench(timeout_s=0.01)
    poll = bench.poll(1)
    await asyncio.sleep(0.015)  # past its timeout, within its late window
    poll.reply.cancel()
    bench.matcher.finished(poll, same_link=True)
    assert 1 in bench.matcher.drain_until
    bench.frame(status(1))
    assert bench.counts[(1, "late")] == 1
    assert 1 not in bench.matcher.drain_until  # nothing more can come: ask it again
    assert bench.clock.timeout_s > 0.01  # and wait longer next time
    assert bench.readings == [(status(1).raw, False)]


async def test_a_reply_past_its_window_is_told_by_the_shift_never_a_twin():
    bench = Bench(timeout_s=0.005)
    first = bench.poll(0)
    first.reply.cancel()
    bench.matcher.finished(first, same_link=True)
    await asyncio.sleep(0.02)  # its window (3 timeouts) is over
    second = bench.poll(0)
    bench.frame(status(0))  # the first one's reply, very late: taken by the second
    bench.matcher.finished(second, same_link=True)
    bench.frame(status(0))  # the second one's own
    assert (bench.counts[(0, "late")], bench.counts[(0, "twins")]) == (1, 0)


def bus_answer(board: int, open_channel: int | None = None) -> codec.Frame:
    data = status(board, open_channel=open_channel).data
    [frame] = codec.FrameParser().feed(codec.encode(board << 4, codec.REPLY_BUS_STATUS, data))
    return frame


async def test_a_bus_wide_status_takes_one_answer_per_board_and_a_late_one_is_its_own():
    """Finding: an answer to a sweep that came after its window was taken by the next
    sweep as a fresh reading. Each board owes one answer a sweep, tagged, and answers
    its sweeps in order: a late answer is its own sweep's, never the next one's."""
    bench = Bench()
    got: list[tuple[object, int]] = []
    bench.matcher.on_bus_answer = lambda expectation, frame: got.append((expectation, frame.board))
    first = bench.matcher.expect_bus_status([0, 1])
    bench.matcher.written(list(first.values()), codec.bus_status_request())
    bench.frame(bus_answer(1))
    assert got == [(first[1], 1)]
    bench.matcher.sweep_over(first.values(), same_link=True)  # board 0 missed the window
    second = bench.matcher.expect_bus_status([0, 1])
    bench.matcher.written(list(second.values()), codec.bus_status_request())
    late = bus_answer(0, open_channel=2)
    bench.frame(late)  # board 0's answer to the first sweep, late, in the second's window
    assert got[-1] == (first[0], 0) and first[0].timed_out
    assert bench.counts[(0, "late")] == 1
    assert bench.readings == [(late.raw, False)]  # a fresh reading, never the second's
    bench.frame(bus_answer(0))
    assert got[-1] == (second[0], 0) and not second[0].timed_out  # its own, in time
    bench.frame(bus_answer(1))
    assert got[-1] == (second[1], 1)
    bench.frame(bus_answer(1))  # a second answer: no sweep owes it
    assert got[-1] == (None, 1)


async def test_an_answer_to_a_later_sweep_ends_the_wait_for_a_lost_one():
    """A board's answer to a sweep that was lost would leave its answer to the next
    sweep taken as the lost one's; another board's answer to the next sweep shows the
    line moved on (replies come in order), so the earlier one is given up."""
    bench = Bench()
    first = bench.matcher.expect_bus_status([0, 1])
    bench.matcher.written(list(first.values()), codec.bus_status_request())
    bench.frame(bus_answer(1))
    bench.matcher.sweep_over(first.values(), same_link=True)  # board 0's answer was lost
    second = bench.matcher.expect_bus_status([0, 1])
    bench.matcher.written(list(second.values()), codec.bus_status_request())
    bench.frame(bus_answer(1))  # board 1 answers the second sweep: the first is over
    bench.frame(bus_answer(0))
    assert second[0].answered and not first[0].answered
    assert bench.counts[(0, "late")] == 0


async def test_a_later_answer_on_one_wire_ends_an_earlier_wait():
    """Replies come in the order of their requests: once a later request is answered, a
    reply still owed to an earlier one is lost, not late; its board waits no longer."""
    bench = Bench(timeout_s=0.05)
    missed = bench.poll(0)
    bench.matcher.finished(missed, same_link=True)  # timed out: board 0 drains
    assert 0 in bench.matcher.drain_until
    other = bench.poll(1)
    bench.frame(status(1))
    assert other.reply.result() == status(1)
    assert 0 not in bench.matcher.drain_until  # its reply would have come first
    assert bench.counts[(0, "lost")] == 1
    retry = bench.poll(0)
    bench.frame(status(0))
    assert retry.reply.result() == status(0)
    assert 0 not in bench.matcher.drain_until  # no resync pause: the miss was a loss
    assert bench.counts[(0, "resyncs")] == 0


async def test_the_echo_is_skipped_and_a_new_link_forgets_the_old():
    bench = Bench()
    poll = bench.poll(0)
    bench.frame(codec.FrameParser().feed(codec.status_request(0))[0])
    assert not poll.reply.done()
    bench.matcher.forget_late()
    bench.frame(status(0))
    assert not poll.reply.done()  # written on the old connection
    assert bench.counts[(0, "strays")] == 1
