"""Code readers at the locker: a scanner or keypad in serial mode, a scanner that types.

Each reader hands whole codes (text, one a line) to its owner's ``on_code(name, code)``,
bounded in length and rate, and never logs what it read. Where things live:

    config.py     the ``[[readers]]`` sections: SerialReaderConfig, EvdevReaderConfig
    lines.py      LineReader: bytes to codes (CR or LF), over-long and garbled lines dropped
    keys.py       KeyDecoder: key events (Linux key codes, a US layout) to codes
    limits.py     RateLimit: codes a second, with a burst
    base.py       Reader: the device kept open, reopened after it vanishes, its health
    serial.py     SerialReader: pyserial (any URL), one code a line
    keyboard.py   KeyboardReader: an evdev input device, grabbed (the optional ``evdev`` module)
"""

from drivers.readers.base import Reader
from drivers.readers.config import AnyReader, EvdevReaderConfig, SerialReaderConfig
from drivers.readers.keyboard import KeyboardReader
from drivers.readers.serial import SerialReader

__all__ = [
    "AnyReader",
    "EvdevReaderConfig",
    "KeyboardReader",
    "Reader",
    "SerialReader",
    "SerialReaderConfig",
]
