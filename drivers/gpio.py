"""Doors wired straight to the host's GPIO pins, driven from asyncio through gpiozero.

One ``GpioBus`` owns the pins of one power supply: door switches and item sensors
(``input``), lock relays that get a latch pulse (``relay``), door motors driven
until an end switch (``motor``) and one RGB indicator per cabinet (``rgb``).

Pin specs follow Klipper: a BCM number (``17``, ``"17"``, ``"GPIO17"``) with the
optional prefixes ``^`` (pull-up, inputs only) and ``!`` (active low), in either
order. How they map onto gpiozero's inputs (gpiozero ties ``pull_up=True`` to
"low is active", so pull-up + active high needs the pull set by hand):

    spec    pull      active when   gpiozero
    "5"     floating  high          pull_up=None, active_state=True
    "!5"    floating  low           pull_up=None, active_state=False
    "^!5"   up        low           pull_up=True               (switch to ground)
    "^5"    up        high          pull_up=None, active_state=True, then pin.pull="up"

Outputs are ``DigitalOutputDevice(pin, active_high=not active_low,
initial_value=False)``: created off, so a restart after a crash clears whatever
the dead process left on (a released line may keep its level). ``close()`` drives
every output off, then releases the pins; lgpio turns a released pin into a
floating input, so relay and motor drivers need a resistor that holds them off
(most relay modules have one).

Safety lives here, not in the caller: every relay pulse and motor run is cut to
``pulse_max_s`` / ``motor_max_s`` whatever is asked, holds a slot of the power
budget, and is switched off in a ``finally`` (also when cancelled). A
``threading.Timer`` backstop switches the output off shortly after its limit even
if the event loop hangs (Klipper's ``maximum_mcu_duration`` idea, host-side).

Threads: gpiozero calls input callbacks on its own thread; they only hand the raw
level to the loop with ``call_soon_threadsafe``. Debouncing is ours (``Debouncer``,
pure, driven by ``loop.time()``): gpiozero's ``bounce_time`` differs between pin
factories and mock pins do not bounce at all.

Pin factories: ``pin_factory=None`` means gpiozero's default. On a Raspberry Pi 5
that must be lgpio (``python3-lgpio`` / ``pip install lgpio``, or
``GPIOZERO_PIN_FACTORY=lgpio``): otherwise gpiozero falls back to its slow native
factory with only a warning, which ``start()`` logs as ``gpio.slow_factory``.
Tests pass a ``MockFactory`` (``pin_class=MockPWMPin`` for dim indicator colours).
"""

from __future__ import annotations

import asyncio
import colorsys
import contextlib
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from gpiozero import RGBLED, DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import DeviceClosed, PinPWMUnsupported
from gpiozero.pins import Factory

from drivers.power import PowerBudget

log = structlog.get_logger(__name__)

# BCM numbers of the BCM2835 family (compute modules expose more than the header's 0-27).
MAX_PIN = 53
# The thread backstop fires this long after an output's own limit: late enough never
# to race a healthy loop, early enough to matter when the loop hangs.
_BACKSTOP_MARGIN_S = 0.25
# A DC motor reversed at full speed shorts its back-EMF through the driver: let it
# stop for this long before driving it the other way.
_REVERSE_PAUSE_S = 0.2

RGB = tuple[float, float, float]

PATTERNS = (
    "off",
    "ready",  # multi-colour cycling
    "about_to_open",  # blue
    "open",  # green: open or opening
    "closing",  # flashing yellow, then red
    "cloud_unreachable",  # flashing red
    "no_internet",  # dull red
    "disabled",  # dim white, steady
)
OFF: RGB = (0.0, 0.0, 0.0)
RED: RGB = (1.0, 0.0, 0.0)
GREEN: RGB = (0.0, 1.0, 0.0)
BLUE: RGB = (0.0, 0.0, 1.0)
YELLOW: RGB = (1.0, 1.0, 0.0)
DULL_RED: RGB = (0.15, 0.0, 0.0)
DIM_WHITE: RGB = (0.15, 0.15, 0.15)
_STEADY: dict[str, RGB] = {
    "off": OFF,
    "about_to_open": BLUE,
    "open": GREEN,
    "no_internet": DULL_RED,
    "disabled": DIM_WHITE,
}
_CYCLE_STEP_S = 0.05  # colour update interval of "ready"


