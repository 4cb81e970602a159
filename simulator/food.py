"""The heat of a simulated food locker: every thermal cabinet of a config as a body.

:class:`FoodPlant` builds a :class:`~simulator.thermal.ThermalPlant` with one body per
cabinet that has a ``thermal`` unit, writing its DS18B20 file under the config's
``[thermal] w1_dir``, and advances it in real time (``speed`` times faster) with:

- the outputs the agent drives, read off the gpiozero mock pins as a relay sees
  them: the heater pin (its power through the ``[thermal] cutoff`` contactor's pin
  when one is fitted: open, no heater heats, welded or not); cooling is the
  cabinet's own cooler pin, or with a shared compressor its valve's pin and the
  compressor's, or the compressor's alone when the cabinet has no valve;
- the doors as the emulated hardware has them (a door physically open lets the
  room in), never the agent's idea of them.

Fates (a dead compressor, a welded relay, a failed sensor) are set on
:attr:`plant`'s bodies and sensors; :mod:`simulator.web.actions` does that.
Create it before the agent starts, on a factory nothing has used: it claims the
thermal output pins and writes every sensor file, so the agent's first read finds
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.config import Config
from simulator.mock_pins import OutputLine, WorldPins
from simulator.thermal import Outputs, PlantRunner, ThermalBody, ThermalPlant

if TYPE_CHECKING:
    from gpiozero.pins.mock import MockFactory

ROOM_C = 22.0
SPEED = 30.0  # a simulated minute every two seconds: a freezer pulls down in minutes
TICK_S = 0.5


def has_thermal(data: Mapping[str, Any]) -> bool:
    """Whether a raw config dict has a cabinet with a ``thermal`` unit."""
    cabinets = data.get("cabinets")
    return isinstance(cabinets, list) and any(
        isinstance(c, dict) and c.get("thermal") for c in cabinets
    )


@dataclass(frozen=True, slots=True)
class _Wires:
    """What a cabinet's relays are, as the world sees them (None: not fitted)."""

    heater: OutputLine | None
    cooler: OutputLine | None
    compressor: OutputLine | None  # the shared one, when the cabinet is on one
    compressor_name: str | None

    def outputs(self) -> tuple[bool, bool]:
        heating = self.heater is not None and self.heater.on
        if self.compressor_name is None:
            cooling = self.cooler is not None and self.cooler.on
        else:
            valve_open = self.cooler is None or self.cooler.on
            cooling = valve_open and self.compressor is not None and self.compressor.on
        return heating, cooling


class FoodPlant:
    """``config``'s thermal cabinets on the mock pins of ``factory``, in a room at
    ``room_c`` (degrees C). ``door_open(key)``: whether a door of that cabinet is
    physically open now. ``start_c``: a cabinet's temperature at the start (default:
    the room's). ``speed``: simulated seconds per real second (> 0).

    Raises ValueError for a speed <= 0, a pin claimed twice or a bad sensor id, and
    RuntimeError when a thermal pin was used on the factory before.
    """

    __slots__ = ("_cutoff", "_door_open", "_wires", "compressors", "plant", "runner")

    def __init__(
        self,
        config: Config,
        factory: MockFactory,
        door_open: Callable[[int], bool],
        *,
        speed: float = SPEED,
        room_c: float = ROOM_C,
        start_c: Mapping[int, float] | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"thermal speed must be > 0, not {speed}")
        start_c = start_c or {}
        pins = WorldPins(factory)
        compressors = {c.name: pins.output(c.pin) for c in config.thermal.compressors}
        cutoff = config.thermal.cutoff
        self._cutoff = pins.output(cutoff.pin) if cutoff is not None else None
        self.compressors: dict[str, list[int]] = {name: [] for name in compressors}
        self.plant = ThermalPlant(config.thermal.w1_dir, room_c=room_c)
        self._wires: dict[int, _Wires] = {}
        for cabinet in config.cabinets:
            unit = cabinet.thermal
            if unit is None:
                continue
            heater = pins.output(unit.heater) if unit.heater is not None else None
            cooler = pins.output(unit.cooler) if unit.cooler is not None else None
            shared = compressors.get(unit.compressor) if unit.compressor else None
            self._wires[cabinet.key] = _Wires(heater, cooler, shared, unit.compressor)
            if unit.compressor in self.compressors:
                self.compressors[unit.compressor].append(cabinet.key)
            body = ThermalBody(temperature_c=start_c.get(cabinet.key, room_c))
            self.plant.add(cabinet.key, unit.sensor, body)
        self._door_open = door_open
        self.runner = PlantRunner(self.plant, self.outputs, self.doors, tick_s=tick_s, speed=speed)

    @property
    def keys(self) -> list[int]:
        """The thermal cabinets played."""
        return self.plant.keys

    def outputs(self) -> Outputs:
        """(heating, cooling) per cabinet as its relays are now; the heaters' supply as
        the cutoff contactor gives it, set on each body."""
        supplied = self._cutoff is None or self._cutoff.on
        for key in self._wires:
            self.plant.body(key).heater_supply = supplied
        return {key: wires.outputs() for key, wires in self._wires.items()}

    def doors(self) -> dict[int, bool]:
        """Whether each thermal cabinet has a door physically open now."""
        return {key: self._door_open(key) for key in self._wires}

    def cooled_with(self, key: int) -> list[int]:
        """The cabinets whose cold comes from the same machine as ``key``'s: every
        cabinet on its shared compressor, or ``key`` alone. ValueError for a cabinet
        without a thermal unit."""
        wires = self._known(key)
        if wires.compressor_name is None:
            return [key]
        return list(self.compressors[wires.compressor_name])

    def fitted(self, key: int) -> tuple[bool, bool]:
        """(has a heater, has a way to cool) for cabinet ``key``. ValueError: not thermal."""
        wires = self._known(key)
        return wires.heater is not None, wires.cooler is not None or wires.compressor is not None

    def view(self) -> dict[str, Any]:
        """The room and the speed, JSON-able, for the web view."""
        return {"room_c": self.plant.room_c, "speed": self.runner.speed, "keys": self.keys}

    async def start(self) -> None:
        """Advance the physics in real time (``speed`` times faster) until closed."""
        await self.runner.start()

    async def close(self) -> None:
        """Stop the physics; the sensor files keep their last contents. Idempotent."""
        await self.runner.close()

    def _known(self, key: int) -> _Wires:
        try:
            return self._wires[key]
        except KeyError:
            raise ValueError(
                f"cabinet {key} has no thermal unit (those that do: {self.keys})"
            ) from None
