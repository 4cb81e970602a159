"""Memory at rest: the agent as a process (``locker-agent run``) on a Kerong-only
config without GPIO, against the emulator on a pseudo-terminal and the fake cloud;
its resident memory (RSS, and the private part of it), its CPU over the window, and
which native libraries of packages a locker need not load it has mapped (pure-Python
ones, gpiozero among them, are held by tests/agent/hardware/test_lazy_imports.py).

A development venv holds the test extras (schemathesis brings rich, which structlog
then imports): ``--agent`` runs another install's ``locker-agent``, for instance a
venv made with ``pip install .`` (no extras), as a locker has.

Run: .venv/bin/python bench/memory.py [--cabinets 48 160] [--window-s 10] [--agent EXE]
(prints figures; asserts nothing). Aim (issue 19): at most 50 MB RSS at rest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from _rig import cpu_s, machine, rig, rss_mb

from drivers.kerong.timing import ACTIVE_HOLD_S

# Native libraries of packages a Kerong-only locker has no use for, by a path fragment.
UNWANTED = {
    "lgpio": "lgpio",
    "yaml (simulator, fake cloud)": "/_yaml",
    "rpds / jsonschema (fake cloud)": "/rpds/",
}


def private_mb(pid: int) -> float:
    """Private (not shared with another process) resident memory, MiB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def mapped(pid: int) -> str:
    """Every file the process has mapped, one a line."""
    return Path(f"/proc/{pid}/maps").read_text()


async def measure(cabinets: int, window_s: float, warmup_s: float) -> None:
    """Print the agent's RSS, private memory, CPU and unwanted packages at rest."""
    async with rig(cabinets, wire=True) as r:
        await r.start()
        await asyncio.sleep(warmup_s)
        loop = asyncio.get_running_loop()
        began, cpu_before = loop.time(), cpu_s(r.pid)
        await asyncio.sleep(window_s)
        cpu = (cpu_s(r.pid) - cpu_before) / (loop.time() - began) * 100
        maps = mapped(r.pid)
        loaded = [name for name, fragment in UNWANTED.items() if fragment in maps]
        print(
            f"at rest, {cabinets} cabinets (Kerong only, no GPIO): RSS {rss_mb(r.pid):.1f} MB "
            f"({private_mb(r.pid):.1f} MB private), CPU {cpu:.2f} % of a core over "
            f"{window_s:.0f} s; loaded and not needed: {', '.join(loaded) or 'none'}; "
            "aims <= 50 MB, <= 0.5 %"
        )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cabinets", type=int, nargs="+", default=[48, 160])
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=ACTIVE_HOLD_S + 2.0)  # past the hold
    parser.add_argument("--agent", help="the locker-agent executable (default: this venv's)")
    args = parser.parse_args(argv)
    if args.agent:
        if not os.access(args.agent, os.X_OK):
            parser.error(f"--agent {args.agent}: not an executable file")
        os.environ["BENCH_AGENT"] = args.agent
    print(machine())
    print(f"agent: {args.agent or 'this venv'}")
    for cabinets in args.cabinets:
        await measure(cabinets, args.window_s, args.warmup_s)


if __name__ == "__main__":
    asyncio.run(main())
