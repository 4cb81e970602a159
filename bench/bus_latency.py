"""How soon the Kerong bus sees a door change: 3 emulated boards on a real pty.

Run: .venv/bin/python bench/bus_latency.py [--samples 100]  (prints figures; asserts nothing)
Aim (issue 2): a change is seen within 100 ms with the default settings.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import structlog
from _rig import machine

from drivers.kerong.bus import BoardStatus, KerongBus, KerongBusConfig
from simulator.kerong_board import KerongBoardEmulator

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


async def measure(samples: int, silent_board: bool) -> list[float]:
    boards = KerongBoardEmulator([0, 1, 2, 3] if silent_board else [0, 1, 2])
    await boards.start()
    if silent_board:
        boards.set_offline(3)
    seen: asyncio.Queue[tuple[float, bool]] = asyncio.Queue()

    def on_status(board: int, status: BoardStatus | None) -> None:
        if board == 2 and status is not None:
            seen.put_nowait((time.perf_counter(), status.closed[4]))

    config = KerongBusConfig(
        name="bench", port=boards.port, boards=[0, 1, 2, 3] if silent_board else [0, 1, 2]
    )
    bus = KerongBus(config, on_status)
    await bus.start()
    await seen.get()  # first read
    rng = random.Random(7)
    out = []
    for _ in range(samples):
        await asyncio.sleep(rng.uniform(0.02, 0.12))  # land anywhere in the poll cycle
        opening = boards.state(2, 5).closed
        started = time.perf_counter()
        if opening:
            boards.force_open(2, 5)
        else:
            boards.shut_door(2, 5)
        while True:
            when, closed = await seen.get()
            if closed != opening:
                break
        out.append((when - started) * 1000)
    await bus.close()
    await boards.close()
    return sorted(out)


def report(name: str, ms: list[float]) -> None:
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(
        f"{name}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"
        f" ({len(ms)} changes)"
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args(argv)
    print(machine())
    report("door change seen, 3 boards, defaults", await measure(args.samples, False))
    report("door change seen, 3 boards + 1 silent board", await measure(args.samples, True))


if __name__ == "__main__":
    asyncio.run(main())
