"""What the GPIO driver raises and its hard limit, without gpiozero: importable by a
locker that has no GPIO bus (its config, its error handling) at no cost."""

from __future__ import annotations

from drivers.gpio.pins import PinSpec

PULSE_MAX_S = 2.0
"""The longest latch relay pulse, seconds: longer would burn a solenoid."""


class PinRefused(ValueError):
    """The bus cannot use a pin as asked: already claimed, a pull-up on an output, or
    refused by the pin factory (not on the board, a fixed pull, in use). ``pin`` is
    the parsed spec, so a caller can tell which of its pins it was (None when the
    factory refused one of several pins of a part without saying which)."""

    def __init__(self, pin: PinSpec | None, message: str) -> None:
        super().__init__(message)
        self.pin = pin


class BusClosed(RuntimeError):
    """The GPIO bus these parts belong to is closed: they no longer act."""
