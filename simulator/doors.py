"""The parts of a GPIO cabinet and their physics: doors, an item sensor, an indicator.

A :class:`Door` is a position from 0.0 (shut) to 1.0 (fully open) and the lines
wired to it. A motorised door moves at ``1 / travel_s`` per second while exactly
one of its motor outputs is energised; both at once move nothing (a fault).
Its closed switch is active iff the position is 0, its open end switch iff it
is 1, and something in the doorway (the light beam) physically stops a
closing door. A latch door springs fully open on a lock pulse unless the
latch is jammed. A :class:`Cabinet` adds an item sensor and an RGB indicator
read back from its three outputs.

The parts read and set :mod:`simulator.mock_pins` lines only; the clock, the
people and the wiring from the config belong to
:class:`simulator.touchless.TouchlessLocker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from agent.config import Side
from simulator.mock_pins import InputLine, OutputLine

log = structlog.get_logger(__name__)

Motor = Literal["opening", "closing", "fault"]
RGB = tuple[float, float, float]

ROUND = 4  # digits kept when deciding whether something changed, and in snapshots


@dataclass(slots=True)
class Door:
    """One door of cabinet ``key``: its position, its lines and its faults."""

    key: int
    side: Side
    switch: InputLine  # active while shut
    open_switch: InputLine | None = None  # active while fully open
    beam: InputLine | None = None  # active while something is in the doorway
    lock: OutputLine | None = None
    motor_open: OutputLine | None = None
    motor_close: OutputLine | None = None
    position: float = 0.0  # 0 shut .. 1 fully open
    blocked: bool = False  # something in the doorway
    motor_broken: bool = False  # the motor runs, the door does not move
    jammed: bool = False  # the latch does not let go
    pulses: int = 0  # lock pulses taken
    pulses_seen: int = 0  # the lock line's energising edges already taken
    motor_was: Motor | None = None  # the motor state as last stepped

    @property
    def motorised(self) -> bool:
        """Whether the door has both motor outputs."""
        return self.motor_open is not None and self.motor_close is not None

    @property
    def shut(self) -> bool:
        """Whether the door is at position 0."""
        return self.position <= 0.0

    def motor(self) -> Motor | None:
        """What the motor outputs do now; None for no motor or a motor at rest."""
        if self.motor_open is None or self.motor_close is None:
            return None
        opening, closing = self.motor_open.on, self.motor_close.on
        if opening and closing:
            return "fault"
        return "opening" if opening else "closing" if closing else None

    def update_inputs(self) -> None:
        """Set the switches and the beam to what the door's position and doorway give."""
        self.switch.set(self.position <= 0.0)
        if self.open_switch is not None:
            self.open_switch.set(self.position >= 1.0)
        if self.beam is not None:
            self.beam.set(self.blocked)

    def pending_pulses(self) -> int:
        """Lock pulses on the line that :meth:`take_pulses` has not taken yet."""
        return 0 if self.lock is None else max(0, self.lock.edges - self.pulses_seen)

    def take_pulses(self) -> bool:
        """Count the lock's new pulses; True if there were any."""
        if self.lock is None:
            return False
        count = self.lock.edges  # read once: a relay may pulse from a gpiozero thread
        new, self.pulses_seen = count - self.pulses_seen, count
        if new <= 0:
            return False
        self.pulses += new
        return True

    def release(self) -> None:
        """A lock pulse on a latch door: it springs open unless the latch is jammed."""
        if self.jammed:
            log.info("simulated latch jammed: door stays shut", key=self.key, side=self.side)
        elif self.shut:
            log.info("simulated latch released: door springs open", key=self.key, side=self.side)
            self.position = 1.0

    def move(self, dt_s: float, travel_s: float) -> None:
        """Run the motor for ``dt_s`` seconds; a full travel takes ``travel_s``."""
        state = self.motor()
        if state != self.motor_was:
            if state == "fault":
                log.error("simulated motor fault: both directions energised", key=self.key)
            self.motor_was = state
        if state is None or state == "fault" or self.motor_broken:
            return
        if state == "opening":
            self.position = min(1.0, self.position + dt_s / travel_s)
        elif not self.blocked:  # a closing door cannot push through what is in the way
            self.position = max(0.0, self.position - dt_s / travel_s)

    def view(self) -> dict[str, Any]:
        """The door as a web view shows it, JSON-able."""
        return {
            "position": round(self.position, ROUND),
            "closed": self.position <= 0.0,
            "fully_open": self.position >= 1.0,
            "motorised": self.motorised,
            "motor": self.motor(),
            "motor_broken": self.motor_broken,
            "beam": None if self.beam is None else self.blocked,
            "latch": self.lock is not None,
            "jammed": self.jammed,
            "lock_pulses": self.pulses,
        }


@dataclass(slots=True)
class Cabinet:
    """One cabinet's parts on GPIO: doors by side, an item sensor, an RGB indicator."""

    key: int
    doors: dict[str, Door] = field(default_factory=dict)
    item: InputLine | None = None
    item_present: bool = False
    led: tuple[OutputLine, OutputLine, OutputLine] | None = None

    def color(self) -> RGB | None:
        """The indicator's colour, (r, g, b) each 0.0-1.0; None without an indicator."""
        if self.led is None:
            return None
        r, g, b = (round(line.brightness, ROUND) for line in self.led)
        return (r, g, b)

    def view(self) -> dict[str, Any]:
        """The cabinet as a web view shows it, JSON-able."""
        color = self.color()
        return {
            "key": self.key,
            "front": self.doors["front"].view() if "front" in self.doors else None,
            "rear": self.doors["rear"].view() if "rear" in self.doors else None,
            "item": None if self.item is None else self.item_present,
            "led": None if color is None else list(color),
        }
