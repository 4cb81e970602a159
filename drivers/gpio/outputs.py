"""Outputs: lock relays (``Relay``), door motors (``DoorMotor``) and steady
``Switch``es (a heater, a cooler, a compressor contactor), all on ``_Output``, a
digital output whose "on" always has a deadline.

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

The parts know nothing of the bus that made them: they are handed their limits,
the power budget, the bus's ``closing`` event (set by ``GpioBus.close``: a pulse or
run ends, no new one starts) and a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from gpiozero import DigitalOutputDevice
from gpiozero.exc import DeviceClosed

from drivers.gpio.errors import PULSE_MAX_S as PULSE_MAX_S  # re-exported: bus.py, tests
from drivers.gpio.errors import BusClosed
from drivers.gpio.inputs import GpioInput
from drivers.gpio.pins import PinSpec
from drivers.power import PowerBudget

log = structlog.get_logger(__name__)


# The thread backstop fires this long after an output's own limit: late enough never
# to race a healthy loop, early enough to matter when the loop hangs.
_BACKSTOP_MARGIN_S = 0.25
# A DC motor reversed at full speed shorts its back-EMF through the driver: let it
# stop for this long before driving it the other way.
_REVERSE_PAUSE_S = 0.2


def _check_open(closing: asyncio.Event, what: str) -> None:
    if closing.is_set():
        raise BusClosed(f"{what}: its gpio bus is closed")


def _quiet_off(device: Any) -> None:
    with contextlib.suppress(DeviceClosed):
        device.off()


class _Output:
    """One digital output whose "on" always has a deadline (``on(limit_s)``).

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


class _OneOutput:
    """A part on one output: its name and state."""

    _output: _Output

    @property
    def name(self) -> str:
        """The pin spec, e.g. ``"!GPIO18"``."""
        return self._output.name

    @property
    def is_on(self) -> bool:
        """True while the output is energised."""
        return self._output.is_on


class Relay(_OneOutput):
    """A lock relay: short latch pulses of ``pulse_s`` seconds (the default), never
    longer than ``pulse_max_s``, each inside one slot of ``budget``; ``closing`` set
    ends a pulse and refuses new ones (``BusClosed``)."""

    def __init__(
        self,
        output: _Output,
        *,
        pulse_s: float,
        pulse_max_s: float,
        budget: PowerBudget,
        closing: asyncio.Event,
    ) -> None:
        self._output = output
        self.pulse_s = pulse_s
        self.pulse_max_s = pulse_max_s
        self._budget = budget
        self._closing = closing
        self._lock = asyncio.Lock()  # pulses of one relay do not overlap

    async def pulse(self, duration_s: float | None = None) -> None:
        """On for ``duration_s`` seconds (default ``pulse_s``), cut to ``pulse_max_s``,
        inside the power budget; off again even if cancelled. Raises ``ValueError`` for
        a length <= 0, ``BusClosed`` once the bus is closed."""
        duration = self.pulse_s if duration_s is None else duration_s
        if duration <= 0:
            raise ValueError(f"pulse length must be > 0, not {duration}")
        if duration > self.pulse_max_s:
            log.warning("gpio.pulse_capped", relay=self.name, asked=duration, max=self.pulse_max_s)
            duration = self.pulse_max_s
        async with self._lock, self._budget.slot():
            _check_open(self._closing, f"relay {self.name}")
            log.info("gpio.pulse", relay=self.name, duration_s=duration)
            try:
                self._output.on(duration)
                # Sleep, but end early when the bus closes (the relay is off then).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration):
                        await self._closing.wait()
            finally:
                self._output.off()

    def off(self) -> None:
        """Off now (a pulse under way ends early)."""
        self._output.off()


