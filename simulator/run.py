"""``locker-agent simulate``: the real agent against a simulated locker and a fake cloud.

Three embedded lockers: ``kerong`` (16 cabinets on emulated KR-CU16 boards behind a
pseudo-terminal, the agent's real Kerong driver reading them), ``touchless`` (4
motorised cabinets on gpiozero mock pins played by ``simulator.touchless``) and
``food`` (8 hot and cold cabinets on a KR-CU16 board, their heaters, valves and
compressor on mock pins, their heat played by ``simulator.food``), or any config a
technician wrote: each Kerong bus becomes an emulator on its own pseudo-terminal,
the GPIO pins mock pins, the 1-wire sensors files the physics writes. Either
way the agent reports to the fake cloud over HTTP and takes its commands over
the websocket: nothing in ``agent`` knows it is simulated. The web view
(``simulator.web``) shows it all and acts on it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from agent.app import Agent
from agent.config import Config, parse_config
from agent.field.technician import SIMULATOR_PREFIX
from simulator.cloud import FakeCloud
from simulator.cloud.server import outside_ephemeral
from simulator.food import SPEED, FoodPlant, has_thermal
from simulator.kerong_board import KerongBoardEmulator
from simulator.mock_pins import mock_factory
from simulator.scanner import VirtualScanner
from simulator.tomlfile import dumps
from simulator.touchless import TouchlessLocker

LockerKind = Literal["kerong", "touchless", "food"]
LOCKERS: dict[str, str] = {
    "kerong": "default.toml",
    "touchless": "touchless.toml",
    "food": "food.toml",
}


def free_port() -> int:
    """A loopback port free right now (the config rightly refuses port 0), below the
    ephemeral range when one is free there: bound later, by another process, it is not
    meanwhile any outgoing connection's."""
    if port := outside_ephemeral("127.0.0.1"):
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_config_data(path: Path) -> dict[str, Any]:
    """A technician's config file as a raw TOML dict; OSError or TOMLDecodeError as raised."""
    with path.open("rb") as f:
        return tomllib.load(f)


def default_config_data(locker: LockerKind = "kerong") -> dict[str, Any]:
    """The embedded config of ``locker`` as a raw TOML dict (a fresh copy each call)."""
    text = resources.files("simulator").joinpath(LOCKERS[locker]).read_text()
    return tomllib.loads(text)


