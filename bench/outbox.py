"""Outbox figures: durable writes per second, draining a backlog, one change's latency.

Run: .venv/bin/python bench/outbox.py  (prints figures; asserts nothing)
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import structlog
from pydantic import SecretStr

from agent.outbox import Outbox
from agent.uplink import Uplink
from simulator.cloud import FakeCloud

KEY = "bench-key"
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


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


def main() -> None:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as d:
        tmp = Path(d)
        bench_writes(tmp)
        asyncio.run(bench_drain(tmp))
        asyncio.run(bench_latency(tmp))
        bench_stats_on_a_backlog(tmp)


if __name__ == "__main__":
    main()
