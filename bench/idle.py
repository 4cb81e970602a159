"""Start to READY, and what the idle agent costs: CPU (share of one core) and resident
memory, with 48 cabinets (3 boards) and with 160 (10 boards), default settings.

Start to READY: from spawning ``locker-agent run --config FILE`` to the READY=1
datagram on ``NOTIFY_SOCKET`` (what systemd waits for), every board answering
(aim: under 1 s). Idle: no door moves and no command comes; the agent polls its
boards (the emulator held to the wire's pace) and beats; its CPU is read from
/proc over the window, after a warm-up (aims: under 0.5 % of a core at rest, issue
19; RSS: bench/memory.py). ``--active`` holds the bus at the wire's pace (what a
locker costs while someone is at it); ``--no-bus-status`` reads board by board.

Run: .venv/bin/python bench/idle.py [--starts 5] [--window-s 30]
(prints figures; asserts nothing). The emulator and the fake cloud run in this
process: their CPU is not the agent's and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from _rig import Rig, cpu_s, machine, rig, rss_mb

from drivers.kerong.timing import ACTIVE_HOLD_S

# After start the bus holds the wire's pace for active_hold_s: a warm-up shorter than
# that measures the active pace and calls it rest.
WARMUP_S = ACTIVE_HOLD_S + 2.0


def requests(r: Rig) -> int:
    """Status requests the emulator has taken: per board (0x30) and bus-wide (0x32)."""
    return sum(1 for raw in r.boards.bank.received if raw[2] in (0x30, 0x32))


async def measure(
    cabinets: int,
    starts: int,
    window_s: float,
    warmup_s: float,
    bus_keys: dict[str, object],
    without_bus_status: int = 0,
) -> None:
    """Print READY times over ``starts`` starts, then the last start's idle cost."""
    ready: list[float] = []
    for n in range(starts + 1):
        async with rig(
            cabinets, wire=True, bus_keys=bus_keys, without_bus_status=without_bus_status
        ) as r:
            started_s = await r.start()
            if n == 0:
                continue  # warm-up: the bytecode caches are written, the disk's are warm
            ready.append(started_s * 1000)
            if n < starts:
                continue
            await asyncio.sleep(warmup_s)
            reads_before = requests(r)
            loop = asyncio.get_running_loop()
            began, cpu_before = loop.time(), cpu_s(r.pid)
            await asyncio.sleep(window_s)
            elapsed = loop.time() - began
            cpu = (cpu_s(r.pid) - cpu_before) / elapsed * 100
            reads = (requests(r) - reads_before) / elapsed
            rss = rss_mb(r.pid)
    ready.sort()
    boards = -(-cabinets // 16)
    print(
        f"start to READY, {cabinets} cabinets ({boards} boards): p50 "
        f"{statistics.median(ready):.0f} ms, max {ready[-1]:.0f} ms ({starts} starts, one "
        "warm-up start before them)"
        "; aim < 1000 ms"
    )
    print(
        f"idle, {cabinets} cabinets ({boards} boards): CPU {cpu:.2f} % of a core over "
        f"{elapsed:.0f} s ({warmup_s:.0f} s warm-up dropped; {reads:.1f} requests/s), "
        f"RSS {rss:.1f} MB; aims <= 0.5 % at rest, <= 50 MB"
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=WARMUP_S)
    parser.add_argument("--cabinets", type=int, nargs="+", default=[48, 160])
    parser.add_argument(
        "--poll-interval-s", type=float, help="the bus's poll_interval_s (default: the agent's)"
    )
    parser.add_argument(
        "--active",
        action="store_true",
        help="never at rest (rest_poll_interval_s = poll_interval_s): the wire's pace",
    )
    parser.add_argument("--no-bus-status", action="store_true", help="bus_status = false")
    parser.add_argument(
        "--without-bus-status",
        type=int,
        default=0,
        metavar="N",
        help="the last N boards do not answer the bus-wide status (0x32): a mixed bus",
    )
    args = parser.parse_args(argv)
    keys: dict[str, object] = {}
    if args.poll_interval_s is not None:
        keys["poll_interval_s"] = args.poll_interval_s
    if args.active:
        keys["rest_poll_interval_s"] = keys.get("poll_interval_s", 0.005)
    if args.no_bus_status:
        keys["bus_status"] = False
    print(machine())
    print(f"bus settings: {keys or 'defaults'}; boards without 0x32: {args.without_bus_status}")
    for cabinets in args.cabinets:
        await measure(
            cabinets, args.starts, args.window_s, args.warmup_s, keys, args.without_bus_status
        )


if __name__ == "__main__":
    asyncio.run(main())
