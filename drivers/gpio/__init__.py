"""Doors wired straight to the host's GPIO pins, driven from asyncio through gpiozero.

One ``GpioBus`` owns the pins of one power supply: door switches and item sensors
(``input``), lock relays that get a latch pulse (``relay``), door motors driven
until an end switch (``motor``) and one RGB indicator per cabinet (``rgb``).

Where things live:

    pins.py       PinSpec, parse_pin: Klipper-style pin specs and their polarity
    config.py     the config sections: GpioBusConfig and the wirings, pins by parse_pin
    debounce.py   Debouncer: pure, for any clock
    inputs.py     GpioInput: debounced inputs, gpiozero's thread handed to the loop
    outputs.py    _Output, Relay, DoorMotor: bounded outputs and their safety; they get
                  their limits, budget, clock and closing event handed in
    indicator.py  Indicator, PATTERNS and the colours
    errors.py     PinRefused, BusClosed, PULSE_MAX_S: without gpiozero
    bus.py        GpioBus: claims the pins, creates the parts, start/close

The names below load their module on first use (PEP 562): a locker without a GPIO
bus reads its config (``config.py``, ``pins.py``) and never imports gpiozero.
"""

from __future__ import annotations

import importlib
from typing import Any

# Each exported name -> the module that defines it, loaded on first use.
_WHERE = {
    "GpioBus": "bus",
    "PinRefused": "errors",
    "BusClosed": "errors",
    "PULSE_MAX_S": "errors",
    "Debouncer": "debounce",
    "BLUE": "indicator",
    "DIM_WHITE": "indicator",
    "DULL_RED": "indicator",
    "GREEN": "indicator",
    "OFF": "indicator",
    "RED": "indicator",
    "YELLOW": "indicator",
    "Indicator": "indicator",
    "GpioInput": "inputs",
    "DoorMotor": "outputs",
    "Relay": "outputs",
    "Switch": "outputs",
    "FIXED_PULL_UP": "pins",
    "MAX_PIN": "pins",
    "PinSpec": "pins",
    "PinSpecError": "pins",
    "parse_pin": "pins",
}


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` (AttributeError for another name)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BLUE",
    "DIM_WHITE",
    "DULL_RED",
    "FIXED_PULL_UP",
    "GREEN",
    "MAX_PIN",
    "OFF",
    "PULSE_MAX_S",
    "RED",
    "YELLOW",
    "BusClosed",
    "Debouncer",
    "DoorMotor",
    "GpioBus",
    "GpioInput",
    "Indicator",
    "PinRefused",
    "PinSpec",
    "PinSpecError",
    "Relay",
    "Switch",
    "parse_pin",
]