# ------------------------------------------------------------------- pin specs


@dataclass(frozen=True, slots=True)
class PinSpec:
    number: int  # BCM
    pull_up: bool
    active_low: bool

    def __str__(self) -> str:
        return f"{'^' if self.pull_up else ''}{'!' if self.active_low else ''}GPIO{self.number}"


_PIN_RE = re.compile(r"(?:GPIO)?(\d{1,2})", re.IGNORECASE)


def parse_pin(spec: int | str) -> PinSpec:
    """``17``, ``"17"``, ``"GPIO17"``, with optional ``^`` (pull-up) and ``!`` (active
    low) prefixes. BCM numbers only (no ``BOARD11``). Raises ValueError."""
    if isinstance(spec, bool):
        raise ValueError(f"pin {spec!r}: expected a BCM number or a string like '^!GPIO5'")
    if isinstance(spec, int):
        number, pull_up, active_low = spec, False, False
    elif isinstance(spec, str):
        rest = spec.strip()
        pull_up = active_low = False
        while rest[:1] in ("^", "!"):
            if rest[0] == "^":
                if pull_up:
                    raise ValueError(f"pin {spec!r}: '^' given twice")
                pull_up = True
            else:
                if active_low:
                    raise ValueError(f"pin {spec!r}: '!' given twice")
                active_low = True
            rest = rest[1:]
        match = _PIN_RE.fullmatch(rest)
        if match is None:
            raise ValueError(f"pin {spec!r}: expected a BCM number like 17 or 'GPIO17'")
        number = int(match.group(1))
    else:
        raise ValueError(f"pin {spec!r}: expected a BCM number or a string like '^!GPIO5'")
    if not 0 <= number <= MAX_PIN:
        raise ValueError(f"pin {spec!r}: BCM number must be between 0 and {MAX_PIN}")
    return PinSpec(number, pull_up, active_low)


# ------------------------------------------------------------------- debouncer


class Debouncer:
    """A level counts once it has held for ``stable_s``; pure, for any clock.

    Every change of the raw level restarts the window; going back to the debounced
    value inside the window cancels the pending change.
    """

    def __init__(self, stable_s: float, initial: bool) -> None:
        if stable_s < 0:
            raise ValueError(f"stable_s must be >= 0, not {stable_s}")
        self.stable_s = stable_s
        self.value = initial
        self._pending: bool | None = None
        self._since = 0.0

    def feed(self, raw: bool, now: float) -> None:
        """A raw edge or level seen at ``now``."""
        raw = bool(raw)
        if raw == self.value:
            self._pending = None
        elif self._pending is None:
            self._pending = raw
            self._since = now
        # else: the same new level seen again; it has held since `_since`

    def poll(self, now: float) -> bool | None:
        """The new debounced value if it settled by ``now``, else None."""
        if self._pending is None or now < self._since + self.stable_s:
            return None
        self.value = self._pending
        self._pending = None
        return self.value

    def due(self) -> float | None:
        """When poll() may settle the pending change; None if nothing is pending."""
        return None if self._pending is None else self._since + self.stable_s


# --------------------------------------------------------------------- outputs


def _quiet_off(device: Any) -> None:
    with contextlib.suppress(DeviceClosed):
        device.off()


