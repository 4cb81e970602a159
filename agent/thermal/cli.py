"""``locker-agent thermal log``: the temperature records as CSV, for an inspector or a
spreadsheet (HACCP records), read-only from the storage directory while the agent
runs.

```
locker-agent thermal log /etc/locker-agent/agent.toml --key 3 --since 2026-11-01 > k3.csv
```
Columns: ``key,t,temperature_c,mode,sensor`` (``t`` ISO 8601 UTC; an empty
``temperature_c`` is a reading not trusted); with ``--excursions``, each time out of
temperature: ``key,start,end,duration_s,peak_c,mode``. The config file defaults to
``/etc/locker-agent/agent.toml``, as for ``doctor``. Exit 0; 1 when there is no
records file or it cannot be read (said on stderr, nothing on stdout); 2 for a bad
``--since``.
"""

from __future__ import annotations

import argparse
import sys

from agent.config import Config
from agent.thermal.records import RECORDS_FILE, RecordsError, export_csv, parse_since


def add_arguments(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``thermal log`` to the command line's subcommands; its parser, for the CLI to
    add the config file as every command takes it."""
    thermal = sub.add_parser("thermal", help="food lockers: the temperature records")
    thermal_sub = thermal.add_subparsers(dest="thermal_cmd", required=True)
    log = thermal_sub.add_parser("log", help="print the temperature log as CSV")
    log.add_argument("--key", type=int, help="one cabinet only (default: every cabinet)")
    log.add_argument("--since", help="from this ISO 8601 time (default: everything kept)")
    log.add_argument(
        "--excursions", action="store_true", help="the times out of temperature instead"
    )
    return log


def main(args: argparse.Namespace, config: Config) -> int:
    """Print the CSV to stdout; the exit status."""
    try:
        since = parse_since(args.since) if args.since is not None else 0.0
    except ValueError as exc:
        print(f"locker-agent thermal log: {exc}", file=sys.stderr)
        return 2
    path = config.storage.dir / RECORDS_FILE
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
