"""Outbox figures: durable writes per second, draining a backlog, one change's latency.

Run: .venv/bin/python bench/outbox.py [--quick]  (prints figures; asserts nothing)

The drain is measured twice: the outbox and uplink in this process, and the agent
as a process (``locker-agent run``) started on a storage dir holding the backlog,
until the fake cloud has every change.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _rig import machine, rig
from pydantic import SecretStr

from agent.cloud.uplink import Uplink
from agent.storage.outbox import OUTBOX_FILE, Outbox
from simulator.cloud import FakeCloud

KEY = "bench-key"


def change(box: Outbox, i: int) -> None:
    status = "open" if (i // 48) % 2 == 0 else "closed"
    box.append("change", "door_changed", [{"key": i % 48, "front_status": status}])


def bench_writes(tmp: Path, n: int = 500) -> None:
    box = Outbox(tmp / "writes.sqlite3")
    started = time.perf_counter()
    for i in range(n):
        change(box, i)
    elapsed = time.perf_counter() - started
    box.close()
    print(
        f"durable writes (WAL, synchronous=FULL): {n / elapsed:,.0f} changes/s "
        f"({elapsed / n * 1000:.2f} ms each, {tmp})"
    )


async def bench_drain(tmp: Path, n: int = 10_000) -> None:
    box = Outbox(tmp / "drain.sqlite3", batch_limit=50)
    for i in range(n):
        change(box, i)
    cloud = FakeCloud(KEY)
    await cloud.start()
    uplink = Uplink(cloud.url, SecretStr(KEY), box, lambda: [], heartbeat_s=3600)
    started = time.perf_counter()
    await uplink.start()
    while box.stats()["pending"]:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await uplink.close()
    received = len(cloud.cabinet_updates())
    await cloud.close()
    box.close()
    print(
        f"drain {n:,} changes into the fake cloud on loopback: {elapsed:.2f} s "
        f"({received:,} entries in {len(cloud.received)} POSTs, batch limit 50)"
    )


async def bench_latency(tmp: Path, n: int = 50) -> None:
    box = Outbox(tmp / "latency.sqlite3")
    cloud = FakeCloud(KEY)
    await cloud.start()
    uplink = Uplink(cloud.url, SecretStr(KEY), box, lambda: [], heartbeat_s=3600)
    await uplink.start()
    samples = []
    for i in range(n):
        started = time.perf_counter()
        box.append("change", "door_changed", [{"key": 1000 + i, "front_status": "open"}])
        await cloud.wait_for(lambda c, k=1000 + i: c.get("key") == k, timeout=5)
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    await uplink.close()
    await cloud.close()
    box.close()
    samples.sort()
    print(
        f"one change, seen -> accepted by a healthy cloud: median "
        f"{statistics.median(samples):.1f} ms, p95 {samples[int(n * 0.95) - 1]:.1f} ms, "
        f"max {samples[-1]:.1f} ms ({n} samples)"
    )


def bench_stats_on_a_backlog(tmp: Path, n: int = 95_000) -> None:
    """What one /healthz costs the loop with a large backlog (outbox.stats())."""
    box = Outbox(tmp / "backlog.sqlite3", max_rows=200_000)
    with box._file.db:  # one transaction: filling is not what is measured
        for i in range(n):
            box._file.db.execute(
                "INSERT INTO outbox (kind, event, cabinets, created) VALUES (?, ?, ?, ?)",
                ("change", "door_changed", f'[{{"key":{i % 48},"front_status":"open"}}]', 0.0),
            )
    box._recount()
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        box.stats()
        samples.append((time.perf_counter() - started) * 1000)
    box.close()
    samples.sort()
    print(
        f"outbox stats (one /healthz) with {n:,} pending rows: median "
        f"{statistics.median(samples):.3f} ms, max {samples[-1]:.3f} ms (200 calls)"
    )


async def bench_drain_process(n: int = 10_000) -> None:
    """The agent process drains a backlog of ``n`` changes left by an earlier run."""
    async with rig(48, wire=True) as r:
        storage = r.workdir / "storage"
        storage.mkdir()
        box = Outbox(storage / OUTBOX_FILE)
        for i in range(n):
            change(box, i)
        box.close()
        started = time.perf_counter()
        ready_s = await r.start()
        while sum(len(x["body"]["cabinets"]) for x in r.cloud.received) < n:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    print(
        f"drain {n:,} changes, the agent as a process (48 cabinets polled): {elapsed:.2f} s "
        f"from spawn ({ready_s:.2f} s of it to READY), {len(r.cloud.received)} POSTs"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (the smoke test)")
    args = parser.parse_args(argv)
    drain, writes, latency, backlog = (
        (200, 50, 5, 2_000) if args.quick else (10_000, 500, 50, 95_000)
    )
    print(machine())
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as d:
        tmp = Path(d)
        bench_writes(tmp, writes)
        asyncio.run(bench_drain(tmp, drain))
        asyncio.run(bench_drain_process(drain))
        asyncio.run(bench_latency(tmp, latency))
        bench_stats_on_a_backlog(tmp, backlog)


if __name__ == "__main__":
    main()