class _Output:
    """One digital output whose "on" always has a deadline.

    ``on(limit_s)`` arms a thread timer that switches the output off at
    ``limit_s + _BACKSTOP_MARGIN_S`` unless ``off()`` came first: the asyncio code
    normally switches off in time, the timer covers a hung loop. A generation
    counter keeps a late timer from cutting a later activation short.
    """

    def __init__(self, device: DigitalOutputDevice, spec: PinSpec) -> None:
        self.device = device
        self.number = spec.number
        self.name = str(spec)
        self._lock = threading.Lock()
        self._generation = 0
        self._timer: threading.Timer | None = None

    @property
    def is_on(self) -> bool:
        try:
            return bool(self.device.value)
        except DeviceClosed:
            return False

    def on(self, limit_s: float) -> None:
        with self._lock:
            self._cancel_timer()
            self._generation += 1
            self.device.on()
            timer = threading.Timer(
                limit_s + _BACKSTOP_MARGIN_S, self._backstop, (self._generation,)
            )
            timer.daemon = True
            self._timer = timer
        timer.start()

    def off(self) -> None:
        with self._lock:
            self._cancel_timer()
            self._generation += 1
            _quiet_off(self.device)

    def close(self) -> None:
        self.off()
        self.device.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _backstop(self, generation: int) -> None:  # on the timer thread
        with self._lock:
            if generation != self._generation:
                return
            self._generation += 1
            self._timer = None
            _quiet_off(self.device)
        log.error("gpio.backstop_off", output=self.name)


class Relay:
    """A lock relay: short latch pulses, never longer than ``pulse_max_s``."""

    def __init__(self, bus: GpioBus, output: _Output) -> None:
        self._bus = bus
        self._output = output
        self._lock = asyncio.Lock()  # pulses of one relay do not overlap

    @property
    def name(self) -> str:
        return self._output.name

    @property
    def is_on(self) -> bool:
        return self._output.is_on

    async def pulse(self, seconds: float | None = None) -> None:
        """On for ``seconds`` (default ``pulse_s``), cut to ``pulse_max_s``, inside the
        power budget; off again even if cancelled."""
        duration = self._bus.pulse_s if seconds is None else seconds
        if duration <= 0:
            raise ValueError(f"pulse length must be > 0, not {duration}")
        if duration > self._bus.pulse_max_s:
            log.warning(
                "gpio.pulse_capped", relay=self.name, asked=duration, max=self._bus.pulse_max_s
            )
            duration = self._bus.pulse_max_s
        async with self._lock, self._bus.power():
            self._bus._check_open()
            log.info("gpio.pulse", relay=self.name, seconds=duration)
            try:
                self._output.on(duration)
                # Sleep, but end early when the bus closes (the relay is off then).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration):
                        await self._bus._closing.wait()
            finally:
                self._output.off()

    def off(self) -> None:
        self._output.off()


