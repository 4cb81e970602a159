"""Door to cloud: a lock bit flips at a random moment; how long until the fake cloud
receives the change. The agent runs as a process at its default settings, on 1, 3
and 10 boards (16 doors each; a Kerong chain holds 10), against the emulator held to
the wire's pace (19200 baud: 7.3 ms a read).

The limit beside each figure is the wire's worst case for a poller that reads back
to back (``_rig.door_floor_s``): one cycle of reads plus one reply. The aim (issue
13) is a p99 within 1.5x of it.

Run: .venv/bin/python bench/door_to_cloud.py [--samples 200] [--boards 1 3 10]
(prints figures; asserts nothing). Times: flip and receipt both in this process
(``time.time()``; the fake cloud stamps a request when its headers are read).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _rig import FakeCloud, door_floor_s, machine, rig, summary, where

WARMUP = 10
FSYNCS = 200


async def door_to_cloud(
    boards: int, samples: int, warmup: int, seed: int, bus_keys: dict[str, object]
) -> list[float]:
    """Milliseconds from each flip to the cloud's receipt, warm-up dropped."""
    rng = random.Random(seed)
    async with rig(16 * boards, wire=True, bus_keys=bus_keys) as r:
        await r.start()
        await asyncio.sleep(0.5)  # the start-up snapshot is out
        out: list[float] = []
        for i in range(samples + warmup):
            await asyncio.sleep(rng.uniform(0.03, 0.15))  # anywhere in the poll cycle
            key = rng.randrange(16 * boards)
            board, channel = where(key)
            opening = r.boards.state(board, channel).closed
            want = "open" if opening else "closed"
            start = len(r.cloud.received)
            flipped = time.time()
            if opening:
                r.boards.force_open(board, channel)
            else:
                r.boards.shut_door(board, channel)
            received = await receipt(r.cloud, key, want, start)
            if i >= warmup:
                out.append((received - flipped) * 1000)
        return out


def fsync_ms(directory: Path, count: int) -> list[float]:
    """Milliseconds of ``count`` fsyncs of a small append in ``directory``."""
    out = []
    with (directory / "fsync.bin").open("ab") as f:
        for _ in range(count):
            f.write(b"x" * 100)
            f.flush()
            began = time.perf_counter()
            os.fsync(f.fileno())
            out.append((time.perf_counter() - began) * 1000)
    return out


async def receipt(cloud: FakeCloud, key: int, status: str, start: int) -> float:
    """When the cloud received ``status`` for cabinet ``key`` in a request after the
    first ``start`` ones (unix seconds)."""
    matched: list[dict[str, Any]] = []

    def predicate(cabinet: dict[str, Any]) -> bool:
        if cabinet.get("key") == key and cabinet.get("front_status") == status:
            for record in cloud.received[start:]:
                if any(c is cabinet for c in record["body"]["cabinets"]):
                    matched.append(record)
                    return True
        return False

    await cloud.wait_for(predicate, timeout=10)
    return matched[0]["received_at"]


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--boards", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="flips not counted")
    parser.add_argument(
        "--poll-interval-s", type=float, help="the bus's poll_interval_s (default: the agent's)"
    )
    args = parser.parse_args(argv)
    keys = {} if args.poll_interval_s is None else {"poll_interval_s": args.poll_interval_s}
    print(machine())
    print(f"bus settings: {keys or 'defaults'}")
    with tempfile.TemporaryDirectory(prefix="locker-bench-") as tmp:
        disk = sorted(fsync_ms(Path(tmp), FSYNCS if args.samples > 20 else 20))
    print(
        f"the disk's part: one fsync where the agent keeps its outbox: {summary(disk)} "
        "(every change is committed, synchronous=FULL, before it is sent)"
    )
    for boards in args.boards:
        ms = await door_to_cloud(boards, args.samples, args.warmup, args.seed, keys)
        floor = door_floor_s(boards) * 1000
        print(
            f"door to cloud, {boards} board(s), {16 * boards} doors: {summary(ms, args.warmup)}"
            f"; wire floor {floor:.1f} ms, aim p99 <= {1.5 * floor:.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
