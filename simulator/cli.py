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

        Logging is the CLI's to configure before this is called. A failure to
        start (a port taken) propagates.
        """
        from simulator.run import simulate

        asyncio.run(
            simulate(locker=args.locker, api_port=args.api_port, cloud_port=args.cloud_port)
        )
        return 0


command = SimulateCommand()
