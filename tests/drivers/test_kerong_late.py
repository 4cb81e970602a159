"""Replies that come after the timeout: each is its own request's, counted, and the bus
learns to wait for them (ADR 0014); never taken for the next request's answer."""

from __future__ import annotations

import asyncio

import pytest

from drivers.kerong.bus import KerongBus, KerongBusConfig
from drivers.kerong.timing import CEILING_S, LATE_FACTOR, MARGIN, RECENT, ReplyClock
from simulator.kerong_core import BoardVariant, KerongBank
from tests.drivers.kerong_line import TUNING, LinePort, Seen, eventually

BOARDS = [0, 1]


async def run_late(delay_s: float, port: str = "/dev/ttyUSB0") -> tuple[KerongBus, KerongBank]:
    """A bus whose boards all answer ``delay_s`` after each request, run until both are
    online and a door change made after that was reported."""
    config = KerongBusConfig.model_validate({"name": "rs485", "port": port, "boards": BOARDS})
    bank = KerongBank.for_bus(config, variant=BoardVariant(reply_delay_s=delay_s))
    seen = Seen()
    bus = KerongBus(config, seen, connect=LinePort(bank), tuning=TUNING)
    await bus.start()
    try:
        await eventually(lambda: all(seen.last(b) is not None for b in BOARDS))
        bank.force_open(1, 5)
        await eventually(lambda: (s := seen.last(1)) is not None and not s.closed[4])
        # Quiet down: whatever was asked has been answered.
        await asyncio.sleep(3 * delay_s)
    finally:
        await bus.close()
    return bus, bank


def accounted(bus: KerongBus, bank: KerongBank, board: int) -> None:
    """Every reply the board sent was matched to the request it answered: none left over
    (a stray or a twin is a reply taken for another request's), none twice."""
    counts = bus.counts
    assert counts[(board, "twins")] == 0
    assert counts[(board, "strays")] == 0
    taken = counts[(board, "replies")] + counts[(board, "late")]
    assert bank.status_reads[board] - 1 <= taken <= bank.status_reads[board]


@pytest.mark.parametrize("late", [0.2, 1.5], ids=["20%-late", "150%-late"])
async def test_a_board_whose_replies_come_late_is_taken_online_and_counted(late, monkeypatch):
    timeout_s = 0.1  # a USB adapter's default
    delay_s = timeout_s * (1 + late)
    latencies: list[float] = []  # every round trip the bus measured
    learn = ReplyClock.seen

    def seen(clock: ReplyClock, latency_s: float, *, late: bool = False) -> None:
        latencies.append(latency_s)
        learn(clock, latency_s, late=late)

    monkeypatch.setattr(ReplyClock, "seen", seen)
    bus, bank = await run_late(delay_s)
    # Counted, not silently dropped. Not each board's: the clock learns from the first
    # late reply, and a board first asked after that (a loaded host's order) is on time.
    assert sum(bus.counts[(board, "late")] for board in BOARDS) >= 1
    for board in BOARDS:
        accounted(bus, bank, board)
    # The bus now waits long enough for them, and no longer than the slowest it saw
    # asks (a loaded host's replies are slower: the bound is what was seen, not a guess).
    assert bus.clock.timeout_s >= delay_s
    assert bus.clock.timeout_s <= min(CEILING_S, MARGIN * max(latencies)) + 1e-9


async def test_a_reply_later_than_its_window_is_late_never_a_twin():
    """Past LATE_FACTOR timeouts the first late reply is taken by the next read of its
    board (its bytes cannot say whose it is); the next one shows the shift: it is
    counted late, the clock learns, and no board is doubled."""
    delay_s = 0.1 * (LATE_FACTOR + 0.5)
    bus, _ = await run_late(delay_s)
    for board in BOARDS:
        assert bus.counts[(board, "twins")] == 0
    assert sum(bus.counts[(board, "late")] for board in BOARDS) >= 1  # as above: the bus's
    assert bus.clock.timeout_s >= delay_s


async def test_through_a_gateway_the_default_waits_for_hundreds_of_ms():
    bus, bank = await run_late(0.12, port="socket://10.0.0.7:5000")
    assert bus.clock.timeout_s >= 0.36
    for board in BOARDS:
        assert bus.counts[(board, "late")] == 0
        assert bus.counts[(board, "timeouts")] == 0
        accounted(bus, bank, board)


def test_the_clock_learns_within_its_bounds():
    clock = ReplyClock(0.1)
    assert (clock.timeout_s, clock.late_window_s) == (0.1, pytest.approx(0.1 * LATE_FACTOR))
    clock.seen(0.005)
    assert clock.timeout_s == 0.1  # never under the configured start
    clock.seen(0.12, late=True)
    assert clock.timeout_s == pytest.approx(MARGIN * 0.12)
    clock.seen(10.0, late=True)
    assert clock.timeout_s == CEILING_S  # bounded
    for _ in range(RECENT):
        clock.seen(0.004)
    assert clock.timeout_s == 0.1  # back once the slow replies have left the window
    assert clock.answer_s == pytest.approx(MARGIN * 0.004)
    # A configured timeout longer than the ceiling is kept as it is.
    assert ReplyClock(3.0).ceiling_s == 3.0


async def test_replies_past_the_late_window_never_leave_the_bus_one_request_behind():
    """Finding: replies 300 % late (0.4 s on a 0.1 s USB timeout): once one reply came
    past its window, every later read was answered by the reply to the read before it,
    every request went out while a board was still answering, the clock learnt 0.1-0.2 s
    against a true 0.4 s, and nothing ever corrected it."""
    delay_s = 0.4
    config = KerongBusConfig.model_validate(
        {"name": "rs485", "port": "/dev/ttyUSB0", "boards": BOARDS, "rest_poll_interval_s": 0.005}
    )
    bank = KerongBank.for_bus(config, variant=BoardVariant(reply_delay_s=delay_s))
    port = LinePort(bank)
    bus = KerongBus(config, Seen(), connect=port, tuning=TUNING)
    loop = asyncio.get_running_loop()
    await bus.start()
    try:
        await asyncio.sleep(15)  # the shift began some seconds in
        end = loop.time()
    finally:
        await bus.close()
    writes = port.line.written_at
    late = [t for t in writes if t > end - 5]
    overlapping = [t for t in late if any(t0 < t < t0 + delay_s - 1e-3 for t0 in writes)]
    assert late and not overlapping  # each read waits for the reply before it
    assert bus.clock.timeout_s >= delay_s  # the clock learnt the true latency
