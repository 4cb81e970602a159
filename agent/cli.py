"""Command line: ``run``, ``check-config``, ``outbox``, and the commands of plugins.

``check-config`` validates the file, then builds every driver dry (mock pins, no
port opened): a config that passes it also starts with ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from agent import __version__, log
from agent.config import Config, ConfigError, Side, load_config, summary

EX_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locker-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"locker-agent {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the agent in the foreground until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, help="the TOML config file")
    check = sub.add_parser(
        "check-config", help="validate a config file, build its drivers dry, summarise it"
    )
    check.add_argument("file")
    box = sub.add_parser("outbox", help="list the feedback waiting for the cloud, and dead rows")
    box.add_argument("--config", required=True, help="the TOML config file")
    box.add_argument("--limit", type=int, default=100, help="rows of each kind to list")
    sim = sub.add_parser("simulate", help="run the agent against a simulated locker and cloud")
    sim.add_argument("--api-port", type=int, default=8080, help="local API port (0: any)")
    sim.add_argument("--cloud-port", type=int, default=8004, help="fake cloud port (0: any)")
    sim.add_argument(
        "--locker",
        choices=["kerong", "touchless"],
        default="kerong",
        help="kerong: 16 cabinets on emulated RS-485 lock boards; touchless: 4 motorised "
        "cabinets on GPIO",
    )
    return parser


def _load_or_report(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return None


class _NoSink:
    """Readings of a dry build go nowhere (nothing is started, so none come)."""

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        pass

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        pass

    def item_sensed(self, key: int, present: bool) -> None:
        pass

    def board_health(self, bus: str, board: int, online: bool) -> None:
        pass


async def build_dry(config: Config) -> list[str]:
    """Build every driver of ``config`` on mock pins without opening a port, then close
    them; the ``key.path: message`` lines of what a driver refused (empty: it builds)."""
    from agent.hardware import Hardware
    from drivers.gpio.mock import mock_factory

    factory = mock_factory()
    hardware = Hardware(config, _NoSink(), gpio_factory=factory)
    try:
        hardware.build()
    except ConfigError as err:
        return err.problems
    finally:
        await hardware.close()
        factory.close()
    return []


def _check_config(path: str) -> int:
    config = _load_or_report(path)
    if config is None:
        return EX_CONFIG
    log.configure(level="warning")  # the drivers' info lines are not the summary
    try:
        problems = asyncio.run(build_dry(config))
    except Exception as err:  # a bug must still end as "exit 78", not a traceback
        problems = [f"cannot build the drivers ({type(err).__name__})"]
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return EX_CONFIG
    print(summary(config))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "check-config":
        return _check_config(args.file)

    if args.cmd == "outbox":
        config = _load_or_report(args.config)
        if config is None:
            return EX_CONFIG
        log.configure(level="warning")
        return _show_outbox(config, args.limit)

    log.configure(level=args.log_level)
    if args.cmd == "run":
        from agent.app import run

        config = _load_or_report(args.config)
        if config is None:
            return EX_CONFIG
        try:
            asyncio.run(run(config))
        except Exception:  # e.g. the API port is taken: one clear log line, exit 1
            structlog.get_logger(__name__).exception("agent.failed")
            return 1
        return 0
    if args.cmd == "simulate":
        from simulator.run import simulate

        asyncio.run(
            simulate(locker=args.locker, api_port=args.api_port, cloud_port=args.cloud_port)
        )
        return 0
    return 2


def _show_outbox(config: Config, limit: int) -> int:
    """Print pending and dead rows, one JSON object a line, then a summary line."""
    import json

    from agent.outbox import OUTBOX_FILE, Outbox

    path = config.storage.dir / OUTBOX_FILE
    if not path.exists():
        print(f"no outbox at {path}", file=sys.stderr)
        return 1
    box = Outbox(path)
    try:
        for msg in box.pending(limit):
            row = {"state": "pending", "seq": msg.seq, "kind": msg.kind, "event": msg.event}
            print(json.dumps(row | {"cabinets": list(msg.cabinets), "created": msg.created}))
        for dead in box.dead(limit):
            dead["cabinets"] = json.loads(dead["cabinets"])
            print(json.dumps({"state": "dead", **dead}))
        print(json.dumps({"summary": box.stats()}))
    finally:
        box.close()
    return 0
