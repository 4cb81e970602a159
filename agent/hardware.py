"""The bridge between the locker and its drivers: an address map, and health read from the buses.

The address map says which driver part serves each door, item sensor and indicator
of the config: a Kerong (bus, board, channel), or GPIO inputs, relays, motors and
LEDs. Driver events (a lock board's bits, a GPIO switch) become door, item and board
readings for the locker; the locker's "release", "drive" and "indicate" become driver
calls. Board health is the buses' own (``KerongBus.silent_boards``, ``ready``,
``connected``): nothing here keeps a second copy of it.

``build()`` makes every driver and part from the config without opening any port:
GPIO devices with their pins claimed and polarity applied, Kerong bus objects, one
power budget per supply. ``locker-agent check-config`` runs it on mock pins, so a
config that passes check-config also starts. The only module of ``agent`` that knows
driver classes; nothing here knows about the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from agent.config import (
    Config,
    ConfigError,
    GpioBusConfig,
    GpioDoorWiring,
    KerongBusConfig,
    KerongDoorWiring,
    Side,
)
from agent.errors import Unavailable
from drivers.gpio import BusClosed, DoorMotor, GpioBus, GpioInput, Indicator, PinRefused, Relay
from drivers.gpio.pins import PinSpec
from drivers.kerong.bus import BoardStatus, BusUnavailable, KerongBus
from drivers.power import PowerBudget

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class SensorSink(Protocol):
    """Where readings go (the locker). Every call comes on the event loop; a board's
    ``board_health`` comes after the doors it serves are updated."""

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        """A door is open (True), shut (False) or unknown (None: its board is silent)."""

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        """A motorised door reached (True) or left (False) its open end switch."""

    def item_sensed(self, key: int, present: bool) -> None:
        """An item is in the cabinet (True) or not."""

    def board_health(self, bus: str, board: int, online: bool) -> None:
        """A lock board went silent (False) or answers again (True)."""


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
class _GpioDoor:
    bus: str
    switch: GpioInput | None = None
    open_switch: GpioInput | None = None
    beam: GpioInput | None = None
    lock: Relay | None = None
    motor: DoorMotor | None = None


class Hardware:
    """Every driver of one config, behind the locker's three actions and four readings.

    ``Hardware(config, sink, *, gpio_factory=None)``: ``sink`` gets the readings (see
    ``SensorSink``); ``gpio_factory`` is a gpiozero pin factory used for every GPIO
    bus instead of the configured one (mock pins: tests, the simulator, check-config).
    Constructing it builds nothing.

    Lifecycle: ``build()`` (inside a running loop; ``start()`` calls it), ``start()``,
    ``close()`` (always, also after a failed build). Actions raise
    ``agent.errors.Unavailable`` when the hardware cannot act.
    """

    def __init__(
        self, config: Config, sink: SensorSink, *, gpio_factory: Any | None = None
    ) -> None:
        self._config = config
        self._sink = sink
        self._gpio_factory = gpio_factory
        # The address map, from the config alone.
        self._wiring: dict[tuple[int, Side], KerongDoorWiring | GpioDoorWiring] = {}
        self._points: dict[tuple[str, int], list[tuple[int, int, Side]]] = {}
        for key, side, wiring in config.door_refs():
            self._wiring[(key, side)] = wiring
            if isinstance(wiring, KerongDoorWiring):
                where = (wiring.bus, wiring.board)
                self._points.setdefault(where, []).append((wiring.channel, key, side))
        # The drivers and their parts, once built.
        self._built = False
        self._started = False
        self._kerong: dict[str, KerongBus] = {}
        self._gpio: dict[str, GpioBus] = {}
        self._gpio_doors: dict[tuple[int, Side], _GpioDoor] = {}
        self._items: dict[int, GpioInput] = {}
        self._indicators: dict[int, Indicator] = {}

    # --- lifecycle -------------------------------------------------------------

    def build(self) -> None:
        """Construct every driver and part without opening any port: Kerong bus
        objects, GPIO buses with every pin claimed, polarity and output rules applied,
        one power budget per supply (a bus without ``supply`` has its own).

        Call it inside a running event loop (``RuntimeError`` otherwise); a second
        call does nothing. Raises ``ConfigError`` with one ``key.path: message`` line
        per thing a driver refused (``cabinets[3].indicator: ...``); ``close()`` then
        releases what was built.
        """
        if self._built:
            return
        asyncio.get_running_loop()
        self._built = True
        problems: list[str] = []
        budgets: dict[str, tuple[int, PowerBudget]] = {}
        for i, bus in enumerate(self._config.buses):
            budget = self._budget(i, bus, budgets, problems)
            try:
                if isinstance(bus, GpioBusConfig):
                    self._gpio[bus.name] = self._gpio_bus(bus, budget)
                else:
                    self._kerong[bus.name] = self._kerong_bus(bus, budget)
            except ValueError as e:
                problems.append(f"buses[{i}]: {e}")
        for i, cabinet in enumerate(self._config.cabinets):
            self._build_gpio_parts(i, cabinet.key, problems)
        if problems:
            raise ConfigError(problems)

    async def start(self) -> None:
        """Build if not built; GPIO outputs off first (also after a crash), then the
        inputs read and reported, then the Kerong buses opened and polled (in the
        background: ``wait_ready`` tells when every board was heard)."""
        self.build()
        for bus in self._gpio.values():
            await bus.start()
        self._started = True
        for (key, side), door in self._gpio_doors.items():
            if door.switch is not None:  # active when shut
                self._sink.door_sensed(key, side, not door.switch.value)
            if door.open_switch is not None:
                self._sink.door_fully_open(key, side, door.open_switch.value)
        for key, item in self._items.items():
            self._sink.item_sensed(key, item.value)
        for kerong in self._kerong.values():
            await kerong.start()

    async def close(self) -> None:
        """Every GPIO output off and released, every port closed; one part failing to
        close does not keep the others open. Idempotent."""
        self._started = False
        buses: list[GpioBus | KerongBus] = [*self._gpio.values(), *self._kerong.values()]
        for bus in buses:
            try:
                await bus.close()
            except Exception:
                log.exception("hardware.close_failed", bus=bus.name)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds until every board of every bus answered or
        was found silent; True if so (at once without lock boards)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for bus in self._kerong.values():
                    await bus.wait_ready()
        return all(bus.ready for bus in self._kerong.values())

    def problems(self) -> list[str]:
        """What keeps the hardware from working fully right now, one line each:
        a port not open, a board not answering."""
        out = []
        for name, bus in self._kerong.items():
            if not bus.connected:
                out.append(f"bus {name}: port not open")
                continue
            out.extend(f"bus {name} board {b}: not answering" for b in bus.silent_boards())
        return out

    # --- actuation -------------------------------------------------------------

    async def release(self, key: int, side: Side) -> None:
        """Pulse the door's lock (a Kerong channel or a GPIO latch relay); returns when
        the pulse is over. Raises ``Unavailable``: no lock, port not open, not started."""
        wiring = self._door_wiring(key, side)
        if isinstance(wiring, GpioDoorWiring):
            relay = self._gpio_door(key, side).lock
            if relay is None:
                raise Unavailable(f"cabinet {key} {side} door has no lock relay")
            with self._gpio_closed(wiring.bus):
                await relay.pulse()
            return
        bus = self._kerong.get(wiring.bus)
        if bus is None:
            raise Unavailable("hardware not started")
        try:
            await bus.unlock(wiring.board, wiring.channel)
        except BusUnavailable as exc:
            raise Unavailable(f"bus {wiring.bus}: {exc or 'port not open'}") from None

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        """Run a motorised door until its end switch (open switch when opening, closed
        switch when closing); True when it got there, False when stopped (the beam,
        closing; the time limit). Raises ``Unavailable``: no motor, bus closed."""
        wiring = self._door_wiring(key, side)
        door = self._gpio_door(key, side) if isinstance(wiring, GpioDoorWiring) else None
        if door is None or door.motor is None:
            raise Unavailable(f"cabinet {key} {side} door has no motor")
        until = door.open_switch if opening else door.switch
        assert until is not None
        with self._gpio_closed(door.bus):
            if opening:
                return await door.motor.run(True, until)
            # Closing, the beam (a hand, a bag) aborts; opening, it does not matter.
            return await door.motor.run(False, until, abort=door.beam)

    def indicate(self, key: int, pattern: str) -> None:
        """Show ``pattern`` (one of ``drivers.gpio.indicator.PATTERNS``) on the
        cabinet's indicator; nothing without one. ``ValueError`` for an unknown one."""
        indicator = self._indicators.get(key)
        if indicator is not None:
            indicator.show(pattern)

    def _door_wiring(self, key: int, side: Side) -> KerongDoorWiring | GpioDoorWiring:
        wiring = self._wiring.get((key, side))
        if wiring is None:
            raise Unavailable(f"cabinet {key} has no {side} door")
        return wiring

    def _gpio_door(self, key: int, side: Side) -> _GpioDoor:
        door = self._gpio_doors.get((key, side))
        if door is None:
            raise Unavailable("hardware not started")
        return door

    @contextlib.contextmanager
    def _gpio_closed(self, bus: str) -> Iterator[None]:
        try:
            yield
        except BusClosed:
            raise Unavailable(f"bus {bus}: closed") from None

    # --- building --------------------------------------------------------------

    def _budget(
        self,
        index: int,
        bus: KerongBusConfig | GpioBusConfig,
        budgets: dict[str, tuple[int, PowerBudget]],
        problems: list[str],
    ) -> PowerBudget:
        """The bus's power budget: its supply's, shared; else its own."""
        if bus.supply is None:
            return PowerBudget(bus.max_concurrent, bus.stagger_s)
        if bus.supply not in budgets:
            budgets[bus.supply] = (index, PowerBudget(bus.max_concurrent, bus.stagger_s))
        first, budget = budgets[bus.supply]
        if (budget.max_concurrent, budget.stagger_s) != (bus.max_concurrent, bus.stagger_s):
            problems.append(
                f"buses[{index}].supply: supply '{bus.supply}' is shared with buses[{first}],"
                " which has another max_concurrent or stagger_s"
            )
        return budget

    def _gpio_bus(self, bus: GpioBusConfig, budget: PowerBudget) -> GpioBus:
        factory = self._gpio_factory
        if factory is None:
            factory = pin_factory(bus.pin_factory)
        return GpioBus(
            bus.name,
            pin_factory=factory,
            pulse_s=bus.pulse_s,
            motor_max_s=bus.motor_max_s,
            debounce_s=bus.debounce_s,
            power_budget=budget,
        )

    def _kerong_bus(self, bus: KerongBusConfig, budget: PowerBudget) -> KerongBus:
        def on_status(board: int, status: BoardStatus | None) -> None:
            self._board_status(bus.name, board, status)

        def on_health(board: int, online: bool) -> None:
            self._sink.board_health(bus.name, board, online)

        return KerongBus(
            bus.port,
            bus.boards,
            on_status,
            on_health=on_health,
            baud=bus.baud,
            reply_timeout_s=bus.reply_timeout_s,
            poll_interval_s=bus.poll_interval_s,
            locked_bit=bus.locked_bit,
            pulse_s=bus.pulse_s,
            power_budget=budget,
            name=bus.name,
        )

    def _build_gpio_parts(self, index: int, key: int, problems: list[str]) -> None:
        cabinet = self._config.cabinets[index]

        def make(
            where: str, pins: dict[str, PinSpec], factory: Callable[..., _T], *args: Any
        ) -> _T | None:
            """``factory(*args)``, or None and a problem naming the config key of what
            the driver refused (the pin's field when it says which pin)."""
            try:
                return factory(*args)
            except PinRefused as e:
                names = [n for n, spec in pins.items() if e.pin and spec.number == e.pin.number]
                problems.append(f"cabinets[{index}].{where}{'.' + names[0] if names else ''}: {e}")
            except ValueError as e:
                problems.append(f"cabinets[{index}].{where}: {e}")
            return None

        for side in ("front", "rear"):
            wiring = getattr(cabinet, side)
            if not isinstance(wiring, GpioDoorWiring):
                continue
            bus = self._gpio_bus_of(index, side, wiring.bus, problems)
            if bus is None:
                continue
            door = self._gpio_doors[(key, side)] = _GpioDoor(wiring.bus)
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
        if cabinet.item is not None:
            wired = cabinet.item
            bus = self._gpio_bus_of(index, "item", wired.bus, problems)
            if bus is not None:
                item = make("item", wired.pins(), bus.input, wired.pin, self._item_cb(key))
                if item is not None:
                    self._items[key] = item
        if cabinet.indicator is not None:
            ind = cabinet.indicator
            bus = self._gpio_bus_of(index, "indicator", ind.bus, problems)
            if bus is not None:
                led = make("indicator", ind.pins(), bus.rgb, ind.red, ind.green, ind.blue)
                if led is not None:
                    self._indicators[key] = led

    def _gpio_bus_of(self, index: int, part: str, name: str, problems: list[str]) -> GpioBus | None:
        bus = self._gpio.get(name)
        if bus is None:
            problems.append(f"cabinets[{index}].{part}.bus: no GPIO bus named '{name}'")
        return bus

    # --- readings --------------------------------------------------------------

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

    def _board_status(self, bus_name: str, board: int, status: BoardStatus | None) -> None:
        # The bus reports health (on_health) after this: doors first, then the board.
        for channel, key, side in self._points.get((bus_name, board), ()):
            is_open = None if status is None else not status.closed[channel - 1]
            self._sink.door_sensed(key, side, is_open)
            if status is not None and side == "front":
                self._sink.item_sensed(key, status.items[channel - 1])
