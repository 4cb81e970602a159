"""Resident memory of the agent under a flood of commands on the cloud's channel.

The agent runs as a process (``--cabinets``, default 48, at the wire's pace); the fake
cloud sends ``--commands`` opens (default 10,000), each padded with ``--pad-kb`` of
JSON whitespace, round robin over the cabinets, as fast as the websocket takes
them, without waiting for answers; every ``--jam-every``th lock is jammed, so its
opens are slow (two pulses and two confirmation waits). The agent's RSS is read
from /proc before, every 100 messages during, and after the answers are in. A
bounded agent answers what it cannot take at once (BUSY), so its peak stays near
its resting size whatever the flood.

Run: .venv/bin/python bench/flood.py [--commands 10000] [--pad-kb 4] [--jam-every 4]
(prints figures; asserts nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from _rig import machine, rig, rss_mb, where


async def flood(commands: int, pad_kb: int, jam_every: int, cabinets: int) -> None:
    """Print RSS before, at the peak and after one flood, and what was answered."""
    async with rig(cabinets, wire=True, channel=True) as r:
        await r.start()
        await r.cloud.wait_for_agent(10)
        jammed = range(0, cabinets, jam_every) if jam_every else range(0)
        for key in jammed:
            r.boards.jam(*where(key))
        await asyncio.sleep(2.0)  # settled: the start-up snapshot is out
        before = rss_mb(r.pid)
        peak = before
        pad = " " * (pad_kb * 1024)
        started = time.perf_counter()
        for i in range(commands):
            body = json.dumps({"id": f"flood-{i}", "key": i % cabinets, "command": "open"})
            await r.cloud.send_raw(body[:-1] + pad + "}")
            if i % 100 == 0:
                peak = max(peak, rss_mb(r.pid))
        sent_s = time.perf_counter() - started
        async with asyncio.timeout(300):
            while len(r.cloud.answers) < commands:
                peak = max(peak, rss_mb(r.pid))
                await asyncio.sleep(0.05)
        answered_s = time.perf_counter() - started
        after = rss_mb(r.pid)
        answers = r.cloud.answers[:commands]
        busy = sum(1 for a in answers if not a["ok"] and a["error"]["type"] == "BUSY")
        done = sum(1 for a in answers if a["ok"])
        pulses = len(r.boards.bank.unlocked)
    print(
        f"{commands:,} opens of {pad_kb} KB on the channel, {cabinets} cabinets"
        f" ({len(jammed)} jammed): sent in {sent_s:.1f} s, all answered in {answered_s:.1f} s"
    )
    print(f"  answers: {done:,} done, {busy:,} BUSY, {commands - done - busy:,} other errors")
    print(f"  pulses on the wire: {pulses:,}")
    grew = peak - before
    print(f"  RSS before {before:.1f} MB, peak {peak:.1f} MB (+{grew:.1f}), after {after:.1f} MB")


def main(argv: list[str] | None = None) -> None:
    """The command line: ``--commands``, ``--pad-kb``, ``--cabinets``, ``--jam-every``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--pad-kb", type=int, default=4)
    parser.add_argument("--cabinets", type=int, default=48)
    parser.add_argument("--jam-every", type=int, default=4, help="jam every Nth lock (0: none)")
    args = parser.parse_args(argv)
    print(machine())
    asyncio.run(flood(args.commands, args.pad_kb, args.jam_every, args.cabinets))


if __name__ == "__main__":
    main()
