"""Command line: ``run``, ``check-config``, ``outbox``, the technicians' ``doctor``,
``bus scan`` and ``config schema``, ``thermal log`` (``agent/thermal/cli.py``), and
the commands of plugins.

``check-config`` validates the file, then builds every driver dry (mock pins, no
port opened): a config that passes it also starts with ``run``. It also fails when
the service user cannot read a secret file, and (on a machine with GPIO) when a pin
factory's module is missing (``agent/field/access.py``). ``doctor`` (``agent/field/doctor.py``)
looks at the machine too: ports, boards, the cloud, the clock, the disk. ``bus scan``
(``agent/field/busscan.py``) lists the boards answering on a port; ``config schema``
(``agent/field/schema.py``) prints the file's JSON Schema.

More commands (``simulate``) come from other packages through the entry point group
``locker_agent.commands``: each entry point loads an object with ``help: str``,
``add_arguments(parser) -> None`` and ``main(args) -> int``, e.g. in pyproject.toml
``[project.entry-points."locker_agent.commands"] simulate = "simulator.cli:command"``.
The agent imports nothing of them. A built-in name wins over a plugin's; a plugin
that fails to load is reported when its command is asked for, and only then.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

import structlog

from agent import __version__, log
from agent.api.unix import SocketUnavailable
from agent.config import Config, ConfigError, load_config, summary
from agent.field import access, busscan, probes, technician
from agent.field.verdict import judge, port_lines, say_problems, verdict
from agent.thermal import cli as thermal_cli

EX_CONFIG = 78
DEFAULT_CONFIG = technician.DEFAULT_CONFIG

COMMANDS_GROUP = "locker_agent.commands"

_BUILT_IN = frozenset(
    [
        "run",
        "check-config",
        "outbox",
        "doctor",
        "bus",
        "config",
        "status",
        "open",
        "selftest",
        "thermal",
    ]
)


class Command(Protocol):
    """What an entry point of ``COMMANDS_GROUP`` loads."""

    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's options and arguments to its subparser."""

    def main(self, args: argparse.Namespace) -> int:
        """Run the command (logging is configured); return the exit status."""


def plugin_commands() -> dict[str, Command | Exception]:
    """The commands of ``COMMANDS_GROUP`` by name (the first of a name wins; built-in
    names are skipped): the loaded object, or the exception loading it raised."""
    found: dict[str, Command | Exception] = {}
    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name in _BUILT_IN or entry.name in found:
            continue
        try:
            found[entry.name] = entry.load()
        except Exception as err:  # a broken plugin must not break the agent's commands
            found[entry.name] = err
    return found


def _parser(plugins: dict[str, Command | Exception]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locker-agent",
        description="The edge agent of a smart locker: doors, locks, sensors, cloud feedback.",
    )
    parser.add_argument("--version", action="version", version=f"locker-agent {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the agent in the foreground until SIGTERM/SIGINT")
    _config_file(run)
    check = sub.add_parser(
        "check-config", help="validate a config file, build its drivers dry, summarise it"
    )
    _config_file(check)
    box = sub.add_parser("outbox", help="list the feedback waiting for the cloud, and dead rows")
    _config_file(box)
    box.add_argument("--limit", type=int, default=100, help="rows of each kind to list")
    doctor = sub.add_parser(
        "doctor", help="technicians: check the config, secrets, ports, boards, cloud, clock, disk"
    )
    doctor.add_argument(
        "file", nargs="?", help="the config file (default /etc/locker-agent/agent.toml)"
    )
    doctor.add_argument("--config", dest="config_file", help="the config file, as for run")
    bus = sub.add_parser("bus", help="technicians: look at an RS-485 bus")
    bus_sub = bus.add_subparsers(dest="bus_cmd", required=True)
    scan = bus_sub.add_parser(
        "scan", help="which KR-CU16 boards answer on a port, at which baud, and which twice"
    )
    busscan.add_arguments(scan)
    technician.add_arguments(sub)
    _config_file(thermal_cli.add_arguments(sub, technician.add_socket_arguments))
    conf = sub.add_parser("config", help="about the config file")
    conf_sub = conf.add_subparsers(dest="config_cmd", required=True)
    conf_sub.add_parser("schema", help="print the config file's JSON Schema (for editors)")
    for name, command in plugins.items():
        if isinstance(command, Exception):
            sub.add_parser(name, help="(cannot be loaded)", add_help=False)
            continue
        command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def _config_file(parser: argparse.ArgumentParser) -> None:
    """The config file, as ``FILE`` or ``--config FILE`` (either, on every command)."""
    parser.add_argument("file", nargs="?", help="the TOML config file")
    parser.add_argument("--config", dest="config_flag", metavar="FILE", help="the same")
    parser.set_defaults(config_parser=parser)  # its own usage, when the file is not given


def _config_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    given = [p for p in (getattr(args, "file", None), getattr(args, "config_flag", None)) if p]
    if len(given) != 1:
        command = getattr(args, "config_parser", parser)  # "usage: locker-agent run ..."
        command.error("give the config file once, as FILE or --config FILE")
    return given[0]


