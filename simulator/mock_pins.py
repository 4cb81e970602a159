"""gpiozero mock pins that a simulated world holds and watches.

Everything here touches gpiozero's mock pin internals so that the door physics
(:mod:`simulator.touchless`) does not have to. The world sees two kinds of line:

- an :class:`InputLine` it sets active or inactive (a switch, a beam, a sensor);
  the line's polarity is applied, and the level is *held*: a pull resistor the
  agent configures cannot override a switch that shorts the line (a plain
  ``MockPin`` drives itself to its pull when its pull is set; ours do not while
  the world holds them);
- an :class:`OutputLine` it reads (a relay, a motor, an LED): whether it is
  energised, its brightness, and how many energising edges it has had, so a
  relay pulse shorter than the world's tick is never missed.

gpiozero's stock ``MockFactory`` only knows the GPIOs of a real board's header
(0-27 on its default Pi 3B, 0-45 on a compute module); :func:`mock_factory`
gives one with the whole BCM bank 0-53, which the config allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpiozero.exc import PinInvalidPin
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from drivers.gpio import PinSpec, parse_pin
from drivers.gpio.mock import AllPinsMockFactory

# ------------------------------------------------------------------- pin classes


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
        """Hold the line high (True) or low (False) until told otherwise."""
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


# ------------------------------------------------------------------- the factory


class FullBankMockFactory(AllPinsMockFactory):
    """gpiozero's ``MockFactory`` with every BCM GPIO 0-53 on its board (the
    drivers' own, ``drivers.gpio.mock``), so a locker wired past the Pi's 40-pin
    header can be simulated."""


def mock_factory() -> MockFactory:
    """A fresh mock pin factory for the simulator: PWM pins, BCM GPIO 0-53."""
    return FullBankMockFactory(pin_class=MockPWMPin)


# ------------------------------------------------------------------- lines


@dataclass(frozen=True, slots=True)
class InputLine:
    """An input pin as the simulated world drives it: active or not, polarity applied."""

    spec: PinSpec
    pin: Any  # _InputPin | _InputPWMPin

    def set(self, active: bool) -> None:
        """Hold the line at the level of ``active`` (an active-low line goes low)."""
        self.pin.hold(bool(active) != self.spec.active_low)


@dataclass(frozen=True, slots=True)
class OutputLine:
    """An output pin as the simulated world reads it, polarity applied."""

    spec: PinSpec
    pin: Any  # _OutputPin | _OutputPWMPin

    @property
    def on(self) -> bool:
        """Energised now: False while the line is not an output (no device on it)."""
        return bool(self.pin.energised)

    @property
    def brightness(self) -> float:
        """The light an LED on this line gives now, 0.0-1.0 (the PWM duty cycle)."""
        return float(self.pin.brightness)

    @property
    def edges(self) -> int:
        """Energising edges since the line was claimed (closing a device is none)."""
        return int(self.pin.energised_count)


class WorldPins:
    """Claims the pins of a simulated world on a fresh ``MockFactory``, each number once.

    Claiming a pin only creates its mock pin object (no gpiozero device): the
    agent's devices find it there when they ask the factory for that number.
    Raises TypeError if ``factory`` is not a ``MockFactory``.
    """

    def __init__(self, factory: MockFactory) -> None:
        if not isinstance(factory, MockFactory):
            raise TypeError("the simulated world plays gpiozero mock pins: pass a MockFactory")
        self.factory = factory
        self._pwm = issubclass(factory.pin_class, MockPWMPin)
        self._claimed: set[int] = set()

    @property
    def claimed(self) -> int:
        """How many pins have been claimed."""
        return len(self._claimed)

    def input(self, text: str | int) -> InputLine:
        """The input at pin spec ``text`` (e.g. ``"^!5"``). ValueError/RuntimeError: see claim."""
        spec, pin = self._claim(text, _InputPWMPin if self._pwm else _InputPin)
        return InputLine(spec, pin)

    def output(self, text: str | int) -> OutputLine:
        """The output at pin spec ``text`` (e.g. ``"!8"``). ValueError/RuntimeError: see claim."""
        spec, pin = self._claim(text, _OutputPWMPin if self._pwm else _OutputPin)
        pin.active_low = spec.active_low
        return OutputLine(spec, pin)

    def _claim(self, text: str | int, cls: type) -> tuple[PinSpec, Any]:
        """ValueError: a bad spec, a pin claimed twice, a pin the factory's board lacks.
        RuntimeError: the pin was used on the factory before (by a device)."""
        spec = parse_pin(text)
        if spec.number in self._claimed:
            raise ValueError(f"GPIO{spec.number} is wired twice in this config")
        self._claimed.add(spec.number)
        try:
            pin = self.factory.pin(spec.number, pin_class=cls)
        except PinInvalidPin:
            raise ValueError(
                f"GPIO{spec.number} is not on this mock factory's board"
                " (use simulator.mock_pins.mock_factory(): it has GPIO 0-53)"
            ) from None
        if not isinstance(pin, cls):
            raise RuntimeError(
                f"GPIO{spec.number} was already used on this factory before the simulator"
                " started: start the simulated world first, on a fresh factory"
            )
        return spec, pin
