"""``locker-agent simulate``: the real agent against a simulated locker and a fake cloud.

Two lockers: ``kerong`` (16 cabinets on emulated KR-CU16 boards behind a
pseudo-terminal, the agent's real Kerong driver reading them) and
``touchless`` (4 motorised cabinets on gpiozero mock pins played by
``simulator.touchless``). Either way the agent reports to the fake cloud over
HTTP and takes its commands over the websocket: nothing in ``agent`` knows it
is simulated.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import tempfile
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from agent.app import Agent
from agent.config import Config, parse_config
from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.mock_pins import mock_factory
from simulator.touchless import TouchlessLocker

LockerKind = Literal["kerong", "touchless"]
LOCKERS: dict[str, str] = {"kerong": "default.toml", "touchless": "touchless.toml"}


def free_port() -> int:
    """A loopback port free right now (the config rightly refuses port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_config_data(locker: LockerKind = "kerong") -> dict[str, Any]:
    """The embedded config of ``locker`` as a raw TOML dict (a fresh copy each call)."""
    text = resources.files("simulator").joinpath(LOCKERS[locker]).read_text()
    return tomllib.loads(text)


class Simulation:
    """A simulated locker + fake cloud + the agent, started and stopped together.

    ``auto_shut_after_s``: a simulated person shuts a door (Kerong) or a rear door
    (touchless) that long after it opened. ``adjust`` edits the config dict
    before it is validated (tests shorten timings).
    """

    def __init__(
        self,
        *,
        locker: LockerKind = "kerong",
        api_port: int = 0,
        cloud_port: int = 0,
        auto_shut_after_s: float | None = None,
        storage_dir: Path | None = None,
        adjust: Callable[[dict[str, Any]], None] | None = None,
        travel_s: float = 1.5,
    ) -> None:
        self.locker = locker
        self._travel_s = travel_s  # how long a motorised door takes to open (touchless)
        self._data = default_config_data(locker)
        if adjust is not None:
            adjust(self._data)
        self._api_port = api_port or free_port()
        self._auto_shut_after_s = auto_shut_after_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="locker-agent-sim-")
            storage_dir = Path(self._tmp.name)
        self._storage_dir = storage_dir
        self.cloud = FakeCloud(self._data["cloud"]["api_key"], port=cloud_port)
        self.boards: KerongBoardEmulator | None = None
        self.touchless: TouchlessLocker | None = None
        if locker == "kerong":
            self.boards = KerongBoardEmulator(self._data["buses"][0]["boards"])
            self.boards.auto_shut_after_s = auto_shut_after_s
        self.agent: Agent | None = None

    @property
    def token(self) -> str:
        """The local API's bearer token."""
        return str(self._data["api"]["token"])

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the agent's local API, once started."""
        assert self.agent is not None
        return f"http://127.0.0.1:{self.agent.api.port}"

    def _config(self) -> Config:
        """The embedded locker with the simulator's live addresses filled in."""
        data = self._data
        if self.boards is not None:
            data["buses"][0]["port"] = self.boards.port
        data["cloud"]["url"] = self.cloud.url
        data["cloud"]["commands_url"] = self.cloud.commands_url
        data["api"]["listen"] = f"127.0.0.1:{self._api_port}"
        data["storage"]["dir"] = str(self._storage_dir)
        return parse_config(data, self._storage_dir)

    async def start(self) -> None:
        """Start the cloud, then the simulated hardware, then the agent on it."""
        await self.cloud.start()
        gpio_factory = None
        if self.boards is not None:
            await self.boards.start()
            config = self._config()
        else:
            config = self._config()
            gpio_factory = mock_factory()
            self.touchless = TouchlessLocker(config, gpio_factory, travel_s=self._travel_s)
            self.touchless.auto_shut_rear_after_s = self._auto_shut_after_s
            await self.touchless.start()  # a quiet locker on the pins before the agent looks
        self.agent = Agent(config, gpio_factory=gpio_factory)
        await self.agent.start()

    async def close(self) -> None:
        """Stop the agent, the hardware and the cloud, and remove a temporary storage dir."""
        if self.agent is not None:
            await self.agent.close()
            self.agent = None
        if self.touchless is not None:
            await self.touchless.close()
        if self.boards is not None:
            await self.boards.close()
        await self.cloud.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def banner(self) -> str:
        """Where to look: the addresses, the token and a curl line that opens a cabinet."""
        key = 5 if self.locker == "kerong" else 1
        if self.boards is not None:
            boards = ", ".join(f"board {b}" for b in self._data["buses"][0]["boards"])
            hardware = f"  lock boards  KR-CU16 {boards} on {self.boards.port}"
        else:
            hardware = "  GPIO         4 touchless cabinets (motorised doors) on mock pins"
        return "\n".join(
            [
                f"locker-agent simulator ({self.locker} locker) is running (Ctrl-C stops it)",
                f"  agent API    {self.api_url}   token: {self.token}",
                f"  fake cloud   {self.cloud.url}/_sim/feedback   (feedback received)",
                f"  commands     {self.cloud.commands_url}   (the cloud's websocket)",
                hardware,
                f"  open cabinet {key}:",
                f"    curl -X PUT -H 'Authorization: Bearer {self.token}'"
                " -H 'Content-Type: application/json' "
                f'-d \'{{"command": "open"}}\' {self.api_url}/api/lockers/cabinets/{key}',
                "  then watch the feedback:",
                f"    curl {self.cloud.url}/_sim/feedback",
            ]
        )


async def simulate(
    *, locker: LockerKind = "kerong", api_port: int = 8080, cloud_port: int = 8004
) -> None:
    """Run the simulation until SIGINT/SIGTERM; a simulated person shuts doors after 5 s."""
    sim = Simulation(locker=locker, api_port=api_port, cloud_port=cloud_port, auto_shut_after_s=5.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
        print(sim.banner(), flush=True)
        await stop.wait()
    finally:
        await sim.close()
