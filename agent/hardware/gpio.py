"""The GPIO side of the address map: each cabinet's switches, relays, motors and LEDs.

``GpioParts`` builds, from the config, the parts every cabinet has on the
controller's own pins (on the ``GpioBus`` of each), reports their readings to the
locker once started, and carries out the GPIO actions (pulse a latch relay, run a
door motor, show an indicator pattern). A part a driver refuses becomes a problem
line naming its config key, so ``check-config`` says what ``run`` would hit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from agent.config import CabinetConfig, GpioDoorWiring, Side
from agent.locker.errors import Unavailable
from drivers.gpio.errors import BusClosed, PinRefused
from drivers.gpio.pins import PinSpec

if TYPE_CHECKING:  # gpiozero loads only with a GPIO bus (bridge.Hardware builds it)
    from drivers.gpio import DoorMotor, GpioBus, GpioInput, Indicator, Relay

_T = TypeVar("_T")


class Readings(Protocol):
    """What GPIO readings go to (the locker's sensor sink)."""

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        """A door switch: open (True) or shut (False)."""

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        """A motorised door's open end switch."""

    def item_sensed(self, key: int, present: bool) -> None:
        """An item sensor."""


def pin_factory(name: str) -> Any:
    """gpiozero's pin factory by config name (``GpioBusConfig.pin_factory``); None lets
    gpiozero choose. ``"mock"`` has every BCM GPIO the config takes (0 to ``MAX_PIN``)."""
    if name == "mock":
        from drivers.gpio.mock import mock_factory

        return mock_factory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    return None


@dataclass
class GpioDoor:
    """The parts of one door on GPIO (each None when not wired or refused)."""

    bus: str
    switch: GpioInput | None = None
    open_switch: GpioInput | None = None
    beam: GpioInput | None = None
    lock: Relay | None = None
    motor: DoorMotor | None = None


class GpioParts:
    """Every cabinet's GPIO parts, on the GPIO buses ``buses`` (by name)."""

    def __init__(self, buses: Mapping[str, GpioBus], sink: Readings) -> None:
        self._buses = buses
        self._sink = sink
        self._started = False
        self.doors: dict[tuple[int, Side], GpioDoor] = {}
        self._items: dict[int, GpioInput] = {}
        self._indicators: dict[int, Indicator] = {}

    def build(self, index: int, cabinet: CabinetConfig, problems: list[str]) -> None:
        """Make ``cabinets[index]``'s GPIO parts; what a driver refuses is appended to
        ``problems`` as ``cabinets[i].part[.pin]: why``."""
        key = cabinet.key

        def make(
            where: str, pins: dict[str, PinSpec], factory: Callable[..., _T], *args: Any
        ) -> _T | None:
            try:
                return factory(*args)
            except PinRefused as e:
                names = [n for n, spec in pins.items() if e.pin and spec.number == e.pin.number]
                problems.append(f"cabinets[{index}].{where}{'.' + names[0] if names else ''}: {e}")
            except ValueError as e:
                problems.append(f"cabinets[{index}].{where}: {e}")
            return None

        def bus_of(part: str, name: str) -> GpioBus | None:
            bus = self._buses.get(name)
            if bus is None:
                problems.append(f"cabinets[{index}].{part}.bus: no GPIO bus named '{name}'")
            return bus

        for side in ("front", "rear"):
            wiring = getattr(cabinet, side)
            if not isinstance(wiring, GpioDoorWiring) or (bus := bus_of(side, wiring.bus)) is None:
                continue
            door = self.doors[(key, side)] = GpioDoor(wiring.bus)
            pins = wiring.pins()
            door.switch = make(side, pins, bus.input, wiring.switch, self._closed_cb(key, side))
            if wiring.open_switch is not None:
                opened = self._fully_open_cb(key, side)
                door.open_switch = make(side, pins, bus.input, wiring.open_switch, opened)
            if wiring.beam is not None:
                door.beam = make(side, pins, bus.input, wiring.beam)
            if wiring.lock is not None:
                door.lock = make(side, pins, bus.relay, wiring.lock)
            if wiring.motor_open is not None and wiring.motor_close is not None:
                door.motor = make(side, pins, bus.motor, wiring.motor_open, wiring.motor_close)
        if cabinet.item is not None and (bus := bus_of("item", cabinet.item.bus)) is not None:
            wired = cabinet.item
            item = make("item", wired.pins(), bus.input, wired.pin, self._item_cb(key))
            if item is not None:
                self._items[key] = item
        if (ind := cabinet.indicator) is not None and (bus := bus_of("indicator", ind.bus)):
            led = make("indicator", ind.pins(), bus.rgb, ind.red, ind.green, ind.blue)
            if led is not None:
                self._indicators[key] = led

    def start(self) -> None:
        """Report every input's level once; from now on every change is reported."""
        self._started = True
        for (key, side), door in self.doors.items():
            if door.switch is not None:  # active when shut
                self._sink.door_sensed(key, side, not door.switch.value)
            if door.open_switch is not None:
                self._sink.door_fully_open(key, side, door.open_switch.value)
        for key, item in self._items.items():
            self._sink.item_sensed(key, item.value)

    def stop(self) -> None:
        """Report nothing more (the buses are closing)."""
        self._started = False

    # --- actions -----------------------------------------------------------------

    async def release(self, key: int, side: Side) -> None:
        """Pulse the door's latch relay; raises ``Unavailable``."""
        door = self._door(key, side)
        if door.lock is None:
            raise Unavailable(f"cabinet {key} {side} door has no lock relay")
        with _closed_is_unavailable(door.bus):
            await door.lock.pulse()

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        """Run the door's motor to its end switch; False when stopped (the beam while
        closing, the time limit). Raises ``Unavailable``."""
        door = self._door(key, side)
        if door.motor is None:
            raise Unavailable(f"cabinet {key} {side} door has no motor")
        until = door.open_switch if opening else door.switch
        assert until is not None
        with _closed_is_unavailable(door.bus):
            if opening:
                return await door.motor.run(True, until)
            # Closing, the beam (a hand, a bag) aborts; opening, it does not matter.
            return await door.motor.run(False, until, abort=door.beam)

    def indicate(self, key: int, pattern: str) -> None:
        """Show ``pattern`` on the cabinet's indicator; nothing without one."""
        indicator = self._indicators.get(key)
        if indicator is not None:
            indicator.show(pattern)

    def _door(self, key: int, side: Side) -> GpioDoor:
        door = self.doors.get((key, side))
        if door is None:
            raise Unavailable("hardware not started")
        return door

    # --- readings ----------------------------------------------------------------

    def _closed_cb(self, key: int, side: Side) -> Callable[[bool], None]:
        def closed(is_closed: bool) -> None:
            if self._started:  # before start(), start() reads the level itself
                self._sink.door_sensed(key, side, not is_closed)

        return closed

    def _fully_open_cb(self, key: int, side: Side) -> Callable[[bool], None]:
        def fully_open(is_open: bool) -> None:
            if self._started:
                self._sink.door_fully_open(key, side, is_open)

        return fully_open

    def _item_cb(self, key: int) -> Callable[[bool], None]:
        def item(present: bool) -> None:
            if self._started:
                self._sink.item_sensed(key, present)

        return item


@contextlib.contextmanager
def _closed_is_unavailable(bus: str) -> Iterator[None]:
    try:
        yield
    except BusClosed:
        raise Unavailable(f"bus {bus}: closed") from None
