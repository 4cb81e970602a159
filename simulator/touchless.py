"""A touchless locker on GPIO, played from outside through gpiozero's mock pins.

What it plays, per cabinet of the config whose parts are wired to GPIO:

- a motorised front door: a position from 0.0 (shut) to 1.0 (fully open) that
  moves at ``1 / travel_s`` per second while exactly one of its motor outputs is
  energised; its closed switch is active iff the position is 0, its open end
  switch iff the position is 1. Both motor outputs energised at once moves
  nothing and is logged as a fault. Something in the doorway (the light beam)
  physically stops a closing door;
- a latch door (a rear-load door, usually): a pulse of its lock relay releases
  the latch and the door springs open, unless the latch is jammed;
- an item sensor, and an RGB indicator read back from its three output pins.

The agent is not told any of this: it creates its gpiozero devices on the same
``MockFactory`` in its own ``start()``, drives the outputs and reads the inputs,
exactly as on a Raspberry Pi. This class watches the output pins (a 10 ms loop
task, plus an edge counter on each output so no relay pulse is missed) and
drives the input pins with the physical level each one would have: an
active-low input (``"!"``) is driven low while active. Inputs are held by the
simulated world: a pull resistor the agent configures cannot override a switch
that shorts the line (a plain ``MockPin`` drives itself to its pull when its
pull is set; ours do not while the world holds them).

Start it *before* the agent, on a factory nothing has used yet: ``start()``
claims the configured pin numbers with its own pin classes and sets every
input to the level of a quiet locker (doors shut, beams clear, no items), so
the agent's first read is consistent.

gpiozero's stock ``MockFactory`` only knows the GPIOs of a real board's header
(0-27 on its default Pi 3B, 0-45 on a compute module); :func:`mock_factory`
gives one with the whole BCM bank 0-53, which the config allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from gpiozero.compat import frozendict
from gpiozero.exc import PinInvalidPin
from gpiozero.pins import HeaderInfo, PinInfo
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from agent.config import Config, GpioDoorWiring
from drivers.gpio import MAX_PIN, PinSpec, parse_pin

log = structlog.get_logger(__name__)

Side = Literal["front", "rear"]
RGB = tuple[float, float, float]
ChangeCallback = Callable[[int], None]

TICK_S = 0.01  # how often the outputs are looked at and the doors moved
MAX_STEP_S = 0.05  # the most a door moves in one step, in seconds of travel
FORCED_POSITION = 0.2  # how far a forced door opens: off the closed switch, not to the end
_ROUND = 4  # digits kept when deciding whether something changed, and in snapshots


# ------------------------------------------------------------------- pins


class _WorldInputMixin:
    """An input line the simulated world holds at a level: a pull resistor loses.

    ``MockPin`` drives itself to its pull whenever the pull is set (a
    ``DigitalInputDevice(pull_up=True)`` does that while it is created); a real
    switch shorting the line to ground wins over a pull-up, so while the world
    holds a level the pull only changes the recorded pull.
    """

    held: bool | None = None
    _pulling = False

    def hold(self, level: bool) -> None:
        self.held = bool(level)
        self._reassert()

    def _reassert(self) -> None:
        if self.held is None or self._function != "input":  # type: ignore[attr-defined]
            return
        if self.held:
            super().drive_high()  # type: ignore[misc]
        else:
            super().drive_low()  # type: ignore[misc]

    def _set_pull(self, value: str) -> None:
        self._pulling = True
        try:
            super()._set_pull(value)  # type: ignore[misc]
        finally:
            self._pulling = False
        self._reassert()

    def drive_high(self) -> None:
        if not (self._pulling and self.held is not None):
            super().drive_high()  # type: ignore[misc]

    def drive_low(self) -> None:
        if not (self._pulling and self.held is not None):
            super().drive_low()  # type: ignore[misc]


class _WorldOutputMixin:
    """An output line the simulated world watches: counts every energising edge.

    ``energised`` takes the wiring's polarity into account (an active-low relay
    is energised while the line is low) and is False while the line is not an
    output at all (before the agent creates its device, after it closes it).
    """

    active_low = False
    energised_count = 0
    _closing = False

    @property
    def energised(self) -> bool:
        if self._function != "output":  # type: ignore[attr-defined]
            return False
        return (float(self._state) >= 0.5) != self.active_low  # type: ignore[attr-defined]

    @property
    def brightness(self) -> float:
        """The light an LED on this line gives, 0-1 (PWM duty cycle, polarity applied)."""
        if self._function != "output":  # type: ignore[attr-defined]
            return 0.0
        level = float(self._state)  # type: ignore[attr-defined]
        return 1.0 - level if self.active_low else level

    def _change_state(self, value: Any) -> bool:
        before = self.energised
        changed = bool(super()._change_state(value))  # type: ignore[misc]
        if changed and not before and self.energised and not self._closing:
            self.energised_count += 1
        return changed

    def close(self) -> None:
        # Closing a PWM pin writes 0 to it on the way back to input: for an
        # active-low relay that is no pulse, the device is going away.
        self._closing = True
        try:
            super().close()  # type: ignore[misc]
        finally:
            self._closing = False


class _InputPin(_WorldInputMixin, MockPin):
    pass


class _InputPWMPin(_WorldInputMixin, MockPWMPin):
    pass


class _OutputPin(_WorldOutputMixin, MockPin):
    pass


class _OutputPWMPin(_WorldOutputMixin, MockPWMPin):
    pass


class FullBankMockFactory(MockFactory):
    """gpiozero's ``MockFactory`` with every BCM GPIO 0-53 on its board.

    The board of the configured revision keeps its header (and its fixed pulls,
    e.g. GPIO2/3 pulled up); the GPIOs it lacks are added on an extra header
    ``SIM``, so a locker wired past the Pi's 40-pin header can be simulated.
    """

    _widened = False

    def _get_board_info(self) -> Any:
        info = super()._get_board_info()
        if self._widened:
            return info
        present = {
            name
            for header in info.headers.values()
            for pin in header.pins.values()
            for name in pin.names
            if isinstance(name, int)
        }
        missing = [n for n in range(MAX_PIN + 1) if n not in present]
        if missing:
            pins = {
                row: PinInfo(
                    number=row,
                    name=f"GPIO{n}",
                    names=frozenset({n, str(n), f"GPIO{n}", f"BCM{n}", f"SIM:{row}"}),
                    pull="",
                    row=row,
                    col=1,
                    interfaces=frozenset({"gpio"}),
                )
                for row, n in enumerate(missing, start=1)
            }
            headers = dict(info.headers)
            headers["SIM"] = HeaderInfo(
                name="SIM", rows=len(pins), columns=1, pins=frozendict(pins)
            )
            info = info._replace(headers=frozendict(headers))
            self._info = info
        self._widened = True
        return info


def mock_factory() -> MockFactory:
    """A fresh mock pin factory for the simulator: PWM pins, BCM GPIO 0-53."""
    return FullBankMockFactory(pin_class=MockPWMPin)


# ------------------------------------------------------------------- the model


@dataclass(slots=True)
class _Input:
    spec: PinSpec
    pin: Any  # _InputPin | _InputPWMPin

    def set(self, active: bool) -> None:
        # Active-low: the switch pulls the line to ground while active.
        self.pin.hold(bool(active) != self.spec.active_low)


@dataclass(slots=True)
class _Output:
    spec: PinSpec
    pin: Any  # _OutputPin | _OutputPWMPin

    @property
    def on(self) -> bool:
        return bool(self.pin.energised)


@dataclass(slots=True)
class _Door:
    side: Side
    switch: _Input  # active while shut
    open_switch: _Input | None = None  # active while fully open
    beam: _Input | None = None  # active while something is in the doorway
    lock: _Output | None = None
    motor_open: _Output | None = None
    motor_close: _Output | None = None
    position: float = 0.0  # 0 shut .. 1 fully open
    blocked: bool = False  # something in the doorway
    motor_broken: bool = False  # the motor runs, the door does not move
    jammed: bool = False  # the latch does not let go
    pulses: int = 0  # lock pulses seen
    pulses_seen: int = 0  # the lock pin's energising edges already handled
    motor: str | None = None  # "opening" / "closing" / "fault" / None, as last stepped
    auto_shut: asyncio.TimerHandle | None = None

    @property
    def motorised(self) -> bool:
        return self.motor_open is not None and self.motor_close is not None

    @property
    def shut(self) -> bool:
        return self.position <= 0.0

    def update_inputs(self) -> None:
        self.switch.set(self.position <= 0.0)
        if self.open_switch is not None:
            self.open_switch.set(self.position >= 1.0)
        if self.beam is not None:
            self.beam.set(self.blocked)

    def view(self) -> dict[str, Any]:
        return {
            "position": round(self.position, _ROUND),
            "closed": self.position <= 0.0,
            "fully_open": self.position >= 1.0,
            "motorised": self.motorised,
            "motor": _motor_state(self),
            "motor_broken": self.motor_broken,
            "beam": None if self.beam is None else self.blocked,
            "latch": self.lock is not None,
            "jammed": self.jammed,
            "lock_pulses": self.pulses,
        }


@dataclass(slots=True)
class _Cabinet:
    key: int
    doors: dict[str, _Door] = field(default_factory=dict)
    item: _Input | None = None
    item_present: bool = False
    led: tuple[_Output, _Output, _Output] | None = None

    def color(self) -> RGB | None:
        if self.led is None:
            return None
        r, g, b = (round(o.pin.brightness, _ROUND) for o in self.led)
        return (r, g, b)

    def view(self) -> dict[str, Any]:
        color = self.color()
        return {
            "key": self.key,
            "front": self.doors["front"].view() if "front" in self.doors else None,
            "rear": self.doors["rear"].view() if "rear" in self.doors else None,
            "item": None if self.item is None else self.item_present,
            "led": None if color is None else list(color),
        }


class TouchlessLocker:
    """The GPIO side of ``config``'s cabinets, on the mock pins of ``factory``.

    Person actions (``push_open``, ``shut_front``, ``shut_rear``,
    ``block_beam``, ``set_item``) and faults (``motor_broken``, ``jam_latch``)
    act at once; motors move the doors from the loop task. ``on_change(key)``
    is called whenever anything a web view shows of that cabinet changes.
    """

    def __init__(self, config: Config, factory: MockFactory, *, travel_s: float = 1.5) -> None:
        if travel_s <= 0:
            raise ValueError(f"travel_s must be > 0, not {travel_s}")
        if not isinstance(factory, MockFactory):
            raise TypeError("the touchless locker plays gpiozero mock pins: pass a MockFactory")
        self.config = config
        self.factory = factory
        self.travel_s = travel_s
        # A simulated staff member shuts a rear door this long after it opened.
        self.auto_shut_rear_after: float | None = None
        self.on_change: ChangeCallback | None = None
        self._pwm = issubclass(factory.pin_class, MockPWMPin)
        self._cabinets: dict[int, _Cabinet] = {}
        self._claimed: set[int] = set()
        self._build()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_tick = 0.0
        self._views: dict[int, dict[str, Any]] = {}
        self._levels_set = False  # the inputs have been driven (start() ran once)

    @classmethod
    def from_config(
        cls, config: Config, factory: MockFactory | None = None, *, travel_s: float = 1.5
    ) -> TouchlessLocker:
        """The locker on ``factory``, or on a fresh :func:`mock_factory` (see ``.factory``)."""
        return cls(config, factory if factory is not None else mock_factory(), travel_s=travel_s)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Claim the pins, set a quiet locker's input levels, start watching. Before the agent."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        for cabinet in self._cabinets.values():
            for door in cabinet.doors.values():
                door.pulses_seen = door.lock.pin.energised_count if door.lock else 0
                door.update_inputs()
            if cabinet.item is not None:
                cabinet.item.set(cabinet.item_present)
        self._levels_set = True
        self._views = {key: cab.view() for key, cab in self._cabinets.items()}
        self._last_tick = self._loop.time()
        self._task = self._loop.create_task(self._run(), name="touchless-locker")
        log.info(
            "touchless locker started",
            cabinets=list(self._cabinets),
            pins=len(self._claimed),
            travel_s=self.travel_s,
        )

    async def close(self) -> None:
        """Stop watching; the inputs keep their last levels. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for cabinet in self._cabinets.values():
            for door in cabinet.doors.values():
                if door.auto_shut is not None:
                    door.auto_shut.cancel()
                    door.auto_shut = None
        log.info("touchless locker closed")

    @property
    def keys(self) -> list[int]:
        """The cabinets this simulator plays."""
        return list(self._cabinets)

    # -- people and faults -----------------------------------------------------

    def push_open(self, key: int) -> None:
        """Someone forces the front door: it leaves its closed switch, not fully open."""
        door = self._door(key, "front")
        if door.position < FORCED_POSITION:
            log.info("simulated person forces door", key=key, side="front")
            door.position = FORCED_POSITION
            self._touched(key, door)

    def shut_front(self, key: int) -> None:
        """Someone pushes the front door shut."""
        self._shut(key, "front")

    def shut_rear(self, key: int) -> None:
        """Staff shut the rear door; the latch catches it."""
        self._shut(key, "rear")

    def block_beam(self, key: int, on: bool = True) -> None:
        """Something in the front doorway (a hand, a bag): a closing door stops."""
        door = self._door(key, "front")
        if door.beam is None:
            raise ValueError(f"cabinet {key} front door has no light beam")
        if door.blocked != on:
            log.info("simulated beam", key=key, blocked=on)
            door.blocked = on
            self._touched(key, door)

    def set_item(self, key: int, present: bool) -> None:
        """An item is put in (True) or taken out (False)."""
        cabinet = self._cabinet(key)
        if cabinet.item is None:
            raise ValueError(f"cabinet {key} has no item sensor")
        if cabinet.item_present != present:
            cabinet.item_present = present
            cabinet.item.set(present)
            self._notify(key)

    def motor_broken(self, key: int, on: bool = True, *, side: Side = "front") -> None:
        """The door motor runs but the door does not move: no end switch is ever reached."""
        door = self._door(key, side)
        if not door.motorised:
            raise ValueError(f"cabinet {key} {side} door has no motor")
        door.motor_broken = on
        log.info("simulated motor fault", key=key, side=side, broken=on)
        self._notify(key)

    def jam_latch(self, key: int, on: bool = True, *, side: Side = "rear") -> None:
        """The latch does not let go: a lock pulse leaves the door shut."""
        door = self._door(key, side)
        if door.lock is None:
            raise ValueError(f"cabinet {key} {side} door has no lock relay")
        door.jammed = on
        log.info("simulated latch jam", key=key, side=side, jammed=on)
        self._notify(key)

    # -- observation -----------------------------------------------------------

    def position(self, key: int, side: Side = "front") -> float:
        """0.0 shut .. 1.0 fully open."""
        return self._door(key, side).position

    def rear_open(self, key: int) -> bool:
        return not self._door(key, "rear").shut

    def motor(self, key: int, side: Side = "front") -> str | None:
        """What the motor outputs do now: "opening", "closing", "fault" (both) or None."""
        return _motor_state(self._door(key, side))

    def lock_pulses(self, key: int, side: Side = "rear") -> int:
        """How many lock pulses the door's relay has had."""
        door = self._door(key, side)
        if door.lock is None:
            return 0
        # Also the pulses the loop has not stepped over yet (without taking them).
        return door.pulses + max(0, door.lock.pin.energised_count - door.pulses_seen)

    def led(self, key: int) -> RGB:
        """The indicator's colour now, (r, g, b) each 0-1, polarity applied."""
        color = self._cabinet(key).color()
        if color is None:
            raise ValueError(f"cabinet {key} has no indicator")
        return color

    def snapshot(self) -> dict[str, Any]:
        """Every simulated cabinet, JSON-able, for the web view."""
        return {
            "travel_s": self.travel_s,
            "auto_shut_rear_after": self.auto_shut_rear_after,
            "running": self._task is not None,
            "cabinets": [cab.view() for cab in self._cabinets.values()],
        }

    # -- internals: building ---------------------------------------------------

    def _build(self) -> None:
        """The cabinets the config puts on GPIO, their pins claimed on the factory.

        Claiming a pin only creates its mock pin object (no gpiozero device): the
        agent's devices find it there when they ask the factory for that number.
        """
        for cab in self.config.cabinets:
            cabinet = _Cabinet(cab.key)
            for side in ("front", "rear"):
                wiring = getattr(cab, side)
                if not isinstance(wiring, GpioDoorWiring):
                    continue
                door = _Door(side, self._input(wiring.switch))
                if wiring.open_switch is not None:
                    door.open_switch = self._input(wiring.open_switch)
                if wiring.beam is not None:
                    door.beam = self._input(wiring.beam)
                if wiring.lock is not None:
                    door.lock = self._output(wiring.lock)
                if wiring.motor_open is not None and wiring.motor_close is not None:
                    door.motor_open = self._output(wiring.motor_open)
                    door.motor_close = self._output(wiring.motor_close)
                cabinet.doors[side] = door
            if cab.item is not None:
                cabinet.item = self._input(cab.item.pin)
            if cab.indicator is not None:
                ind = cab.indicator
                cabinet.led = (
                    self._output(ind.red),
                    self._output(ind.green),
                    self._output(ind.blue),
                )
            if cabinet.doors or cabinet.item is not None or cabinet.led is not None:
                self._cabinets[cab.key] = cabinet
        if not self._cabinets:
            raise ValueError("no cabinet of this config has anything on GPIO")

    def _claim(self, text: str | int, cls: type) -> tuple[PinSpec, Any]:
        spec = parse_pin(text)
        if spec.number in self._claimed:
            raise ValueError(f"GPIO{spec.number} is wired twice in this config")
        self._claimed.add(spec.number)
        try:
            pin = self.factory.pin(spec.number, pin_class=cls)
        except PinInvalidPin:
            raise ValueError(
                f"GPIO{spec.number} is not on this mock factory's board"
                " (use simulator.touchless.mock_factory(): it has GPIO 0-53)"
            ) from None
        if not isinstance(pin, cls):
            raise RuntimeError(
                f"GPIO{spec.number} was already used on this factory before the simulator"
                " started: start the TouchlessLocker first, on a fresh factory"
            )
        return spec, pin

    def _input(self, text: str | int) -> _Input:
        spec, pin = self._claim(text, _InputPWMPin if self._pwm else _InputPin)
        return _Input(spec, pin)

    def _output(self, text: str | int) -> _Output:
        spec, pin = self._claim(text, _OutputPWMPin if self._pwm else _OutputPin)
        pin.active_low = spec.active_low
        return _Output(spec, pin)

    # -- internals: the world --------------------------------------------------

    def _cabinet(self, key: int) -> _Cabinet:
        try:
            return self._cabinets[key]
        except KeyError:
            raise ValueError(f"cabinet {key} is not simulated here") from None

    def _door(self, key: int, side: Side) -> _Door:
        door = self._cabinet(key).doors.get(side)
        if door is None:
            raise ValueError(f"cabinet {key} has no {side} door on GPIO")
        return door

    def _shut(self, key: int, side: Side) -> None:
        door = self._door(key, side)
        if door.position > 0.0:
            log.info("simulated person shuts door", key=key, side=side)
            door.position = 0.0
            self._touched(key, door)

    def _touched(self, key: int, door: _Door) -> None:
        """A door's physical state changed: inputs, auto-shut, observers."""
        if self._levels_set:
            door.update_inputs()
        self._schedule_auto_shut(key, door)
        self._notify(key)

    def _schedule_auto_shut(self, key: int, door: _Door) -> None:
        if door.side != "rear":
            return
        if door.shut:
            if door.auto_shut is not None:
                door.auto_shut.cancel()
                door.auto_shut = None
            return
        if (
            door.auto_shut is None
            and self.auto_shut_rear_after is not None
            and self._loop is not None
            and self._task is not None
        ):
            door.auto_shut = self._loop.call_later(
                self.auto_shut_rear_after, self._auto_shut_now, key, door
            )

    def _auto_shut_now(self, key: int, door: _Door) -> None:
        door.auto_shut = None
        self._shut(key, door.side)

    def _notify(self, key: int) -> None:
        cabinet = self._cabinets[key]
        view = cabinet.view()
        if self._views.get(key) == view:
            return
        self._views[key] = view
        if self.on_change is not None:
            try:
                self.on_change(key)
            except Exception:
                # An observer's bug must not stop the doors.
                log.exception("on_change observer failed", key=key)

    def _take_pulses(self, door: _Door) -> bool:
        """Count new lock pulses; True if there were any."""
        if door.lock is None:
            return False
        count = door.lock.pin.energised_count
        new = count - door.pulses_seen
        door.pulses_seen = count
        if new <= 0:
            return False
        door.pulses += new
        return True

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(TICK_S)
            now = self._loop.time()
            # A stalled loop (a busy test machine) slows the doors down instead of
            # making them jump past a switch or a beam in one step.
            dt, self._last_tick = min(now - self._last_tick, MAX_STEP_S), now
            try:
                self._step(dt)
            except Exception:
                log.exception("touchless locker step failed")

    def _step(self, dt: float) -> None:
        for key, cabinet in self._cabinets.items():
            for door in cabinet.doors.values():
                before = door.position
                if self._take_pulses(door) and not door.motorised:
                    self._release(key, door)
                if door.motorised:
                    self._move(key, door, dt)
                if door.position != before:
                    door.update_inputs()
                    self._schedule_auto_shut(key, door)
            self._notify(key)

    def _release(self, key: int, door: _Door) -> None:
        """A lock pulse on a latch door: it springs open unless the latch is jammed."""
        if door.jammed:
            log.info("simulated latch jammed: door stays shut", key=key, side=door.side)
            return
        if door.shut:
            log.info("simulated latch released: door springs open", key=key, side=door.side)
            door.position = 1.0

    def _move(self, key: int, door: _Door, dt: float) -> None:
        state = _motor_state(door)
        if state != door.motor:
            if state == "fault":
                log.error("simulated motor fault: both directions energised", key=key)
            door.motor = state
        if state is None or state == "fault" or door.motor_broken:
            return
        step = dt / self.travel_s
        if state == "opening":
            door.position = min(1.0, door.position + step)
        elif not door.blocked:  # a closing door cannot push through what is in the way
            door.position = max(0.0, door.position - step)


def _motor_state(door: _Door) -> str | None:
    if door.motor_open is None or door.motor_close is None:
        return None
    opening, closing = door.motor_open.on, door.motor_close.on
    if opening and closing:
        return "fault"
    if opening:
        return "opening"
    if closing:
        return "closing"
    return None
