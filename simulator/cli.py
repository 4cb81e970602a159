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
import socket
import sys

# The lockers simulator.run can play (its LOCKERS table, kept beside it by a test).
LOCKER_KINDS = ("kerong", "touchless")


class SimulateCommand:
    """``simulate``: the real agent against a simulated locker and a fake cloud.

    No arguments needed: an embedded locker (``--locker kerong``, 16 cabinets on
    emulated KR-CU16 boards, or ``touchless``, 4 motorised cabinets on GPIO mock
    pins), the local API on ``--api-port`` (default 8080) and the fake cloud on
    ``--cloud-port`` (default 8004); 0 picks a free port. Prints where to look,
    runs until SIGINT or SIGTERM.
    """

    help = "run the agent against a simulated locker and cloud"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add ``--api-port``, ``--cloud-port`` and ``--locker`` to the subcommand's parser."""
        parser.add_argument("--api-port", type=int, default=8080, help="local API port (0: any)")
        parser.add_argument("--cloud-port", type=int, default=8004, help="fake cloud port (0: any)")
        parser.add_argument(
            "--locker",
            choices=LOCKER_KINDS,
            default="kerong",
            help="kerong: 16 cabinets on emulated RS-485 lock boards; touchless: 4 motorised "
            "cabinets on GPIO",
        )

    def main(self, args: argparse.Namespace) -> int:
        """Run the simulation until SIGINT or SIGTERM; 0 when it stopped cleanly.

        Logging is the CLI's to configure before this is called. A port taken is
        one line naming the option to change, and 1; other failures propagate.
        """
        from simulator.run import simulate

        ports = (("--api-port", args.api_port), ("--cloud-port", args.cloud_port))
        if args.api_port and args.api_port == args.cloud_port:
            return _refuse("--cloud-port", args.cloud_port, "the same as --api-port")
        for option, port in ports:
            if reason := port_taken(port):
                return _refuse(option, port, reason)
        try:
            asyncio.run(
                simulate(locker=args.locker, api_port=args.api_port, cloud_port=args.cloud_port)
            )
        except OSError as err:  # taken between the check and the start
            if err.errno != errno.EADDRINUSE:
                raise
            print(
                "locker-agent simulate: a port was taken as it started: pick others with"
                " --api-port and --cloud-port (0: any free port)",
                file=sys.stderr,
            )
            return 1
        return 0


def port_taken(port: int, host: str = "127.0.0.1") -> str | None:
    """Why ``host``:``port`` cannot be listened on now (None: it can, or ``port`` is 0)."""
    if port == 0:
        return None
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio listens
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return "in use by another program (another simulator or agent?)"
            return (err.strerror or type(err).__name__).lower()
    return None


def _refuse(option: str, port: int, reason: str) -> int:
    print(
        f"locker-agent simulate: {option} {port}: {reason}: pick another port"
        f" ({option} 0 takes any free one)",
        file=sys.stderr,
    )
    return 1


command = SimulateCommand()
