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
    bus.py        GpioBus: claims the pins, creates the parts, start/close
"""

from drivers.gpio.bus import GpioBus, PinRefused
from drivers.gpio.debounce import Debouncer
from drivers.gpio.indicator import (
    BLUE,
    DIM_WHITE,
    DULL_RED,
    GREEN,
    OFF,
    RED,
    YELLOW,
    Indicator,
)
from drivers.gpio.inputs import GpioInput
from drivers.gpio.outputs import PULSE_MAX_S, BusClosed, DoorMotor, Relay, Switch
from drivers.gpio.pins import FIXED_PULL_UP, MAX_PIN, PinSpec, PinSpecError, parse_pin

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
