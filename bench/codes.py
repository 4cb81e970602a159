"""Pickup-code figures: one code judged against a full store, provisioning, the timing
of a match against a miss (constant-time comparison over every held hash).

Run: .venv/bin/python bench/codes.py [--quick]  (prints figures; asserts nothing)
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from _rig import machine

from agent.codes.held import MAX_CODES, HeldCodes
from agent.codes.message import MAX_PUT, parse_codes
from agent.storage.codes import CodeStore

DOORS = {key: ("front",) for key in range(48)}


def puts(start: int, n: int) -> list[dict]:
    return [
        {
            "key": i % 48,
            "order_id": i,
            "sha256": hashlib.sha256(f"code-{i}".encode()).hexdigest(),
            "expires_at": "2099-01-01T00:00:00Z",
        }
        for i in range(start, start + n)
    ]


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):.3f} ms, p99 {p99:.3f} ms, max {ms[-1]:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    held_n = 1_000 if args.quick else MAX_CODES
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        store = CodeStore(Path(tmp) / "codes.sqlite3")
        codes = HeldCodes(store, DOORS)
        started = time.perf_counter()
        for start in range(0, held_n, MAX_PUT):
            codes.provision(parse_codes({"put": puts(start, min(MAX_PUT, held_n - start))}))
        took = time.perf_counter() - started
        print(f"provision {held_n} codes in messages of {MAX_PUT}: {took:.2f} s")
        rounds = 50 if args.quick else 300
        for label, code in (("a match (the first held)", "code-0"), ("a miss", "nope")):
            samples = []
            for _ in range(rounds):
                t = time.perf_counter()
                codes.match(code)
                samples.append(time.perf_counter() - t)
            print(f"judge {label} against {held_n} codes: {figures(samples)}")
        store.close()


if __name__ == "__main__":
    main()