class Switch(_OneOutput):
    """A steady output held on by a lease: ``on(lease_s)`` keeps it on for ``lease_s``
    seconds, and the caller renews the lease while it wants it on. A loop that stops
    renewing (hung, crashed) gets the output switched off by the driver's backstop: a
    heater is never left on by a dead controller. ``closing`` set refuses ``on``."""

    def __init__(self, output: _Output, *, closing: asyncio.Event) -> None:
        self._output = output
        self._closing = closing
        self._until = 0.0  # monotonic end of the lease armed in the driver

    def on(self, lease_s: float) -> None:
        """On (or still on) for ``lease_s`` more seconds unless renewed; ``ValueError``
        for a lease <= 0, ``BusClosed`` once the bus is closed."""
        if lease_s <= 0:
            raise ValueError(f"lease must be > 0, not {lease_s}")
        _check_open(self._closing, f"switch {self.name}")
        now = time.monotonic()
        if self._output.is_on and self._until - now > lease_s / 2:
            return  # renewed at half-life: one backstop thread per half lease, not per call
        if not self._output.is_on:
            log.info("gpio.switch_on", switch=self.name)
        self._output.on(lease_s)
        self._until = now + lease_s

    def off(self) -> None:
        """Off now."""
        if self._output.is_on:
            log.info("gpio.switch_off", switch=self.name)
        self._output.off()


class DoorMotor:
    """A door motor on two outputs (two relays, or the two inputs of an H-bridge at
    full speed): ``forward`` on = one direction, ``backward`` on = the other.

    One run at a time: a second ``run`` waits for the first; to reverse a moving
    door, cancel its run. The two outputs are never on together: every drive
    switches the other side off first, and both are off between runs. A run lasts
    ``motor_max_s`` seconds at most and holds one slot of ``budget``; ``closing`` set
    ends a run and refuses new ones; ``clock`` (seconds) times the reversal pause.
    """

    def __init__(
        self,
        forward: _Output,
        backward: _Output,
        *,
        motor_max_s: float,
        budget: PowerBudget,
        closing: asyncio.Event,
        clock: Callable[[], float],
    ) -> None:
        self.motor_max_s = motor_max_s
        self._budget = budget
        self._closing = closing
        self._clock = clock
        self._forward = forward
        self._backward = backward
        self._lock = asyncio.Lock()
        self._last_forward: bool | None = None
        self._stopped_at = float("-inf")

    @property
    def name(self) -> str:
        """The two pin specs, forward first, e.g. ``"GPIO22/GPIO23"``."""
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
        """Drive until ``until`` is active (True); False if ``abort`` became active,
        ``min(max_s, motor_max_s)`` seconds elapsed or the bus closed. Stopped before
        returning, also when cancelled. Raises ``BusClosed`` if the bus is closed."""
        limit = self.motor_max_s if max_s is None else min(max_s, self.motor_max_s)
        async with self._lock:
            settled = self._settled(until, abort)
            if settled is not None:
                return settled
            if limit <= 0:
                return False
            if self._last_forward is not None and self._last_forward != forward:
                pause = self._stopped_at + _REVERSE_PAUSE_S - self._clock()
                if pause > 0:
                    await asyncio.sleep(pause)
            async with self._budget.slot():
                _check_open(self._closing, f"motor {self.name}")
                # The door may have got there (or been blocked) while we waited.
                settled = self._settled(until, abort)
                if settled is not None:
                    return settled
                on, other = (
                    (self._forward, self._backward) if forward else (self._backward, self._forward)
                )
                start = self._clock()
                outcome = "interrupted"  # cancelled, or on() failed
                log.info("gpio.motor_run", motor=self.name, forward=forward, max_s=limit)
                try:
                    other.off()  # interlock: never both sides
                    self._last_forward = forward
                    on.on(limit)
                    outcome = await self._wait(until, abort, limit)
                finally:
                    self.stop()
                    elapsed = round(self._clock() - start, 3)
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
        waits = [reached, asyncio.ensure_future(self._closing.wait())]
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
        return "closed" if self._closing.is_set() else "aborted"

    def stop(self) -> None:
        """Both sides off now. Does not end a run: cancel its task for that."""
        was_running = self._forward.is_on or self._backward.is_on
        self._forward.off()
        self._backward.off()
        if was_running:
            self._stopped_at = self._clock()
