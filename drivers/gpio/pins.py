"""Pin specs: which GPIO line, and how it is wired.

Pin specs follow Klipper: a BCM number (``17``, ``"17"``, ``"GPIO17"``) with the
optional prefixes ``^`` (pull-up, inputs only) and ``!`` (active low), in either
order. How they map onto gpiozero's inputs (gpiozero ties ``pull_up=True`` to
"low is active", so pull-up + active high needs the pull set by hand):

    spec    pull      active when   gpiozero
    "5"     floating  high          pull_up=None, active_state=True
    "!5"    floating  low           pull_up=None, active_state=False
    "^!5"   up        low           pull_up=True               (switch to ground)
    "^5"    up        high          pull_up=None, active_state=True, then pin.pull="up"

``GpioBus.input`` applies that mapping; outputs take ``!`` only.

``parse_pin`` is the one grammar: the config models (``drivers.gpio.config``) validate
pin fields with it and store the ``PinSpec``, and the bus takes a ``PinSpec`` as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# BCM numbers of the BCM2835 family (compute modules expose more than the header's 0-27).
MAX_PIN = 53

# GPIO2 and GPIO3 (I2C SDA/SCL) have 1.8 kOhm pull-ups soldered on every Raspberry Pi
# with the 40-pin header; gpiozero refuses any other pull on them ("fixed pull").
FIXED_PULL_UP = frozenset({2, 3})


@dataclass(frozen=True, slots=True)
class PinSpec:
    """One parsed pin: its BCM ``number`` (0 to ``MAX_PIN``), ``pull_up`` (``^``) and
    ``active_low`` (``!``). ``str()`` gives the canonical spec, e.g. ``"^!GPIO5"``,
    which ``parse_pin`` reads back to the same value."""

    number: int  # BCM
    pull_up: bool
    active_low: bool

    def __str__(self) -> str:
        return f"{'^' if self.pull_up else ''}{'!' if self.active_low else ''}GPIO{self.number}"


_PIN_RE = re.compile(r"(?:GPIO)?(\d{1,2})", re.IGNORECASE)


class PinSpecError(ValueError):
    """A pin spec ``parse_pin`` cannot read. ``str()`` names the spec; ``reason`` says
    what is wrong without it (the config puts the key path in front instead)."""

    def __init__(self, spec: object, reason: str) -> None:
        super().__init__(f"pin {spec!r}: {reason}")
        self.reason = reason


def parse_pin(spec: int | str | PinSpec) -> PinSpec:
    """``17``, ``"17"``, ``"GPIO17"``, with optional ``^`` (pull-up) and ``!`` (active
    low) prefixes, in either order; a ``PinSpec`` is returned as is. BCM numbers only
    (no ``BOARD11``), 0 to ``MAX_PIN``. Raises ``PinSpecError`` (a ``ValueError``)."""
    if isinstance(spec, PinSpec):
        return spec
    if isinstance(spec, bool):
        raise PinSpecError(spec, "expected a BCM number or a string like '^!GPIO5'")
    if isinstance(spec, int):
        number, pull_up, active_low = spec, False, False
    elif isinstance(spec, str):
        rest = spec.strip()
        pull_up = active_low = False
        while rest[:1] in ("^", "!"):
            if rest[0] == "^":
                if pull_up:
                    raise PinSpecError(spec, "'^' given twice")
                pull_up = True
            else:
                if active_low:
                    raise PinSpecError(spec, "'!' given twice")
                active_low = True
            rest = rest[1:]
        match = _PIN_RE.fullmatch(rest)
        if match is None:
            raise PinSpecError(spec, "expected a BCM number like 17 or 'GPIO17'")
        number = int(match.group(1))
    else:
        raise PinSpecError(spec, "expected a BCM number or a string like '^!GPIO5'")
    if not 0 <= number <= MAX_PIN:
        raise PinSpecError(spec, f"BCM number must be between 0 and {MAX_PIN}")
    return PinSpec(number, pull_up, active_low)