class DoorMotor:
    """A door motor on two outputs (two relays, or the two inputs of an H-bridge at
    full speed): ``forward`` on = one direction, ``backward`` on = the other.

    One run at a time: a second ``run`` waits for the first; to reverse a moving
    door, cancel its run. The two outputs are never on together: every drive
    switches the other side off first, and both are off between runs.
    """

    def __init__(self, bus: GpioBus, forward: _Output, backward: _Output) -> None:
        self._bus = bus
        self._forward = forward
        self._backward = backward
        self._lock = asyncio.Lock()
        self._last_forward: bool | None = None
        self._stopped_at = float("-inf")

    @property
    def name(self) -> str:
        return f"{self._forward.name}/{self._backward.name}"

    @property
    def direction(self) -> str | None:
        """Which side is on: "forward", "backward", or None when stopped."""
        if self._forward.is_on:
            return "forward"
        if self._backward.is_on:
            return "backward"
        return None

    async def run(
        self,
        forward: bool,
        until: GpioInput,
        max_s: float | None = None,
        abort: GpioInput | None = None,
    ) -> bool:
        """Drive until ``until`` is active (True); False if ``abort`` became active or
        ``min(max_s, motor_max_s)`` elapsed. Stopped before returning, also when cancelled."""
        limit = self._bus.motor_max_s if max_s is None else min(max_s, self._bus.motor_max_s)
        async with self._lock:
            settled = self._settled(until, abort)
            if settled is not None:
                return settled
            if limit <= 0:
                return False
            if self._last_forward is not None and self._last_forward != forward:
                pause = self._stopped_at + _REVERSE_PAUSE_S - self._bus.clock()
                if pause > 0:
                    await asyncio.sleep(pause)
            async with self._bus.power():
                self._bus._check_open()
                # The door may have got there (or been blocked) while we waited.
                settled = self._settled(until, abort)
                if settled is not None:
                    return settled
                on, other = (
                    (self._forward, self._backward) if forward else (self._backward, self._forward)
                )
                start = self._bus.clock()
                outcome = "interrupted"  # cancelled, or on() failed
                log.info("gpio.motor_run", motor=self.name, forward=forward, max_s=limit)
                try:
                    other.off()  # interlock: never both sides
                    self._last_forward = forward
                    on.on(limit)
                    outcome = await self._wait(until, abort, limit)
                finally:
                    self.stop()
                    elapsed = round(self._bus.clock() - start, 3)
                    if outcome == "timeout":
                        # Commanded motion without the end switch: jammed, blocked or
                        # a broken switch. The caller decides; we only stop.
                        log.warning("gpio.motor_timeout", motor=self.name, elapsed=elapsed)
                    else:
                        log.info(
                            "gpio.motor_done", motor=self.name, outcome=outcome, elapsed=elapsed
                        )
                return outcome == "reached"

    @staticmethod
    def _settled(until: GpioInput, abort: GpioInput | None) -> bool | None:
        if until.value:
            return True
        if abort is not None and abort.value:
            return False
        return None

    async def _wait(self, until: GpioInput, abort: GpioInput | None, limit: float) -> str:
        reached = asyncio.ensure_future(until.wait_for(True))
        # Closing the bus ends the run at once (its inputs are gone with it).
        waits = [reached, asyncio.ensure_future(self._bus._closing.wait())]
        if abort is not None:
            waits.append(asyncio.ensure_future(abort.wait_for(True)))
        try:
            async with asyncio.timeout(limit):
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            return "timeout"
        finally:
            for task in waits:
                task.cancel()
        if reached.done() and not reached.cancelled():
            return "reached"
        return "closed" if self._bus._closed else "aborted"

    def stop(self) -> None:
        """Both sides off now. Does not end a run: cancel its task for that."""
        was_running = self._forward.is_on or self._backward.is_on
        self._forward.off()
        self._backward.off()
        if was_running:
            self._stopped_at = self._bus.clock()


# ---------------------------------------------------------------------- inputs


