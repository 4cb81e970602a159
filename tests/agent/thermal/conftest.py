"""The thermal test rig: an agent's thermal parts on mock pins, the physics of
``simulator.thermal`` writing the kernel's sensor files, and a clock that moves when
told (hours of simulated time in well under a second)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.config import parse_config
from agent.locker.commands import parse_command
from agent.locker.errors import LockerError
from agent.thermal.records import Records
from agent.thermal.service import Thermal
from simulator.mock_pins import WorldPins, mock_factory
from simulator.thermal import ThermalBody, ThermalPlant

SENSORS = {key: f"28-00000000000{key}" for key in range(4)}
PINS = {0: {"heater": 17}, 1: {"cooler": 27}, 2: {"cooler": 22}, 3: {"heater": 23, "cooler": 24}}
ITEM_PINS = {0: 12, 1: 13, 2: 16, 3: 19}  # with ``items``: an item sensor each (active: an item)


class Rig:
    """An agent's thermal parts, a plant, and a clock that moves when told."""

    def __init__(
        self,
        tmp_path: Path,
        modes: dict[int, str],
        start_c: float = 22.0,
        *,
        items: bool = False,
        **thermal: Any,
    ) -> None:
        self.tmp_path = tmp_path
        self.now = 1000.0
        self.plant = ThermalPlant(tmp_path / "w1", room_c=22.0)
        for key in modes:
            self.plant.add(key, SENSORS[key], ThermalBody(temperature_c=start_c))
        cabinets = [
            {
                "key": key,
                "front": {"bus": "gpio", "switch": 4 + key, "lock": 8 + key},
                "thermal": {"sensor": SENSORS[key], "bus": "gpio", **PINS[key]},
            }
            | ({"item": {"bus": "gpio", "pin": ITEM_PINS[key]}} if items else {})
            for key in modes
        ]
        self.config = parse_config(
            {
                "cloud": {"url": "https://cloud.example.com", "api_key": "k"},
                "api": {"token": "t"},
                "storage": {"dir": str(tmp_path / "state")},
                "thermal": {"w1_dir": str(tmp_path / "w1"), "log_every_s": 60, **thermal},
                "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
                "cabinets": cabinets,
            },
            tmp_path,
        )
        self.factory = mock_factory()
        world = WorldPins(self.factory)  # the simulated world's side of the pins
        self.disable_errors: list[LockerError] = []
        self.switches = {key: world.input(4 + key) for key in modes}
        for line in self.switches.values():
            line.set(True)  # every door shut (a switch is active when shut)
        self.items = {key: world.input(ITEM_PINS[key]) for key in modes} if items else {}
        for line in self.items.values():
            line.set(False)  # every cabinet empty: read at start, as a board's first answer
        self.lines = {pin: world.output(pin) for key in modes for pin in PINS[key].values()}
        cutoff = self.config.thermal.cutoff
        self.cutoff = world.output(cutoff.pin) if cutoff is not None else None
        self.agent = Agent(self.config, gpio_factory=self.factory)
        self.locker = self.agent.locker
        for key, mode in modes.items():
            self.locker.cabinets[key].thermal_mode = mode  # type: ignore[assignment]
        self.doors: dict[int, bool] = {}
        self.both_on = 0
        self.thermal: Thermal | None = None
        self.synced = True  # the wall clock known right at each start (set False to test)

    async def start(self) -> None:
        await self.agent.hardware.start()  # door switches read: the cloud can be told
        self.locker.attach(self.agent.hardware)
        self.locker.report_startup()
        self.thermal = self.new_thermal()
        self.thermal.outputs.all_off()

    def new_thermal(self, wall_offset_s: float = 0.0) -> Thermal:
        """A thermal service on the rig's clocks (the wall ``wall_offset_s`` off the
        truth), its clock's evidence as ``synced`` says, taken at once."""
        wirings = {c.key: c.thermal for c in self.config.cabinets}
        records = Records(self.tmp_path / "thermal.sqlite3", retention_days=400)
        self.wall_offset_s = wall_offset_s
        thermal = Thermal(
            self.config.thermal,
            self.locker.cabinets,
            wirings,  # type: ignore[arg-type]
            self.agent.hardware.thermal,
            records,
            self.locker.journal.publish,
            disable=self.disable,
            clock=lambda: self.now,
            wall=lambda: self.now + 1.8e9 + self.wall_offset_s,
        )
        thermal.clock_known(True if self.synced else None, "the rig")
        return thermal

    async def disable(self, key: int, reason: str) -> None:
        """As the agent's: a refusal is logged there, kept here for the test to read."""
        try:
            await self.locker.execute(key, parse_command({"command": "disable", "reason": reason}))
        except LockerError as err:
            self.disable_errors.append(err)

    async def door(self, key: int, is_open: bool) -> None:
        """A person opens or shuts the door: its switch (debounced, in real time: waited
        for until the agent shows it), and the room comes in."""
        self.switches[key].set(not is_open)
        self.doors[key] = is_open
        door = self.locker.cabinets[key].front
        async with asyncio.timeout(5):
            while (door.state.value == "open") != is_open:
                await asyncio.sleep(0.005)

    async def item(self, key: int, present: bool) -> None:
        """A person puts an item in (or takes it out): the item sensor's pin, waited for
        until the locker has it (needs ``items``)."""
        self.items[key].set(present)
        cabinet = self.locker.cabinets[key]
        async with asyncio.timeout(5):
            while cabinet.occupied != present:
                await asyncio.sleep(0.005)

    def pin(self, number: int) -> bool:
        return self.lines[number].on

    def outputs(self) -> dict[int, tuple[bool, bool]]:
        supplied = self.cutoff is None or self.cutoff.on
        for key in self.plant.keys:
            self.plant.body(key).heater_supply = supplied
        out = {}
        for key in self.plant.keys:
            pins = PINS[key]
            heat = "heater" in pins and self.pin(pins["heater"])
            cool = "cooler" in pins and self.pin(pins["cooler"])
            self.both_on += heat and cool
            out[key] = (heat, cool)
        return out

    def run(self, seconds: float, dt_s: float = 10.0) -> None:
        """Advance physics and clock by ``dt_s`` steps, one control round each."""
        assert self.thermal is not None
        for _ in range(round(seconds / dt_s)):
            self.plant.advance(dt_s, self.outputs(), self.doors)
            self.now += dt_s
            self.thermal.step(self.thermal._read_all())

    def power_cut(self, seconds: float, *, wall_offset_s: float = 0.0) -> Thermal:
        """The power goes for ``seconds``: no shutdown (the food clocks as last saved),
        every relay off with it, the cabinets drift; then a new thermal service starts,
        its wall clock ``wall_offset_s`` off the truth (a Pi without a clock chip boots
        at fake-hwclock's last save)."""
        assert self.thermal is not None
        self.thermal.outputs.all_off()  # no power, no relay
        self.thermal.records.close()  # no last save: a cut, not a stop
        step = 60.0
        for _ in range(round(seconds / step)):
            self.plant.advance(step, {}, self.doors)
            self.now += step
        self.thermal = self.new_thermal(wall_offset_s)
        self.thermal.outputs.all_off()
        return self.thermal

    def temp(self, key: int) -> float:
        return self.plant.body(key).temperature_c

    def alarms(self, key: int) -> set[str]:
        return {alarm for alarm, _ in self.locker.cabinets[key].alarms}

    def events(self) -> list[str]:
        return [m.event for m in self.agent.outbox.pending(10_000)]

    async def close(self) -> None:
        if self.thermal is not None:
            self.thermal.outputs.all_off()
            self.thermal.records.close()
        await self.locker.close()
        await self.agent.hardware.close()
        self.agent.outbox.close()
        self.agent.store.close()


@pytest.fixture
async def rigs(tmp_path):
    made: list[Rig] = []

    async def make(
        modes: dict[int, str], start_c: float = 22.0, *, items: bool = False, **thermal: Any
    ) -> Rig:
        rig = Rig(tmp_path / str(len(made)), modes, start_c, items=items, **thermal)
        made.append(rig)
        await rig.start()
        return rig

    yield make
    for rig in made:
        await rig.close()


@pytest.fixture(scope="session")
def rig_class() -> type[Rig]:
    """The rig itself, for tests that build their own (hypothesis examples)."""
    return Rig