def _load_or_report(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        say_problems(path, err.problems)
        return None


def _check_config(path: str) -> int:
    """Exit 78 with one line per problem (``judge``: the dry build's, then each
    placeholder left, an unreadable secret, a missing pin factory module); else the
    warnings (a port not there among them: it may be plugged in later), the summary, 0."""
    config = _load_or_report(path)
    if config is None:
        return EX_CONFIG
    log.configure(level="warning")  # the drivers' info lines are not the summary
    found = judge(config, Path(path), on_gpio_machine=access.has_gpio())
    if not found.valid:
        say_problems(path, found.problem_lines())
        return EX_CONFIG
    for warning in found.warning_lines() + port_lines(config):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    print(summary(config))
    return 0


_BIND_ERRORS = {
    errno.EADDRINUSE: "the address is in use (another locker-agent?)",
    errno.EADDRNOTAVAIL: "this machine has no such address",
    errno.EACCES: "permission denied (a port below 1024 needs privileges)",
}


def _run(path: str) -> int:
    """``run``: 78 for a config problem (the unit does not restart it), 1 when the
    agent failed (one log line), 0 after a clean stop."""
    from agent.app import run

    logger = structlog.get_logger(__name__)
    config = _load_or_report(path)
    if config is None:
        return EX_CONFIG
    # What check-config and doctor call a problem stops run too (run imports the pin
    # factory's module: a missing one is a problem here, on any machine).
    found = verdict(config, Path(path), on_gpio_machine=True)
    if not found.valid:
        say_problems(path, found.problem_lines())
        return EX_CONFIG
    try:
        asyncio.run(run(config, path=path))
    except SocketUnavailable as err:  # another agent serves it, or its folder refuses
        logger.error("agent.failed", error=f"api.socket: {err}")
        return 1
    except OSError as err:
        reason = _BIND_ERRORS.get(err.errno or 0)
        if reason is None or "bind" not in str(err):
            logger.exception("agent.failed")
            return 1
        logger.error("agent.failed", error=_listen_refused(config, err.errno, reason))
        return 1
    except Exception:  # one clear log line, exit 1
        logger.exception("agent.failed")
        return 1
    return 0


def _listen_refused(config: Config, errno_: int | None, reason: str) -> str:
    """One line: why ``api.listen`` cannot be listened on, naming the process that holds
    the port when /proc shows it (all of them as root, only this user's otherwise)."""
    port = config.api.port
    where = f"api.listen: cannot listen on {config.api.listen}"
    if errno_ == errno.EADDRINUSE and (found := probes.port_holders(port)):
        holder = probes.named(found)
        return f"{where}: the address is in use by {holder}: stop it or change api.listen"
    return (
        f"{where}: {reason}: stop what holds port {port} (ss -ltnp 'sport = :{port}') or change"
        " api.listen"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (78 for a config problem).

    A reader that stops early (``doctor | head``) ends it quietly with 141 (128 +
    SIGPIPE, as a shell reports it), never a traceback.
    """
    try:
        status = _main(argv)
        sys.stdout.flush()  # inside: a closed pipe is found here, not at exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_PIPE
    return status


EX_PIPE = 141


def _main(argv: Sequence[str] | None) -> int:
    plugins = plugin_commands()
    parser = _parser(plugins)
    args, extra = parser.parse_known_args(argv)
    command = plugins.get(args.cmd)
    if isinstance(command, Exception):
        print(
            f"locker-agent: the command {args.cmd!r} cannot be loaded:"
            f" {type(command).__name__}: {command}",
            file=sys.stderr,
        )
        return 1
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "check-config":
        return _check_config(_config_path(parser, args))
    if args.cmd == "config":
        from agent.field import schema as config_schema

        return config_schema.main()
    if args.cmd == "bus":
        log.configure(level="warning")
        return busscan.main(args)
    if args.cmd == "doctor":
        from agent.field import doctor

        log.configure(level="warning")
        return doctor.main(args)

    if args.cmd in ("status", "open", "selftest") or (
        args.cmd == "thermal" and args.thermal_cmd == "reset"
    ):  # the running agent, asked on its socket
        path = technician.socket_path(args)
        if path is None:
            return EX_CONFIG
        log.configure(level="warning")
        return technician.main(args, path)

    if args.cmd in ("outbox", "thermal"):
        if args.cmd == "thermal" and not (args.file or args.config_flag):
            args.file = DEFAULT_CONFIG  # as doctor: the locker's own file
        config = _load_or_report(_config_path(parser, args))
        if config is None:
            return EX_CONFIG
        log.configure(level="warning")
        if args.cmd == "thermal":
            return thermal_cli.main(args, config)
        return _show_outbox(config, args.limit)

    log.configure(level=args.log_level)
    if args.cmd == "run":
        return _run(_config_path(parser, args))
    if command is not None:
        try:
            return int(command.main(args))
        except Exception:  # e.g. a port taken: one clear log line, exit 1, as run does
            structlog.get_logger(__name__).exception("command.failed", command=args.cmd)
            return 1
    return 2


def _show_outbox(config: Config, limit: int) -> int:
    """Print pending and dead rows, one JSON object a line, then a summary line."""
    import json

    from agent.storage.outbox import OUTBOX_FILE, Outbox

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
