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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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
from agent.hardware.gap import PulseGap
from agent.hardware.gpio import GpioParts, pin_factory
from agent.hardware.ports import not_open
from agent.locker.errors import Unavailable
from agent.thermal.outputs import ThermalOutputs
from drivers.kerong.bus import BoardStatus, BusUnavailable, KerongBus
from drivers.power import PowerBudget

if TYPE_CHECKING:  # gpiozero loads only with a GPIO bus (_gpio_bus)
    from drivers.gpio import GpioBus

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class SensorSink(Protocol):
    """Where readings go (the locker). Every call comes on the event loop; a board's
    ``board_health`` comes after the doors it serves are updated."""

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        """A door is open (True), shut (False) or unknown (None: its board is silent)."""

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        """A motorised door reached (True) or left (False) its open end switch."""

    def item_sensed(self, key: int, present: bool | None) -> None:
        """An item is in the cabinet (True), or not, or not known (None: board silent)."""

    def board_health(self, bus: str, board: int, online: bool) -> None:
        """A lock board went silent (False) or answers again (True)."""

    def bus_health(self, bus: str, online: bool) -> None:
        """Every board of a bus went silent or its port closed (False), or one answers
        again (True)."""


class Hardware:
    """Every driver of one config, behind the locker's three actions and four readings.

    ``sink`` gets the readings (``SensorSink``); ``gpio_factory``: a gpiozero pin
    factory for every GPIO bus instead of the configured one (mock pins).
    Constructing builds nothing. Lifecycle: ``build()`` (in a running loop;
    ``start()`` calls it), ``start()``, ``close()`` (always, also after a failed
    build). Actions raise ``agent.locker.errors.Unavailable`` when they cannot act.
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
        self._parts = GpioParts(self._gpio, sink)
        self.thermal = ThermalOutputs(config)  # heaters, coolers, compressors
        self.gap = PulseGap(config.locker.min_pulse_gap_s)  # every lock's turn
        self._silent_buses: set[str] = set()

    # --- lifecycle -------------------------------------------------------------

    def build(self) -> None:
        """Construct every driver and part without opening a port.

        Kerong bus objects, GPIO buses with every pin claimed and output rules applied,
        one power budget per supply (a bus without ``supply`` has its own). Needs a
        running loop (``RuntimeError``); a second call does nothing. Raises
        ``ConfigError``, a ``key.path: message`` line per thing a driver refused;
        ``close()`` then releases what was built.
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
            self._parts.build(i, cabinet, problems)
        self.thermal.build(self._gpio, problems)
        if problems:
            raise ConfigError(problems)

    async def start(self) -> None:
        """Build if not built, then outputs off, inputs read, Kerong buses opened and polled.

        GPIO outputs go off first (also after a crash); the buses poll in the
        background: ``wait_ready`` tells when every board was heard.
        """
        self.build()
        for bus in self._gpio.values():
            await bus.start()
        self._parts.start()
        for kerong in self._kerong.values():
            await kerong.start()

    async def close(self) -> None:
        """Every GPIO output off and released, every port closed; one part failing to
        close does not keep the others open. Idempotent."""
        self._parts.stop()
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

    def kerong_buses(self) -> dict[str, KerongBus]:
        """The Kerong buses by name (for metrics: their counters and health)."""
        return dict(self._kerong)

    def polling(self, stall_s: float) -> bool:
        """Whether every bus is alive (see ``KerongBus.polling``); GPIO needs no poll."""
        return all(bus.polling(stall_s) for bus in self._kerong.values())

    def boards(self) -> tuple[int, int]:
        """(boards answering, boards configured) over every bus."""
        total = sum(len(bus.boards) for bus in self._kerong.values())
        silent = sum(
            len(bus.boards) if not bus.connected else len(bus.silent_boards())
            for bus in self._kerong.values()
        )
        return total - silent, total

    def problems(self) -> list[str]:
        """What keeps the hardware from working fully right now, one line each:
        a port not open (its path and why), a board not answering."""
        out = self.port_problems()
        for name, bus in self._kerong.items():
            if bus.connected:
                out.extend(f"bus {name} board {b}: not answering" for b in bus.silent_boards())
        return out

    def port_problems(self) -> list[str]:
        """``bus NAME: port PATH not open: REASON: what to do``, one per port not open."""
        return [
            not_open(name, bus.port, bus.open_error)
            for name, bus in self._kerong.items()
            if not bus.connected
        ]

    # --- actuation -------------------------------------------------------------

    async def release(self, key: int, side: Side) -> None:
        """Pulse the door's lock (a Kerong channel or a GPIO latch relay) in its turn.

        Returns when the pulse is over. Raises ``Busy`` (the lock's pulse gap), or
        ``Unavailable``: no lock, port not open, not started.
        """
        wiring = self._door_wiring(key, side)
        if isinstance(wiring, GpioDoorWiring):
            await self.gap.pulse(key, side, lambda: self._parts.release(key, side))
            return
        bus = self._kerong.get(wiring.bus)
        if bus is None:
            raise Unavailable("hardware not started")
        try:
            await self.gap.pulse(key, side, lambda: bus.unlock(wiring.board, wiring.channel))
        except BusUnavailable as exc:
            if not bus.connected:  # the port's path and why, as /healthz says it
                raise Unavailable(not_open(wiring.bus, bus.port, bus.open_error)) from None
            raise Unavailable(f"bus {wiring.bus}: {exc or 'port not open'}") from None

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        """Run a motorised door to its end switch; True when it got there.

        The open switch when ``opening``, the closed one otherwise; False when stopped
        (the beam while closing, or the time limit). Raises ``Unavailable``: no motor,
        or the bus is closed.
        """
        if not isinstance(self._door_wiring(key, side), GpioDoorWiring):
            raise Unavailable(f"cabinet {key} {side} door has no motor")
        return await self._parts.drive(key, side, opening)

    def indicate(self, key: int, pattern: str) -> None:
        """Show ``pattern`` (one of ``drivers.gpio.indicator.PATTERNS``) on the
        cabinet's indicator; nothing without one. ``ValueError`` for an unknown one."""
        self._parts.indicate(key, pattern)

    def why_unknown(self, key: int, side: Side) -> str | None:
        """The port-not-open line (``ports.not_open``) of the bus a door is on, or None
        (a GPIO door, or its port open: its board is the silent one)."""
        wiring = self._wiring.get((key, side))
        bus = self._kerong.get(wiring.bus) if isinstance(wiring, KerongDoorWiring) else None
        if bus is None or bus.connected:
            return None
        return not_open(wiring.bus, bus.port, bus.open_error)

    def _door_wiring(self, key: int, side: Side) -> KerongDoorWiring | GpioDoorWiring:
        wiring = self._wiring.get((key, side))
        if wiring is None:
            raise Unavailable(f"cabinet {key} has no {side} door")
        return wiring

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
        from drivers.gpio import GpioBus  # gpiozero: only a locker with a GPIO bus loads it

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
            self._health(bus.name, board, online)

        return KerongBus(bus, on_status, on_health=on_health, power_budget=budget)

    def _board_status(self, bus_name: str, board: int, status: BoardStatus | None) -> None:
        # The bus reports health (on_health) after this: doors first, then the board.
        for channel, key, side in self._points.get((bus_name, board), ()):
            is_open = None if status is None else not status.closed[channel - 1]
            self._sink.door_sensed(key, side, is_open)
            if side == "front":
                self._sink.item_sensed(key, None if status is None else status.items[channel - 1])

    def _health(self, bus_name: str, board: int, online: bool) -> None:
        """A board's health, and the bus's: all of its boards silent is one bus event
        (the cloud can tell a dead bus from a dead link)."""
        bus = self._kerong[bus_name]
        silent = not bus.connected or set(bus.silent_boards()) >= set(bus.boards)
        if silent and bus_name not in self._silent_buses:
            self._silent_buses.add(bus_name)
            if not bus.connected:  # the journal says which port, and why, once
                log.error(
                    "hardware.port_not_open", problem=not_open(bus_name, bus.port, bus.open_error)
                )
            self._sink.bus_health(bus_name, False)
        elif not silent and bus_name in self._silent_buses:
            self._silent_buses.discard(bus_name)
            self._sink.bus_health(bus_name, True)
        self._sink.board_health(bus_name, board, online)
