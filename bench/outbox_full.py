"""A full outbox: what one append costs once rows must be dropped to make room.

Run: .venv/bin/python bench/outbox_full.py [--quick]  (prints figures; asserts nothing)

Three fills at each size, then appends timed: door changes with a few alarms (a
change goes: the common case), only ended alarms (an alarm goes with its
``_cleared``), and only active alarms, each of another cabinet (the worst: no pair to
find, every clearing sought before the oldest raise goes). An ended pair frees two
rows, so only every other append drops there. The fill is written in one
transaction straight into the file, then opened as the agent would.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import structlog
from _rig import machine

from agent.storage.outbox import Outbox


def _fill(path: Path, rows: list[tuple[str, str, int]]) -> None:
    Outbox(path).close()  # the schema
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO outbox (kind, event, cabinets, created) VALUES (?, ?, ?, 0)",
            [(k, e, json.dumps([{"key": key, "front_status": "open"}])) for k, e, key in rows],
        )
    db.close()


def _fills(n: int) -> dict[str, list[tuple[str, str, int]]]:
    changes = [("change", "door_changed", i % 48) for i in range(n)]
    for i in range(0, n, 100):
        changes[i] = ("alarm", "door_left_open", i)
    ended: list[tuple[str, str, int]] = []
    for i in range(n // 2):
        ended += [("alarm", "door_left_open", i), ("alarm", "door_left_open_cleared", i)]
    active = [("alarm", "door_left_open", i) for i in range(n)]
    return {"changes, 1% alarms": changes, "ended alarms only": ended, "active alarms only": active}


def bench(tmp: Path, n: int, appends: int) -> None:
    for name, rows in _fills(n).items():
        path = tmp / f"{n}-{name.split()[0]}.sqlite3"
        _fill(path, rows)
        box = Outbox(path, max_rows=n)
        took = []
        for i in range(appends):
            kind, event = rows[0][:2] if name.startswith("changes") else ("alarm", "lock_jammed")
            started = time.perf_counter()
            box.append(kind, event, [{"key": 10_000 + i, "front_status": "open"}])
            took.append(time.perf_counter() - started)
        box.close()
        print(
            f"{n:>7} rows, {name:<20} append when full: median"
            f" {statistics.median(took) * 1000:8.2f} ms, max {max(took) * 1000:8.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    # every drop is logged at error: quiet here, the figures are the point
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    print(machine())
    sizes = (1_000, 5_000) if args.quick else (1_000, 10_000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            bench(Path(tmp), n, appends=5 if n > 10_000 else 20)


if __name__ == "__main__":
    main()
