"""A property of the Kerong driver: no interleaving of polls, unlocks, reads and stray
frames, on any board variant, through a clean or a faulty line that may turn slow (late
replies), makes a second pulse or a phantom twin board, or leaves a wrong status
standing. ``KERONG_PROPERTY_EXAMPLES`` sets how many programs are tried (30)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.kerong import codec
from drivers.kerong.bus import BoardStatus, BusTuning, KerongBus, KerongBusConfig
from simulator.kerong_core import VARIANTS, KerongBank
from tests.drivers.kerong_line import CLEAN, FAULTY, LinePort

BOARDS = [0, 1]
WAIT = 5.0

waits = st.tuples(st.just("wait"), st.integers(0, 25))
unlocks = st.tuples(st.just("unlock"), st.sampled_from(BOARDS), st.integers(1, codec.CHANNELS))
strays = st.tuples(st.just("stray"), st.sampled_from(BOARDS), st.integers(1, codec.CHANNELS))
shuts = st.tuples(st.just("shut"), st.sampled_from(BOARDS), st.integers(1, codec.CHANNELS))
reads = st.tuples(st.just("read"), st.sampled_from(BOARDS))
# The line slows down or speeds up (a gateway): replies that many ms after the request,
# past the 100 ms timeout for the last two.
slows = st.tuples(st.just("slow"), st.sampled_from([0, 30, 120, 250]))
steps = st.lists(st.one_of(waits, unlocks, strays, shuts, reads, slows), min_size=1, max_size=14)


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


async def play(variant: str, faulty: bool, program: list[tuple]) -> None:
    config = KerongBusConfig.model_validate(
        {
            "name": "rs485",
            "port": "/dev/ttyFAKE",
            "boards": BOARDS,
            "pulse_s": 0.05,
            "stagger_s": 0,
            "max_concurrent": 4,
        }
    )
    bank = KerongBank.for_bus(config, variant=VARIANTS[variant])
    port = LinePort(bank, FAULTY if faulty else CLEAN)
    last: dict[int, BoardStatus | None] = {}

    def on_status(board: int, status: BoardStatus | None) -> None:
        last[board] = status

    tuning = BusTuning(offline_poll_interval_s=0.05, reconnect_min_s=0.001, reconnect_max_s=0.01)
    bus = KerongBus(config, on_status, connect=port, tuning=tuning)
    asked: Counter[tuple[int, int]] = Counter()
    tasks: list[asyncio.Task[object]] = []
    try:
        await bus.start()
        await eventually(lambda: all(last.get(b) is not None for b in BOARDS))
        for step in program:
            kind = step[0]
            if kind == "wait":
                await asyncio.sleep(step[1] / 1000)
            elif kind == "unlock":
                asked[(step[1], step[2])] += 1
                tasks.append(asyncio.create_task(bus.unlock(step[1], step[2])))
            elif kind == "stray":
                # A status frame nobody asked for, in the unlock's ADDR form.
                board, channel = step[1], step[2]
                port.line.inject(bank.status_reply(board, (board << 4) | (channel - 1)))
            elif kind == "shut":
                bank.shut_door(step[1], step[2])
            elif kind == "slow":
                bank.variant = bank.variant.model_copy(update={"reply_delay_s": step[1] / 1000})
            else:
                tasks.append(asyncio.create_task(bus.read_status(step[1])))
            await asyncio.sleep(0)
        done, _ = await asyncio.wait(tasks, timeout=WAIT) if tasks else (set(), set())
        assert len(done) == len(tasks)
        # Never a second pulse: each unlock asked went out once.
        assert Counter(bank.unlocked) == asked
        # No phantom twin, and what stands is the truth once the doors are still.
        assert not any(n for (_, what), n in bus.counts.items() if what == "twins")
        for board in BOARDS:
            truth = tuple(bank.feedback_closed(board, ch) for ch in range(1, 17))
            await eventually(lambda b=board, t=truth: (s := last.get(b)) and s.closed == t)
    finally:
        for task in tasks:
            task.cancel()
        await bus.close()


@settings(
    max_examples=int(os.environ.get("KERONG_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(variant=st.sampled_from(sorted(VARIANTS)), faulty=st.booleans(), program=steps)
def test_no_interleaving_pulses_twice_or_makes_a_twin(variant, faulty, program):
    asyncio.run(play(variant, faulty, program))
