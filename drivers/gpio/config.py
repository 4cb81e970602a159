"""The config sections of the GPIO driver: a bus (the controller's header on one power
supply) and what is wired to it: doors, inputs such as item sensors, RGB indicators.

```toml
[[buses]]
name = "gpio"
driver = "gpio"

[[cabinets]]
front = { bus = "gpio", switch = "^!4", lock = 11 }
item = { bus = "gpio", pin = "^!5" }
indicator = { bus = "gpio", red = 12, green = 13, blue = 19 }
```

Pin fields are read by the one pin grammar, ``drivers.gpio.pins.parse_pin``, and hold
the ``PinSpec``. On top of the grammar, the rules the bus applies when it builds the
parts: outputs (lock, motor, indicator) take no ``^`` (a pull-up is for inputs), an
indicator's three pins share one polarity, and an input on a pin with a fixed pull-up
(``FIXED_PULL_UP``) must say ``^``. Whether a pin is used twice, and whether ``bus``
names a GPIO bus, are the agent's cross checks (they need the whole file).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainSerializer, PlainValidator, model_validator

from drivers.config import Name, NameRef, StrictModel
from drivers.gpio.errors import PULSE_MAX_S
from drivers.gpio.pins import FIXED_PULL_UP, MAX_PIN, PinSpec, parse_pin

PIN_HINT = f'must be a GPIO number 0-{MAX_PIN}, optionally "^" (pull-up) "!" (active low)'


def _parse(value: Any) -> PinSpec:
    try:
        return parse_pin(value)
    except ValueError as e:
        reason = getattr(e, "reason", None)
        raise ValueError(f"{PIN_HINT}: {reason}" if reason else PIN_HINT) from None


def input_pin(value: Any) -> PinSpec:
    """An input's pin spec (``int``, ``str`` or ``PinSpec``) as a ``PinSpec``.

    Raises ``ValueError`` with the config message: not a pin spec, or a pin with a
    fixed pull-up written without ``^``.
    """
    spec = _parse(value)
    if spec.number in FIXED_PULL_UP and not spec.pull_up:
        raise ValueError(
            f"GPIO{spec.number} has a fixed pull-up resistor on a Raspberry Pi:"
            f" write it with '^' ('^{spec.number}' or '^!{spec.number}')"
        )
    return spec


def output_pin(value: Any) -> PinSpec:
    """An output's pin spec as a ``PinSpec``; raises ``ValueError`` for a bad spec or a
    ``^`` (an output has no pull-up; ``!`` makes it active low)."""
    spec = _parse(value)
    if spec.pull_up:
        raise ValueError("'^' (pull-up) is for inputs only; an output takes only '!' (active low)")
    return spec


_AS_SPEC = PlainSerializer(str, return_type=str)


InputPin = Annotated[PinSpec, PlainValidator(input_pin), _AS_SPEC]
"""A pin read by the agent (a switch, a beam, an item sensor)."""


OutputPin = Annotated[PinSpec, PlainValidator(output_pin), _AS_SPEC]
"""A pin driven by the agent (a lock relay, a motor side, an LED)."""


class GpioBusConfig(StrictModel):
    """The controller's own GPIO header on one power supply: switches, relays, motors, LEDs.

    Fields: ``name``; ``pin_factory`` (gpiozero's: ``"default"`` lets gpiozero choose,
    a Raspberry Pi 5 needs ``"lgpio"``, ``"mock"`` gives mock pins in any config);
    ``max_concurrent`` and ``stagger_s`` (the power budget: actuations at once, seconds
    between two starts); ``pulse_s`` (latch relay pulse, seconds, at most
    ``PULSE_MAX_S``); ``motor_max_s`` (no motor run lasts longer, seconds);
    ``debounce_s`` (a switch holds still this long before its change counts, seconds);
    ``supply`` (optional: buses naming the same supply share one power budget, and must
    then give the same ``max_concurrent`` and ``stagger_s``).

    Validation raises ``pydantic.ValidationError``.
    """

    name: Name
    driver: Literal["gpio"]
    pin_factory: Literal["default", "lgpio", "rpigpio", "native", "mock"] = "default"
    max_concurrent: int = Field(2, ge=1, le=16)
    stagger_s: float = Field(0.3, ge=0, le=10)
    pulse_s: float = Field(0.5, ge=0.05, le=PULSE_MAX_S)
    motor_max_s: float = Field(8.0, ge=0.5, le=60)
    debounce_s: float = Field(0.05, ge=0, le=1)
    supply: Name | None = None


class GpioDoorWiring(StrictModel):
    """A door on GPIO: ``switch`` (input, active when shut), and a ``lock`` (output, a
    latch relay pulsed to open) or a motor (``motor_open`` and ``motor_close``, outputs,
    with ``open_switch``, input, active when fully open), or both; ``beam`` (input,
    optional: active when something is in the doorway).

    Raises ``pydantic.ValidationError`` for a bad pin, or a door with half a motor, a
    motor without its end switch, or nothing to open it.
    """

    PIN_FIELDS: ClassVar[tuple[str, ...]] = (
        "switch",
        "lock",
        "open_switch",
        "motor_open",
        "motor_close",
        "beam",
    )

    bus: NameRef
    switch: InputPin
    lock: OutputPin | None = None
    open_switch: InputPin | None = None
    motor_open: OutputPin | None = None
    motor_close: OutputPin | None = None
    beam: InputPin | None = None

    @model_validator(mode="after")
    def _complete(self) -> GpioDoorWiring:
        if (self.motor_open is None) != (self.motor_close is None):
            raise ValueError("a motor needs both motor_open and motor_close")
        if self.motor_open is not None and self.open_switch is None:
            raise ValueError("a motorised door needs open_switch (its end switch)")
        if self.motor_open is None and self.lock is None:
            raise ValueError("a door needs a lock or a motor to open it")
        return self

    @property
    def motorised(self) -> bool:
        """True when the door has a motor (it opens and closes by itself)."""
        return self.motor_open is not None

    def pins(self) -> dict[str, PinSpec]:
        """The wired pins by field name, in field order (absent ones left out)."""
        return {n: p for n in self.PIN_FIELDS if (p := getattr(self, n)) is not None}


class GpioInputWiring(StrictModel):
    """One GPIO input, e.g. an item sensor (active when an item is in the cabinet):
    ``bus`` and ``pin``. Raises ``pydantic.ValidationError`` for a bad pin."""

    PIN_FIELDS: ClassVar[tuple[str, ...]] = ("pin",)

    bus: NameRef
    pin: InputPin

    def pins(self) -> dict[str, PinSpec]:
        """``{"pin": spec}``."""
        return {"pin": self.pin}


class IndicatorWiring(StrictModel):
    """An RGB LED on three GPIO outputs, ``red``, ``green``, ``blue`` (PWM pins give dim
    colours). The three share one polarity: ``!`` on all three for a common-anode LED,
    on none for a common-cathode one. Raises ``pydantic.ValidationError``."""

    PIN_FIELDS: ClassVar[tuple[str, ...]] = ("red", "green", "blue")

    bus: NameRef
    red: OutputPin
    green: OutputPin
    blue: OutputPin

    @model_validator(mode="after")
    def _one_polarity(self) -> IndicatorWiring:
        if len({self.red.active_low, self.green.active_low, self.blue.active_low}) != 1:
            raise ValueError(
                "red, green and blue must share one polarity: '!' on all three"
                " (common anode) or on none (common cathode)"
            )
        return self

    def pins(self) -> dict[str, PinSpec]:
        """``{"red": spec, "green": spec, "blue": spec}``."""
        return {"red": self.red, "green": self.green, "blue": self.blue}