class Simulation:
    """A simulated locker + fake cloud + the agent, started and stopped together.

    ``auto_shut_after_s``: a simulated person shuts a door (Kerong) or a rear door
    (touchless) that long after it opened. ``adjust`` edits the config dict
    before it is validated (tests shorten timings). ``config_data`` (a raw config
    dict, e.g. :func:`load_config_data`) replaces the embedded ``locker``: its
    Kerong buses become emulators (:attr:`buses`, by bus name), its GPIO pins
    mock pins; its cloud, API address and socket, secrets and storage are the
    simulator's (the technicians' socket is ``agent.sock`` in the storage directory,
    never the locker's ``/run/locker-agent``).
    Its errors surface at :meth:`start` as the agent's ``ConfigError``.

    Cabinets with a ``thermal`` unit get a body each (:attr:`food`, a
    :class:`~simulator.food.FoodPlant`) whose sensor files live in a temporary
    ``[thermal] w1_dir``: ``thermal_speed`` simulated seconds pass per real second,
    ``thermal_start_c`` sets a cabinet's temperature at the start (else the room's).
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
        config_data: dict[str, Any] | None = None,
        thermal_speed: float = SPEED,
        thermal_start_c: dict[int, float] | None = None,
    ) -> None:
        self.locker = locker if config_data is None else "config"
        self._travel_s = travel_s  # how long a motorised door takes to open (touchless)
        if config_data is None:
            self._data = default_config_data(locker)
        else:
            self._data = copy.deepcopy(config_data)
            _simulator_secrets(self._data)
        if adjust is not None:
            adjust(self._data)
        self._api_port = api_port or free_port()
        self._auto_shut_after_s = auto_shut_after_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=SIMULATOR_PREFIX)
            storage_dir = Path(self._tmp.name)
        self._storage_dir = storage_dir
        self.cloud = FakeCloud(self._data["cloud"]["api_key"], port=cloud_port)
        self.buses: dict[str, KerongBoardEmulator] = {}
        for bus in self._data.get("buses", []):
            if isinstance(bus, dict) and bus.get("driver", "kerong-cu16") == "kerong-cu16":
                emulator = KerongBoardEmulator(bus["boards"], locked_bit=bus.get("locked_bit", 1))
                emulator.auto_shut_after_s = auto_shut_after_s
                self.buses[bus["name"]] = emulator
        # The first Kerong bus (the embedded locker's only one), or None.
        self.boards: KerongBoardEmulator | None = next(iter(self.buses.values()), None)
        self._gpio = any(
            isinstance(bus, dict) and bus.get("driver") == "gpio"
            for bus in self._data.get("buses", [])
        )
        self.touchless: TouchlessLocker | None = None
        self.food: FoodPlant | None = None
        self._thermal_speed = thermal_speed
        self._thermal_start_c = thermal_start_c or {}
        self._w1: tempfile.TemporaryDirectory[str] | None = None
        if has_thermal(self._data):  # the sensors are files the physics writes
            self._w1 = tempfile.TemporaryDirectory(prefix="locker-agent-w1-")
            thermal = self._data.setdefault("thermal", {})
            if isinstance(thermal, dict):
                thermal["w1_dir"] = self._w1.name
        # A virtual scanner for each of the config's readers (they become serial readers on
        # a pty), or one called "scanner" when it has none.
        readers = [r for r in self._data.get("readers", []) if isinstance(r, dict)]
        self.scanners = {
            str(r.get("name")): VirtualScanner(str(r.get("name"))) for r in readers
        } or {"scanner": VirtualScanner()}
        self.agent: Agent | None = None

    @property
    def scanner(self) -> VirtualScanner:
        """The first virtual scanner (the embedded lockers' only one)."""
        return next(iter(self.scanners.values()))

    @property
    def config_data(self) -> dict[str, Any]:
        """The raw config the agent runs on (the simulator's addresses filled in at start)."""
        return self._data

    @property
    def token(self) -> str:
        """The local API's bearer token."""
        return str(self._data["api"]["token"])

    @property
    def socket(self) -> Path:
        """The agent's technicians' socket (``locker-agent status --socket PATH``)."""
        return self._storage_dir / "agent.sock"

    @property
    def storage_dir(self) -> Path:
        """Where the agent keeps its outbox, state and thermal records (removed at close
        when the simulator made it)."""
        return self._storage_dir

    @property
    def config_file(self) -> Path:
        """The config the agent runs on, written at start for the technician's commands
        (``locker-agent outbox --config FILE``, ``thermal log``, ``status``)."""
        return self._storage_dir / CONFIG_FILE

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the agent's local API, once started."""
        assert self.agent is not None
        return f"http://127.0.0.1:{self.agent.api.port}"

    def _config(self) -> Config:
        """The embedded locker with the simulator's live addresses filled in."""
        data = self._data
        for bus in data["buses"]:
            if bus["name"] in self.buses:
                bus["port"] = self.buses[bus["name"]].port
        data["cloud"]["url"] = self.cloud.url
        data["cloud"]["commands_url"] = self.cloud.commands_url
        data["api"]["listen"] = f"127.0.0.1:{self._api_port}"
        data["storage"]["dir"] = str(self._storage_dir)
        data["api"]["socket"] = str(self.socket)
        data["readers"] = [
            {"name": name, "driver": "serial", "port": scanner.path, "baud": 9600}
            for name, scanner in self.scanners.items()
        ]
        return parse_config(data, self._storage_dir)

    async def start(self) -> None:
        """Start the cloud, then the simulated hardware, then the agent on it."""
        await self.cloud.start()
        gpio_factory = None
        for emulator in self.buses.values():
            await emulator.start()
        for scanner in self.scanners.values():
            scanner.start()
        config = self._config()
        # It holds the API token inline: the owner's alone, as doctor asks of a config.
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(dumps(self._data))
        if self._gpio:
            gpio_factory = mock_factory()
            self.touchless = TouchlessLocker(config, gpio_factory, travel_s=self._travel_s)
            self.touchless.auto_shut_rear_after_s = self._auto_shut_after_s
            await self.touchless.start()  # a quiet locker on the pins before the agent looks
        if self._w1 is not None:  # its pins claimed and its sensor files written, too
            self.food = FoodPlant(
                config,
                gpio_factory or mock_factory(),  # sensors alone: no pin is claimed
                self.door_open,
                speed=self._thermal_speed,
                start_c=self._thermal_start_c,
            )
        self.agent = Agent(config, gpio_factory=gpio_factory)
        await self.agent.start()
        if self.food is not None:
            await self.food.start()

    def door_open(self, key: int) -> bool:
        """Whether a door of cabinet ``key`` is physically open now, as the emulated
        hardware has it (a Kerong channel's door, a GPIO door off its closed switch)."""
        for cabinet in self._data["cabinets"]:
            if cabinet["key"] != key:
                continue
            for side in ("front", "rear"):
                wiring = cabinet.get(side)
                if not isinstance(wiring, dict):
                    continue
                emulator = self.buses.get(wiring.get("bus", ""))
                if emulator is not None:
                    if emulator.state(wiring["board"], wiring["channel"]).door_open:
                        return True
                elif self.touchless is not None and key in self.touchless.keys:
                    with contextlib.suppress(ValueError):  # not that side on GPIO
                        if self.touchless.position(key, side) > 0.0:  # type: ignore[arg-type]
                            return True
        return False

    async def close(self) -> None:
        """Stop the agent, the hardware and the cloud, and remove a temporary storage dir."""
        if self.food is not None:
            await self.food.close()
        if self.agent is not None:
            await self.agent.close()
            self.agent = None
        if self.touchless is not None:
            await self.touchless.close()
        for emulator in self.buses.values():
            await emulator.close()
        await self.cloud.close()
        for scanner in self.scanners.values():
            scanner.close()
        for tmp in (self._tmp, self._w1):
            if tmp is not None:
                tmp.cleanup()
        self._tmp = self._w1 = None

    def _commands(self) -> list[str]:
        """The technician's commands that read this locker's files or socket."""
        thermal = ["thermal log"] if self.food is not None else []
        return ["status", "outbox", *thermal]

    def banner(
        self,
        web_url: str | None = None,
        log_file: Path | None = None,
        notes: Sequence[str] = (),
    ) -> str:
        """Where to look: the technician's commands, the cloud, the hardware and a curl
        line that opens a cabinet, then :meth:`where` last, so what a person needs most
        is at the bottom of the screen. ``notes``: lines of the run's own to add."""
        keys = [c["key"] for c in self._data["cabinets"]]
        key = 5 if 5 in keys else keys[0]
        hardware = [
            f"  lock boards  KR-CU16 {', '.join(f'board {b}' for b in e.boards)} on {e.port}"
            f" (bus {name})"
            for name, e in self.buses.items()
        ]
        hardware += [f"  scanner      {s.name} on {s.path}" for s in self.scanners.values()]
        if self.touchless is not None and self.touchless.keys:
            hardware.append(f"  GPIO         cabinets {self.touchless.keys} on mock pins")
        if self.food is not None:
            hardware.append(
                f"  thermal      cabinets {self.food.keys}: their heat played"
                f" {self.food.runner.speed:g} times faster than life,"
                f" sensors in {self.food.plant.w1_dir}"
            )
        return "\n".join(
            [
                f"locker-agent simulator ({self.locker} locker) is running (Ctrl-C stops it)",
                f"  technician   locker-agent status --socket {self.socket}   (open {key},"
                " selftest: the same)",
                f"  its config   {self.config_file}   (for the technician's commands:)",
                *(f"    locker-agent {c} --config {self.config_file}" for c in self._commands()),
                f"  fake cloud   {self.cloud.url}/_sim/feedback   (feedback received)",
                f"  commands     {self.cloud.commands_url}   (the cloud's websocket)",
                *hardware,
                *notes,
                f"  open cabinet {key}:",
                f"    curl -X PUT -H 'Authorization: Bearer {self.token}'"
                " -H 'Content-Type: application/json' "
                f'-d \'{{"command": "open"}}\' {self.api_url}/api/lockers/cabinets/{key}',
                "  then watch the feedback:",
                f"    curl {self.cloud.url}/_sim/feedback",
                *self.where(web_url, log_file),
            ]
        )

    def where(self, web_url: str | None = None, log_file: Path | None = None) -> list[str]:
        """The banner's last lines, what a person needs most: the API and its token, the
        storage, the log file (when there is one) and the web view (when it runs)."""
        thermal = ", thermal records" if self.food is not None else ""
        lines = [
            f"  agent API    {self.api_url}   token: {self.token}",
            f"  storage      {self.storage_dir}   (outbox, state{thermal})",
        ]
        if log_file is not None:
            lines.append(f"  log          {log_file}   (all of it; warnings and errors here too)")
        if web_url is not None:
            lines.append(f"  web view     {web_url}   (the locker, live; act on it there)")
        return lines


CONFIG_FILE = "simulated-agent.toml"
SIM_API_KEY = "simulator-api-key"
SIM_TOKEN = "simulator"


def _simulator_secrets(data: dict[str, Any]) -> None:
    """A technician's file names secrets this laptop lacks: the simulator's stand in."""
    for table, key in (("cloud", "api_key"), ("api", "token")):
        section = data.setdefault(table, {})
        if isinstance(section, dict):
            section.pop(f"{key}_file", None)
            section[key] = SIM_API_KEY if key == "api_key" else SIM_TOKEN
    for table in ("storage", "locker"):
        data.setdefault(table, {})
