"""``locker-agent thermal log``: the temperature records as CSV, for an inspector or a
spreadsheet (HACCP records), read-only from the storage directory while the agent
runs; ``locker-agent thermal reset KEY``: a technician clears a cabinet's latched
safety shut-offs through the running agent (ADR 0011); ``locker-agent thermal report
--day DATE``: the day's HACCP sheet, printable HTML (``report.py``, ADR 0016).

```
locker-agent thermal log /etc/locker-agent/agent.toml --key 3 --since 2026-11-01 > k3.csv
locker-agent thermal reset 3 --by "Ana" --reason "heater relay replaced"
```
Columns: ``key,t,temperature_c,mode,sensor,clock,note`` (``t`` ISO 8601 UTC; an empty
``temperature_c`` is a reading not trusted; ``clock`` empty when the wall clock was
known right; ``note`` an empty cabinet's label past its line, ``pull-down``,
``pre-heat`` or ``empty``); with ``--excursions``, each time food was out of temperature:
``key,start,end,duration_s,peak_c,mode,clock``. The config file defaults to
``/etc/locker-agent/agent.toml``, as for ``doctor``. ``log`` exits 0; 1 when there is
no records file or it cannot be read (said on stderr, nothing on stdout); 2 for a bad
``--since``. ``reset`` exits 0 when reset (nothing latched included), 1 when the agent
refused, 2 when it cannot be reached; it asks the agent on its Unix socket through
the technician's channel, whose ``call`` is handed in (this room does not import the
field's).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from agent.config import Config
from agent.config.text import printable
from agent.thermal import report
from agent.thermal.export import export_csv
from agent.thermal.records import RECORDS_FILE, RecordsError
from agent.thermal.times import parse_since


def add_arguments(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    socket_arguments: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """Add ``thermal log``, ``reset`` and ``report`` to the command line's subcommands;
    ``socket_arguments`` adds to ``reset`` how every technician's command finds the
    agent's socket (the field's, which this room does not import). Returns ``log``'s
    parser, for the CLI to add the config file as every command takes it."""
    thermal = sub.add_parser(
        "thermal", help="food lockers: temperature records (log, report) and latch resets"
    )
    thermal_sub = thermal.add_subparsers(dest="thermal_cmd", required=True)
    log = thermal_sub.add_parser("log", help="print the temperature log as CSV")
    log.add_argument("--key", type=int, help="one cabinet only (default: every cabinet)")
    log.add_argument("--since", help="from this ISO 8601 time (default: everything kept)")
    log.add_argument(
        "--excursions", action="store_true", help="the times out of temperature instead"
    )
    reset = thermal_sub.add_parser(
        "reset", help="clear a cabinet's latched thermal shut-offs through the running agent"
    )
    reset.add_argument("key", type=int, help="the cabinet's key")
    reset.add_argument(
        "--by",
        help="a note of who resets (default: your login name); the agent records the"
        " account that asks, by its socket",
    )
    reset.add_argument("--reason", help="why, for the records")
    socket_arguments(reset)
    report.add_arguments(thermal_sub)
    return log


Call = Callable[[str, str, Any], tuple[int, Any]]
"""One request to the running agent: (method, path, JSON body) -> (status, JSON answer),
as the technician's client makes it (it raises when the agent cannot be reached)."""


def who() -> str:
    """The person at the keyboard: the login behind sudo, else this user."""
    name = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{name} (locker-agent thermal reset)"


def reset(key: int, by: str, reason: str | None, call: Call) -> int:
    """Ask the running agent to reset cabinet ``key``'s latches; print what was cleared.
    0 when reset, 1 when refused."""
    body = {"by": by} | ({"reason": reason} if reason else {})
    code, answer = call("POST", f"/api/lockers/cabinets/{key}/thermal/reset", body)
    if code != 200:
        kind = answer.get("type") if isinstance(answer, dict) else code
        message = answer.get("message") if isinstance(answer, dict) else ""
        print(f"cabinet {key}: {printable(kind)}: {printable(message)}", file=sys.stderr)
        return 1
    cleared = answer.get("cleared") or []
    if not cleared:
        print(f"cabinet {key}: nothing was latched")
    for latch in cleared:
        print(f"cabinet {key}: reset {printable(latch['alarm'])}, latched since"
              f" {printable(latch['since'])}: {printable(latch['why'])}")  # fmt: skip
    return 0


def main(args: argparse.Namespace, config: Config) -> int:
    """``thermal log``: print the CSV to stdout (``thermal report``: the day sheet); the
    exit status."""
    path = config.storage.dir / RECORDS_FILE
    if not path.is_file() and all(c.thermal is None for c in config.cabinets):
        print(
            f"locker-agent thermal {args.thermal_cmd}: no cabinet of this locker has a"
            " thermal unit: it keeps no temperature records",
            file=sys.stderr,
        )
        return 1
    if args.thermal_cmd == "report":
        return report.main(args, config)
    try:
        since = parse_since(args.since) if args.since is not None else 0.0
    except ValueError as exc:
        print(f"locker-agent thermal log: {exc}", file=sys.stderr)
        return 2
    try:
        table = "excursions" if args.excursions else "readings"
        for line in export_csv(path, args.key, since, table):
            sys.stdout.write(line)
    except RecordsError as exc:
        print(f"locker-agent thermal log: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # | head: the reader had enough
        return 0
    return 0
