"""``locker-agent simulate``, offered to the CLI from outside.

The agent's command line discovers extra subcommands through the entry point
group ``locker_agent.commands`` (see ``pyproject.toml``), so nothing in
``agent`` imports the simulator. Each entry point loads an object with
``help: str``, ``add_arguments(parser)`` and ``main(args) -> int``; this
module's :data:`command` is the one for ``simulate``.

Importing this module is cheap: the CLI may load every command to build its
parser, and ``locker-agent run`` should not pay for the simulator. The
simulation itself is imported when ``main`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
import tomllib
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from simulator.console import LogFile

# The lockers simulator.run can play (its LOCKERS table, kept beside it by a test).
LOCKER_KINDS = ("kerong", "touchless", "food")
EX_CONFIG = 78  # sysexits.h, as check-config answers a bad file


class SimulateCommand:
    """``simulate``: the real agent against a simulated locker and a fake cloud.

    No arguments needed: an embedded locker (``--locker kerong``, 16 cabinets on
    emulated KR-CU16 boards, ``touchless``, 4 motorised cabinets on GPIO mock
    pins, or ``food``, 8 hot and cold cabinets whose heat is simulated
    ``--thermal-speed`` times faster than life) or a technician's file
    (``--config FILE``: its Kerong buses become emulators on pseudo-terminals,
    its GPIO pins mock pins), the local API on
    ``--api-port`` (default 8080), the fake cloud on ``--cloud-port`` (default
    8004) and the web view on ``--web-port`` (default 8000); 0 picks a free
    port. Prints where to look, runs until SIGINT or SIGTERM.

    ``--scenario NAME`` plays a scenario (``simulator/scenarios/NAME.toml``, or a
    path ending ``.toml``) on free ports instead, prints each step, and exits 0
    when every expectation held, 1 when one failed, 78 for a bad file.
    """

    help = "run the agent against a simulated locker and cloud"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the ports, ``--locker``, ``--config`` and ``--scenario`` to the parser."""
        parser.add_argument("--api-port", type=int, default=8080, help="local API port (0: any)")
        parser.add_argument("--cloud-port", type=int, default=8004, help="fake cloud port (0: any)")
        parser.add_argument(
            "--locker",
            choices=LOCKER_KINDS,
            default="kerong",
            help="kerong: 16 cabinets on emulated RS-485 lock boards; touchless: 4 motorised "
            "cabinets on GPIO; food: 4 hot and 4 cold cabinets with thermal control",
        )
        parser.add_argument(
            "--thermal-speed",
            type=_speed,
            default=30.0,
            metavar="X",
            help="simulated seconds of cabinet heat per real second (default 30: a freezer"
            " pulls down in minutes)",
        )
        parser.add_argument("--web-port", type=int, default=8000, help="web view port (0: any)")
        parser.add_argument(
            "--config",
            dest="config_file",
            metavar="FILE",
            help="simulate the locker this config file describes (instead of --locker)",
        )
        parser.add_argument(
            "--small-disk",
            type=_disk_mb,
            metavar="MB",
            help="the agent's storage on a tmpfs of MB MiB (needs root) that the page can fill",
        )
        parser.add_argument(
            "--scenario",
            metavar="NAME",
            help="play a scenario from simulator/scenarios (or a .toml path), check it, exit",
        )
        parser.add_argument(
            "--log-file",
            metavar="PATH",
            help="append the log here, warnings and errors on stderr too (default on a"
            " terminal: a new file in the temporary directory; '-': all of it on stderr)",
        )

    def main(self, args: argparse.Namespace) -> int:
        """Run the simulation until SIGINT or SIGTERM; 0 when it stopped cleanly.

        Logging is the CLI's to configure before this is called; on a terminal (or with
        ``--log-file``) the run then moves it to a file (:mod:`simulator.console`) and
        names it at the end. A port taken is one line naming the option to change, and
        1; a log file that cannot be opened, 2; other failures propagate.
        """
        if getattr(args, "scenario", None):
            if getattr(args, "config_file", None) or getattr(args, "locker", "kerong") != "kerong":
                print(
                    "locker-agent simulate: --scenario plays the locker its file names"
                    " (its 'locker' key); --config and --locker do not apply to it",
                    file=sys.stderr,
                )
                return 2
            log_file = _log_file(args)
            if log_file is False:
                return 2
            if log_file is not None:
                print(f"scenario {args.scenario}: the log goes to {log_file.path}", flush=True)
            try:
                return play_scenario(args.scenario)
            finally:
                _log_kept(log_file)
        config_data = None
        if getattr(args, "config_file", None):
            config_data = read_config(args.config_file)
            if config_data is None:
                return EX_CONFIG
        web_port = getattr(args, "web_port", 8000)
        ports = (("--api-port", args.api_port), ("--cloud-port", args.cloud_port))
        ports += (("--web-port", web_port),)
        if args.api_port and args.api_port == args.cloud_port:
            return _refuse("--cloud-port", args.cloud_port, "the same as --api-port")
        for option, port in ports[:2]:
            if web_port and web_port == port:
                return _refuse("--web-port", web_port, f"the same as {option}")
        # Every taken port at once: a person fixes them in one go, not one a run.
        refused = [_refuse(o, p, why) for o, p in ports if (why := port_taken(p))]
        if refused:
            return 1
        from agent.config import ConfigError

        try:
            from simulator.web.main import simulate
        except ModuleNotFoundError as exc:
            # A locker's install has no `sim` extra (the fake cloud's yaml, validator).
            print(
                f"locker-agent simulate: {exc.name} is not installed; the simulator needs "
                "the sim extra: pip install 'locker-agent[sim]'",
                file=sys.stderr,
            )
            return 2

        log_file = _log_file(args)
        if log_file is False:
            return 2
        try:
            asyncio.run(
                simulate(
                    locker=args.locker,
                    api_port=args.api_port,
                    cloud_port=args.cloud_port,
                    web_port=web_port,
                    config_data=config_data,
                    small_disk_mb=getattr(args, "small_disk", None),
                    thermal_speed=getattr(args, "thermal_speed", 30.0),
                    log_file=log_file,
                )
            )
        except ConfigError as err:
            print(f"locker-agent simulate: {args.config_file}: {err}", file=sys.stderr)
            return EX_CONFIG
        except OSError as err:  # taken between the check and the start
            if err.errno != errno.EADDRINUSE:
                raise
            print(
                "locker-agent simulate: a port was taken as it started: pick others with"
                " --api-port and --cloud-port (0: any free port)",
                file=sys.stderr,
            )
            return 1
        finally:
            _log_kept(log_file)
        return 0


