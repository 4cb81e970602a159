"""What a Kerong board is in the emulator: a compartment's physical state, and the
variant of board (how it answers what the public clients disagree on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(slots=True)
class ChannelState:
    """One compartment as the physical world has it.

    ``latched`` implies the door is shut: a door that is open cannot be held by
    the latch. The board's lock feedback says "closed" only when the door is
    shut *and* latched.
    """

    door_open: bool = False
    latched: bool = True
    item: bool = False
    jammed: bool = False

    @property
    def closed(self) -> bool:
        """True when the door is shut and latched: what the lock feedback reports."""
        return self.latched and not self.door_open


class BoardVariant(BaseModel):
    """How a model of board behaves where the public clients disagree
    (``shared/protocols/kerong-cu16.md``): ``unlock_reply`` (``"none"``: an unlock gets
    no answer; ``"board"``: a 0x35 status frame with the board's ADDR; ``"lock"``: with
    the unlock frame's own ADDR), ``unlock_reply_after_s`` (0: the answer goes at once,
    before the lock moves; above 0: that many seconds later, once it has moved, with the
    status then) and ``reply_delay_s`` (every reply that much later, as through a TCP
    gateway; the wrappers with a clock apply it). Raises ``pydantic.ValidationError``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unlock_reply: Literal["none", "board", "lock"] = "none"
    unlock_reply_after_s: float = Field(0.0, ge=0, le=5)
    reply_delay_s: float = Field(0.0, ge=0, le=5)


VARIANTS: dict[str, BoardVariant] = {
    "quiet": BoardVariant(),
    "board-at-once": BoardVariant(unlock_reply="board"),
    "lock-at-once": BoardVariant(unlock_reply="lock"),
    "board-once-moved": BoardVariant(unlock_reply="board", unlock_reply_after_s=0.03),
    "lock-once-moved": BoardVariant(unlock_reply="lock", unlock_reply_after_s=0.03),
    "gateway": BoardVariant(reply_delay_s=0.03),
    "gateway-lock-once-moved": BoardVariant(
        unlock_reply="lock", unlock_reply_after_s=0.03, reply_delay_s=0.03
    ),
}
"""The board variants the public clients show, by name (the driver's tests run each)."""
