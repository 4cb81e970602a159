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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# BCM numbers of the BCM2835 family (compute modules expose more than the header's 0-27).
MAX_PIN = 53


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