class GpioInput:
    """A debounced input. ``value`` is True when active (after polarity).

    Create it from the event loop: gpiozero's callbacks come on its own thread and
    are handed to this loop; ``on_change(value)`` runs on the loop.
    """

    def __init__(
        self,
        device: DigitalInputDevice,
        name: str,
        debounce_s: float,
        on_change: Callable[[bool], None] | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._device = device
        self.name = name
        self._on_change = on_change
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        # Callbacks first, then the initial read: an edge in between arrives as a
        # feed of the level already read, which changes nothing.
        device.when_activated = self._activated
        device.when_deactivated = self._deactivated
        initial = bool(device.is_active)
        self._debouncer = Debouncer(debounce_s, initial)
        self._events = {True: asyncio.Event(), False: asyncio.Event()}
        self._events[initial].set()

    @property
    def value(self) -> bool:
        return self._debouncer.value

    async def wait_for(self, value: bool) -> None:
        """Return once the debounced value is ``value`` (at once if it is)."""
        await self._events[bool(value)].wait()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(DeviceClosed):
            self._device.when_activated = None
            self._device.when_deactivated = None
        self._device.close()

    # gpiozero's thread -------------------------------------------------------

    def _activated(self) -> None:
        self._from_thread(True)

    def _deactivated(self) -> None:
        self._from_thread(False)

    def _from_thread(self, raw: bool) -> None:
        now = self._loop.time()  # time.monotonic(): fine from any thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._feed, raw, now)

    # the loop ----------------------------------------------------------------

    def _feed(self, raw: bool, now: float) -> None:
        if self._closed:
            return
        self._debouncer.feed(raw, now)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._debouncer.due()
        if due is not None:
            self._timer = self._loop.call_at(due, self._settle)

    def _settle(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        # Read the line once more: an edge lost or coalesced by the pin library
        # must not leave us settled on a level that is no longer there.
        with contextlib.suppress(DeviceClosed):
            self._debouncer.feed(bool(self._device.is_active), now)
        value = self._debouncer.poll(now)
        if value is None:
            self._schedule()  # restarted, or the timer fired a hair early
            return
        self._events[value].set()
        self._events[not value].clear()
        log.debug("gpio.input_changed", input=self.name, value=value)
        if self._on_change is not None:
            try:
                self._on_change(value)
            except Exception:
                log.exception("gpio.callback_error", input=self.name)


# ------------------------------------------------------------------- indicator


class Indicator:
    """An RGB LED showing one of ``PATTERNS``; animated patterns are loop tasks.

    Without PWM pins every colour component that is lit at all is shown fully
    (dull red becomes red, dim white white), so every pattern stays visible.
    """

    def __init__(
        self,
        led: RGBLED,
        name: str,
        *,
        pwm: bool,
        flash_s: float,
        closing_warn_s: float,
        cycle_s: float,
    ) -> None:
        self._led = led
        self.name = name
        self._pwm = pwm
        self._flash_s = flash_s
        self._closing_warn_s = closing_warn_s
        self._cycle_s = cycle_s
        self._pattern = "off"
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def color(self) -> RGB:
        """What the LED shows right now (as written, 0-1 per component)."""
        if self._closed:
            return OFF
        red, green, blue = self._led.value
        return (float(red), float(green), float(blue))

    def show(self, pattern: str) -> None:
        """Switch to ``pattern``, replacing the running one. Showing the pattern
        already shown changes nothing (a "closing" is not restarted). Animated
        patterns need to be called from the event loop. Ignored once closed: a
        late status update during shutdown must not fail the caller."""
        if pattern not in PATTERNS:
            raise ValueError(f"unknown indicator pattern {pattern!r}; known: {PATTERNS}")
        if self._closed:
            log.debug("gpio.indicator_closed", indicator=self.name, pattern=pattern)
            return
        if pattern == self._pattern and (pattern in _STEADY or self._task is not None):
            return
        self._stop_task()
        self._pattern = pattern
        log.debug("gpio.indicator", indicator=self.name, pattern=pattern)
        if pattern in _STEADY:
            self._set(_STEADY[pattern])
            return
        if pattern == "ready":
            body = self._cycle
        elif pattern == "closing":
            body = self._closing
        else:  # cloud_unreachable
            body = self._flash_red
        self._task = asyncio.get_running_loop().create_task(
            self._guard(body), name=f"indicator-{self.name}-{pattern}"
        )

    def off(self) -> None:
        """Dark now, animation stopped (the bus's emergency path)."""
        self._stop_task()
        self._pattern = "off"
        with contextlib.suppress(DeviceClosed):
            self._set(OFF)

    async def close(self) -> None:
        """Stop the animation, switch the LED off and release its pins. Idempotent."""
        if self._closed:
            return
        task = self._task
        self.off()
        self._closed = True
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        self._led.close()

    def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _set(self, color: RGB) -> None:
        if not self._pwm:
            top = max(color)
            color = (
                _on_off(color[0], top),
                _on_off(color[1], top),
                _on_off(color[2], top),
            )
        self._led.value = color

    async def _guard(self, body: Callable[[], Awaitable[None]]) -> None:
        # The coroutine is made here, not in show(): a task cancelled before it
        # ever ran must not leave a never-awaited coroutine behind.
        try:
            await body()
        except DeviceClosed:
            pass  # closed under us during shutdown
        except Exception:
            log.exception("gpio.indicator_error", indicator=self.name, pattern=self._pattern)

    async def _flash(self, color: RGB, until: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        while until is None or loop.time() < until:
            self._set(color)
            await asyncio.sleep(self._flash_s)
            self._set(OFF)
            await asyncio.sleep(self._flash_s)

    async def _flash_red(self) -> None:
        await self._flash(RED)

    async def _closing(self) -> None:
        loop = asyncio.get_running_loop()
        await self._flash(YELLOW, until=loop.time() + self._closing_warn_s)
        self._set(RED)  # and stays red until the next show()

    async def _cycle(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            hue = ((loop.time() - start) / self._cycle_s) % 1.0
            self._set(colorsys.hsv_to_rgb(hue, 1.0, 1.0))
            await asyncio.sleep(_CYCLE_STEP_S)


def _on_off(component: float, top: float) -> float:
    """A colour component for a non-PWM LED: lit if bright, or if it is the colour."""
    return 1.0 if component >= 0.5 or (component > 0 and component == top) else 0.0


# ------------------------------------------------------------------------- bus


class GpioBus:
    """The GPIO pins of one power supply. Create the parts from the event loop,
    then ``start()``; ``close()`` at the end. No global gpiozero state is touched.

    ``clock`` spaces actuations (power budget, motor reversal); inputs debounce on
    ``loop.time()``. ``power_budget`` shares one budget with other drivers on the
    same supply; ``max_concurrent`` and ``stagger_s`` are then not used.
    """

    def __init__(
        self,
        name: str,
        *,
        pin_factory: Factory | None = None,
        max_concurrent: int = 2,
        stagger_s: float = 0.3,
        pulse_s: float = 0.5,
        pulse_max_s: float = 2.0,
        motor_max_s: float = 8.0,
        debounce_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        power_budget: PowerBudget | None = None,
    ) -> None:
        if not 0 < pulse_s <= pulse_max_s:
            raise ValueError("need 0 < pulse_s <= pulse_max_s")
        if motor_max_s <= 0:
            raise ValueError("motor_max_s must be > 0")
        if debounce_s < 0:
            raise ValueError("debounce_s must be >= 0")
        self.name = name
        self._factory = pin_factory
        self.pulse_s = pulse_s
        self.pulse_max_s = pulse_max_s
        self.motor_max_s = motor_max_s
        self.debounce_s = debounce_s
        self.clock = clock
        self._budget = power_budget or PowerBudget(max_concurrent, stagger_s, clock)
        self._pins: dict[int, str] = {}  # BCM number -> what uses it
        self._inputs: list[GpioInput] = []
        self._outputs: list[_Output] = []
        self._indicators: list[Indicator] = []
        self._devices: list[Any] = []  # every gpiozero device, for the factory check
        self._closed = False
        self._closing = asyncio.Event()

    # parts ---------------------------------------------------------------------

    def input(self, pin: int | str, on_change: Callable[[bool], None] | None = None) -> GpioInput:
        """A debounced input (door or end switch, item sensor). Call from the loop."""
        self._check_open()
        asyncio.get_running_loop()  # fail here, before claiming the pin
        spec = parse_pin(pin)
        self._claim(spec, "input")
        device = None
        try:
            device = DigitalInputDevice(
                spec.number,
                pull_up=True if spec.pull_up and spec.active_low else None,
                active_state=None if spec.pull_up and spec.active_low else not spec.active_low,
                bounce_time=None,
                pin_factory=self._factory,
            )
            if spec.pull_up and not spec.active_low:
                # gpiozero ties pull_up=True to "low is active": set the pull by hand.
                device.pin.pull = "up"
            gpio_input = GpioInput(device, str(spec), self.debounce_s, on_change)
        except BaseException:
            if device is not None:
                device.close()
            self._pins.pop(spec.number, None)
            raise
        self._devices.append(device)
        self._inputs.append(gpio_input)
        return gpio_input

    def relay(self, pin: int | str) -> Relay:
        """A lock relay, off from the moment it is created."""
        return Relay(self, self._output(pin, "relay"))

    def motor(self, forward: int | str, backward: int | str) -> DoorMotor:
        """A door motor on two outputs, both off from the moment they are created."""
        fwd = self._output(forward, "motor forward")
        try:
            bwd = self._output(backward, "motor backward")
        except BaseException:
            self._outputs.remove(fwd)
            self._devices.remove(fwd.device)
            self._pins.pop(fwd.number, None)
            fwd.close()
            raise
        return DoorMotor(self, fwd, bwd)

    def rgb(
        self,
        red: int | str,
        green: int | str,
        blue: int | str,
        *,
        flash_s: float = 0.25,
        closing_warn_s: float = 3.0,
        cycle_s: float = 6.0,
    ) -> Indicator:
        """A cabinet's RGB indicator. The three pins share one polarity ("!" on all
        three for a common-anode LED). Falls back to on/off colours without PWM."""
        self._check_open()
        specs = [parse_pin(p) for p in (red, green, blue)]
        if len({s.active_low for s in specs}) != 1:
            raise ValueError(f"rgb {red!r}/{green!r}/{blue!r}: mixed polarity ('!')")
        if any(s.pull_up for s in specs):
            raise ValueError(f"rgb {red!r}/{green!r}/{blue!r}: '^' is for inputs only")
        for spec, colour in zip(specs, ("red", "green", "blue"), strict=True):
            self._claim(spec, f"rgb {colour}")
        numbers = [s.number for s in specs]
        kwargs: dict[str, Any] = {
            "active_high": not specs[0].active_low,
            "initial_value": (0, 0, 0),
            "pin_factory": self._factory,
        }
        try:
            try:
                led = RGBLED(*numbers, pwm=True, **kwargs)
                pwm = True
            except PinPWMUnsupported:
                log.warning("gpio.pwm_unsupported", bus=self.name, pins=numbers)
                led = RGBLED(*numbers, pwm=False, **kwargs)
                pwm = False
        except BaseException:
            for n in numbers:
                self._pins.pop(n, None)
            raise
        name = "/".join(str(s) for s in specs)
        indicator = Indicator(
            led,
            name,
            pwm=pwm,
            flash_s=flash_s,
            closing_warn_s=closing_warn_s,
            cycle_s=cycle_s,
        )
        self._devices.append(led)
        self._indicators.append(indicator)
        return indicator

    def power(self) -> contextlib.AbstractAsyncContextManager[None]:
        """One slot of the power budget, for actuations driven elsewhere."""
        return self._budget.slot()

    @property
    def budget(self) -> PowerBudget:
        return self._budget

    # lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Make sure every output is off. Creates nothing; the parts exist already."""
        self._check_open()
        self._all_off()
        factory = self._devices[0].pin_factory if self._devices else self._factory
        factory_name = type(factory).__name__ if factory is not None else None
        if factory_name == "NativeFactory":
            log.warning("gpio.slow_factory", bus=self.name, factory=factory_name)
        log.info(
            "gpio.started",
            bus=self.name,
            factory=factory_name,
            inputs=len(self._inputs),
            outputs=len(self._outputs),
            indicators=len(self._indicators),
        )

    async def close(self) -> None:
        """Every output off, then every device closed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._all_off()  # first, and for all: the part that matters
        for part in [*self._outputs, *self._inputs]:
            try:
                part.close()
            except Exception:
                log.exception("gpio.close_error", bus=self.name, part=part.name)
        for indicator in self._indicators:
            try:
                await indicator.close()
            except Exception:
                log.exception("gpio.close_error", bus=self.name, part=indicator.name)
        log.info("gpio.closed", bus=self.name)

    # internals -----------------------------------------------------------------

    def _all_off(self) -> None:
        for output in self._outputs:
            try:
                output.off()
            except Exception:  # one broken pin must not keep the others on
                log.exception("gpio.off_failed", bus=self.name, output=output.name)
        for indicator in self._indicators:
            try:
                indicator.off()
            except Exception:
                log.exception("gpio.off_failed", bus=self.name, output=indicator.name)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"gpio bus {self.name} is closed")

    def _claim(self, spec: PinSpec, use: str) -> None:
        user = self._pins.get(spec.number)
        if user is not None:
            raise ValueError(f"GPIO{spec.number} is already used by the {user}")
        self._pins[spec.number] = use

    def _output(self, pin: int | str, use: str) -> _Output:
        self._check_open()
        spec = parse_pin(pin)
        if spec.pull_up:
            raise ValueError(f"pin {pin!r}: '^' (pull-up) is for inputs only")
        self._claim(spec, use)
        try:
            device = DigitalOutputDevice(
                spec.number,
                active_high=not spec.active_low,
                initial_value=False,
                pin_factory=self._factory,
            )
        except BaseException:
            self._pins.pop(spec.number, None)
            raise
        output = _Output(device, spec)
        self._devices.append(device)
        self._outputs.append(output)
        return output
