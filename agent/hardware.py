"""The bridge between the locker and its drivers.

Translates driver events (a lock board's bits, a GPIO switch) into door, item
and board readings for the locker, and the locker's "release", "drive" and
"indicate" into driver calls. The only module of ``agent`` that knows driver
classes; nothing here knows about the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from agent.cabinet import Side
from agent.config import Config, GpioBusConfig, GpioDoorWiring, KerongBusConfig, KerongDoorWiring
from agent.errors import Unavailable
from drivers.gpio import DoorMotor, GpioBus, GpioInput, Indicator, Relay
from drivers.kerong.bus import BoardStatus, BusUnavailable, KerongBus

log = structlog.get_logger(__name__)


class SensorSink(Protocol):
    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None: ...

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None: ...

    def item_sensed(self, key: int, present: bool) -> None: ...

    def board_health(self, bus: str, board: int, online: bool) -> None: ...


def pin_factory(name: str) -> Any:
    """gpiozero's pin factory by config name; None lets gpiozero choose."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
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
    wiring: GpioDoorWiring
    switch: GpioInput | None = None
    open_switch: GpioInput | None = None
    beam: GpioInput | None = None
    lock: Relay | None = None
    motor: DoorMotor | None = None


class Hardware:
    def __init__(
        self, config: Config, sink: SensorSink, *, gpio_factory: Any | None = None
    ) -> None:
        self._config = config
        self._sink = sink
        self._kerong: dict[str, KerongBus] = {}
        self._gpio: dict[str, GpioBus] = {}
        self._kerong_doors: dict[tuple[int, Side], tuple[str, int, int]] = {}
        self._gpio_doors: dict[tuple[int, Side], _GpioDoor] = {}
        self._indicators: dict[int, Indicator] = {}
        self._points: dict[tuple[str, int], list[tuple[int, int, Side]]] = {}
        self._heard: dict[str, set[int]] = {}
        self._offline: dict[str, set[int]] = {}
        self._ready = asyncio.Event()

        for bus in config.buses:
            if isinstance(bus, GpioBusConfig):
                factory = gpio_factory if gpio_factory is not None else pin_factory(bus.pin_factory)
                self._gpio[bus.name] = GpioBus(
                    bus.name,
                    pin_factory=factory,
                    max_concurrent=bus.max_concurrent,
                    stagger_s=bus.stagger_s,
                    pulse_s=bus.pulse_s,
                    motor_max_s=bus.motor_max_s,
                    debounce_s=bus.debounce_s,
                )
            else:
                self._add_kerong(bus)
        for key, side, wiring in config.door_refs():
            if isinstance(wiring, KerongDoorWiring):
                self._kerong_doors[(key, side)] = (wiring.bus, wiring.board, wiring.channel)
                self._points.setdefault((wiring.bus, wiring.board), []).append(
                    (wiring.channel, key, side)
                )
            else:
                self._gpio_doors[(key, side)] = _GpioDoor(wiring)
        self._expected = {
            b.name: set(b.boards) for b in config.buses if isinstance(b, KerongBusConfig)
        }
        if not self._expected:
            self._ready.set()

    def _add_kerong(self, bus: KerongBusConfig) -> None:
        self._heard[bus.name] = set()
        self._offline[bus.name] = set()
        self._kerong[bus.name] = KerongBus(
            bus.port,
            bus.boards,
            self._on_status_for(bus.name),
            baud=bus.baud,
            reply_timeout_s=bus.reply_timeout_s,
            poll_interval_s=bus.poll_interval_s,
            locked_bit=bus.locked_bit,
            pulse_s=bus.pulse_s,
            max_concurrent=bus.max_concurrent,
            stagger_s=bus.stagger_s,
            name=bus.name,
        )

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """GPIO outputs off first (also after a crash), then inputs read, then buses polled."""
        for cab in self._config.cabinets:
            self._build_gpio(cab.key)
        for bus in self._gpio.values():
            await bus.start()
        for (key, side), door in self._gpio_doors.items():
            assert door.switch is not None
            self._sink.door_sensed(key, side, not door.switch.value)
            if door.open_switch is not None:
                self._sink.door_fully_open(key, side, door.open_switch.value)
        for bus in self._kerong.values():
            await bus.start()

    async def close(self) -> None:
        for bus in self._gpio.values():
            await bus.close()
        for kerong in self._kerong.values():
            await kerong.close()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every board answered or was found silent; False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    # --- actuation -------------------------------------------------------------

    async def release(self, key: int, side: Side) -> None:
        if (key, side) in self._gpio_doors:
            relay = self._gpio_doors[(key, side)].lock
            if relay is None:
                raise Unavailable(f"cabinet {key} {side} door has no lock relay")
            await relay.pulse()
            return
        bus_name, board, channel = self._kerong_doors[(key, side)]
        try:
            await self._kerong[bus_name].unlock(board, channel)
        except BusUnavailable as exc:
            raise Unavailable(f"bus {bus_name}: {exc or 'port not open'}") from None

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        door = self._gpio_doors.get((key, side))
        if door is None or door.motor is None:
            raise Unavailable(f"cabinet {key} {side} door has no motor")
        until = door.open_switch if opening else door.switch
        assert until is not None
        # Closing, the beam (a hand, a bag) aborts; opening, it does not matter.
        abort = None if opening else door.beam
        if opening:
            return await door.motor.run(True, until)
        # The closed switch is active when shut: run until it is.
        return await door.motor.run(False, until, abort=abort)

    def indicate(self, key: int, pattern: str) -> None:
        indicator = self._indicators.get(key)
        if indicator is not None:
            indicator.show(pattern)

    def problems(self) -> list[str]:
        out = []
        for name, bus in self._kerong.items():
            if not bus.connected:
                out.append(f"bus {name}: port not open")
                continue
            out.extend(f"bus {name} board {b}: not answering" for b in sorted(self._offline[name]))
        return out

    # --- GPIO ------------------------------------------------------------------

    def _build_gpio(self, key: int) -> None:
        cab = self._config.cabinet(key)
        for side in ("front", "rear"):
            door = self._gpio_doors.get((key, side))
            if door is None:
                continue
            w, bus = door.wiring, self._gpio[door.wiring.bus]
            door.switch = bus.input(w.switch, self._closed_cb(key, side))
            if w.open_switch is not None:
                door.open_switch = bus.input(w.open_switch, self._fully_open_cb(key, side))
            if w.beam is not None:
                door.beam = bus.input(w.beam)
            if w.lock is not None:
                door.lock = bus.relay(w.lock)
            if w.motor_open is not None and w.motor_close is not None:
                door.motor = bus.motor(w.motor_open, w.motor_close)
        if cab.item is not None:
            item = self._gpio[cab.item.bus].input(
                cab.item.pin, lambda present: self._sink.item_sensed(key, present)
            )
            self._sink.item_sensed(key, item.value)
        if cab.indicator is not None:
            ind = cab.indicator
            self._indicators[key] = self._gpio[ind.bus].rgb(ind.red, ind.green, ind.blue)

    def _closed_cb(self, key: int, side: Side) -> Callable[[bool], None]:
        return lambda closed: self._sink.door_sensed(key, side, not closed)

    def _fully_open_cb(self, key: int, side: Side) -> Callable[[bool], None]:
        return lambda fully: self._sink.door_fully_open(key, side, fully)

    # --- Kerong ----------------------------------------------------------------

    def _on_status_for(self, bus_name: str) -> Callable[[int, BoardStatus | None], None]:
        def on_status(board: int, status: BoardStatus | None) -> None:
            self._board_status(bus_name, board, status)

        return on_status

    def _board_status(self, bus_name: str, board: int, status: BoardStatus | None) -> None:
        # Doors first, then the board event: the event then carries no stale door state.
        for channel, key, side in self._points.get((bus_name, board), ()):
            is_open = None if status is None else not status.closed[channel - 1]
            self._sink.door_sensed(key, side, is_open)
            if status is not None and side == "front":
                self._sink.item_sensed(key, status.items[channel - 1])
        offline = self._offline[bus_name]
        if status is None and board not in offline:
            offline.add(board)
            self._sink.board_health(bus_name, board, False)
        elif status is not None and board in offline:
            offline.discard(board)
            self._sink.board_health(bus_name, board, True)
        if not self._ready.is_set():
            self._heard[bus_name].add(board)
            if all(self._heard[n] >= boards for n, boards in self._expected.items()):
                self._ready.set()
