"""``GpioBus``: the GPIO pins of one power supply, and the factory of every part.

It claims each pin once, creates the gpiozero devices with the polarity of the pin
spec (``drivers.gpio.pins``), hands them to the parts (``GpioInput``, ``Relay``,
``DoorMotor``, ``Indicator``), shares one power budget between actuations, and
switches everything off on ``start()`` and ``close()``.

Pin factories: ``pin_factory=None`` means gpiozero's default. On a Raspberry Pi 5
that must be lgpio (``python3-lgpio`` / ``pip install lgpio``, or
``GPIOZERO_PIN_FACTORY=lgpio``): otherwise gpiozero falls back to its slow native
factory with only a warning, which ``start()`` logs as ``gpio.slow_factory``.
Tests pass a ``MockFactory`` (``pin_class=MockPWMPin`` for dim indicator colours).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from gpiozero import RGBLED, DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import GPIOPinInUse, PinError, PinPWMUnsupported
from gpiozero.pins import Factory

from drivers.gpio.errors import PinRefused
from drivers.gpio.indicator import Indicator
from drivers.gpio.inputs import GpioInput
from drivers.gpio.outputs import PULSE_MAX_S, DoorMotor, Relay, Switch, _check_open, _Output
from drivers.gpio.pins import PinSpec, parse_pin
from drivers.power import PowerBudget

log = structlog.get_logger(__name__)

Pin = int | str | PinSpec
"""A pin as ``parse_pin`` reads it: ``17``, ``"^!GPIO5"``, or a parsed ``PinSpec``."""


class GpioBus:
    """The GPIO pins of one power supply. Create the parts from the event loop,
    then ``start()``; ``close()`` at the end. No global gpiozero state is touched.

    ``clock`` spaces actuations (power budget, motor reversal); inputs debounce on
    ``loop.time()``. ``power_budget`` shares one budget with other drivers on the
    same supply; ``max_concurrent`` and ``stagger_s`` are then not used. Durations
    are seconds: ``pulse_s`` (a relay's default pulse, at most ``pulse_max_s``),
    ``motor_max_s``, ``debounce_s``.

    The constructor raises ``ValueError`` for settings out of range; the part
    factories raise ``PinRefused`` (a ``ValueError``) for a pin they cannot use and
    ``BusClosed`` (a ``RuntimeError``) once the bus is closed.
    """

    def __init__(
        self,
        name: str,
        *,
        pin_factory: Factory | None = None,
        max_concurrent: int = 2,
        stagger_s: float = 0.3,
        pulse_s: float = 0.5,
        pulse_max_s: float = PULSE_MAX_S,
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
        self._closing = asyncio.Event()  # handed to the parts: set, they stop acting

    # parts ---------------------------------------------------------------------

    def input(self, pin: Pin, on_change: Callable[[bool], None] | None = None) -> GpioInput:
        """A debounced input (door or end switch, item sensor); ``on_change(active)``
        runs on the loop. Call from the loop (``RuntimeError`` otherwise)."""
        self._check_open()
        asyncio.get_running_loop()  # fail here, before claiming the pin
        spec = parse_pin(pin)
        self._claim(spec, "input")
        device = None
        try:
            with _refusing(spec):
                if spec.pull_up:
                    # gpiozero ties pull_up=True to "low is active"; "^5" (active high)
                    # is read inverted. Never floating first: GPIO2/3 refuse that.
                    device = DigitalInputDevice(
                        spec.number, pull_up=True, bounce_time=None, pin_factory=self._factory
                    )
                else:
                    device = DigitalInputDevice(
                        spec.number,
                        pull_up=None,
                        active_state=not spec.active_low,
                        bounce_time=None,
                        pin_factory=self._factory,
                    )
            invert = spec.pull_up and not spec.active_low
            gpio_input = GpioInput(device, str(spec), self.debounce_s, on_change, invert=invert)
        except BaseException:
            if device is not None:
                device.close()
            self._pins.pop(spec.number, None)
            raise
        self._devices.append(device)
        self._inputs.append(gpio_input)
        return gpio_input

    def relay(self, pin: Pin) -> Relay:
        """A lock relay, off from the moment it is created."""
        return Relay(
            self._output(pin, "relay"),
            pulse_s=self.pulse_s,
            pulse_max_s=self.pulse_max_s,
            budget=self._budget,
            closing=self._closing,
        )

    def switch(self, pin: Pin) -> Switch:
        """A steady output on a lease (a heater, cooler or compressor), off from the
        moment it is created."""
        return Switch(self._output(pin, "switch"), closing=self._closing)

    def motor(self, forward: Pin, backward: Pin) -> DoorMotor:
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
        return DoorMotor(
            fwd,
            bwd,
            motor_max_s=self.motor_max_s,
            budget=self._budget,
            closing=self._closing,
            clock=self.clock,
        )

    def rgb(
        self,
        red: Pin,
        green: Pin,
        blue: Pin,
        *,
        flash_s: float = 0.25,
        closing_warn_s: float = 3.0,
        cycle_s: float = 6.0,
    ) -> Indicator:
        """A cabinet's RGB indicator. The three pins share one polarity ("!" on all
        three for a common-anode LED; ``ValueError`` otherwise). Falls back to on/off
        colours without PWM. Times in seconds."""
        self._check_open()
        specs = [parse_pin(p) for p in (red, green, blue)]
        if len({s.active_low for s in specs}) != 1:
            raise ValueError(f"rgb {red!s}/{green!s}/{blue!s}: mixed polarity ('!')")
        for spec in specs:
            if spec.pull_up:
                raise PinRefused(spec, f"{spec}: '^' (pull-up) is for inputs only")
        claimed: list[int] = []
        try:
            for spec, colour in zip(specs, ("red", "green", "blue"), strict=True):
                self._claim(spec, f"rgb {colour}")
                claimed.append(spec.number)
        except BaseException:
            for n in claimed:
                self._pins.pop(n, None)
            raise
        numbers = [s.number for s in specs]
        kwargs: dict[str, Any] = {
            "active_high": not specs[0].active_low,
            "initial_value": (0, 0, 0),
            "pin_factory": self._factory,
        }
        try:
            with _refusing(None, specs):
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
        """The power budget every actuation of this bus takes a slot of."""
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
        _check_open(self._closing, f"gpio bus {self.name}")

    def _claim(self, spec: PinSpec, use: str) -> None:
        user = self._pins.get(spec.number)
        if user is not None:
            raise PinRefused(spec, f"GPIO{spec.number} is already used by the {user}")
        self._pins[spec.number] = use

    def _output(self, pin: Pin, use: str) -> _Output:
        self._check_open()
        spec = parse_pin(pin)
        if spec.pull_up:
            raise PinRefused(spec, f"{spec}: '^' (pull-up) is for inputs only")
        self._claim(spec, use)
        try:
            with _refusing(spec):
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


@contextlib.contextmanager
def _refusing(spec: PinSpec | None, specs: list[PinSpec] | None = None) -> Iterator[None]:
    """The pin factory's refusals of a pin (not on the board, a fixed pull, in use) as
    ``PinRefused``; other errors (no pin factory at all) pass unchanged."""
    try:
        yield
    except (PinError, GPIOPinInUse) as e:
        if isinstance(e, PinPWMUnsupported):
            raise  # the indicator falls back to on/off colours
        named = "/".join(str(s) for s in specs or [spec])
        raise PinRefused(spec, f"{named}: refused by the pin factory: {e}") from e