def _log_file(args: argparse.Namespace) -> LogFile | Literal[False] | None:
    """The run's log file (:func:`simulator.console.log_to_file`), None when the log
    stays where the CLI put it, False after saying on stderr why it cannot be opened."""
    from simulator.console import log_to_file

    option = getattr(args, "log_file", None)
    try:
        return log_to_file(option, getattr(args, "log_level", "info"))
    except OSError as err:
        print(f"locker-agent simulate: --log-file {option}: {err}", file=sys.stderr)
        return False


def _log_kept(log_file: LogFile | None) -> None:
    """The run's last line: where its log file stays (nothing when it has none)."""
    if log_file is not None:
        from agent import log

        log.flush_suppressed()  # their counts before the last line, not after
        print(f"locker-agent simulate: its log stays in {log_file.path}", flush=True)


def _speed(text: str) -> float:
    """``--thermal-speed``: a number > 0 and at most 10000, else argparse's error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number, not {text!r}") from None
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(f"more than 0 and at most 10000, not {text}")
    return value


def read_config(path: str) -> dict[str, Any] | None:
    """The TOML file at ``path`` as a dict, or None after saying on stderr why not."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        print(f"locker-agent simulate: --config {path}: {err}", file=sys.stderr)
        return None


def play_scenario(name: str) -> int:
    """Play scenario ``name`` on its own simulation, a line per step: 0 held, 1 failed,
    78 (EX_CONFIG) for a file or ``[config]`` that cannot be played."""
    from agent.config import ConfigError
    from simulator.web.scenario import ScenarioError, load, run_scenario

    def report(line: dict[str, Any]) -> None:
        mark = "ok  " if line["ok"] else "FAIL"
        detail = f"  ({line['detail']})" if line["detail"] and not line["ok"] else ""
        print(f"{line['t']:7.2f} s  {mark} {line['step']}{detail}", flush=True)

    try:
        print(f"scenario {name}: {load(name).title}", flush=True)
        ok = asyncio.run(run_scenario(name, report))
    except (ScenarioError, ConfigError) as err:
        print(f"locker-agent simulate: --scenario {name}: {err}", file=sys.stderr)
        return EX_CONFIG
    print(f"scenario {name}: {'passed' if ok else 'FAILED'}", flush=True)
    return 0 if ok else 1


def port_taken(port: int, host: str = "127.0.0.1") -> str | None:
    """Why ``host``:``port`` cannot be listened on now (None: it can, or ``port`` is 0):
    in use by whom, when /proc shows it (every process as root, else only ours)."""
    if port == 0:
        return None
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio listens
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                from agent.field.probes import named, port_holders

                if found := port_holders(port):
                    return f"in use by {named(found)}"
                return "in use by another program (another simulator or agent?)"
            return (err.strerror or type(err).__name__).lower()
    return None


def _refuse(option: str, port: int, reason: str) -> int:
    # make sets MAKELEVEL for what it runs: `make simulate` passes options in ARGS.
    how = f'make simulate ARGS="{option} 0"' if os.environ.get("MAKELEVEL") else f"{option} 0"
    print(
        f"locker-agent simulate: {option} {port}: {reason}: pick another port"
        f" ({how} takes any free one)",
        file=sys.stderr,
    )
    return 1


command = SimulateCommand()


SMALLEST_DISK_MB = 4  # the outbox's smallest bound (1 MiB) is then a quarter of it


def _disk_mb(value: str) -> int:
    """``--small-disk``'s MiB; ArgumentTypeError below ``SMALLEST_DISK_MB``."""
    try:
        mb = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {value!r}") from None
    if mb < SMALLEST_DISK_MB:
        raise argparse.ArgumentTypeError(
            f"at least {SMALLEST_DISK_MB} MiB: the outbox's smallest bound (1 MiB) is to"
            " take a quarter of it, as every size's does"
        )
    return mb
