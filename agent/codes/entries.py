"""What the cloud hears of pickup codes: journal entries the outbox carries in order.

``code_opened`` (``order_id``, the cabinet's door statuses; ``confirmed: false`` when the
lock acted but the door was not seen open: jammed, a broken switch, a power cut between
the pulse and the record; the whole locker's statuses for a cabinet no longer in the
config, as the feedback body cannot name a cabinet without its door status) and
``reader_locked_out`` (``reader``, ``locked_s``, the whole locker's statuses: the event
has no cabinet of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import Side
from agent.locker.cabinet import Cabinet
from agent.locker.journal import Feedback, Told

EVENT_CODE_OPENED = "code_opened"
EVENT_READER_LOCKED_OUT = "reader_locked_out"


@dataclass(frozen=True, slots=True)
class CodeOpened:
    """A journal entry: a pickup code opened ``cabinet``'s door on ``side`` (None: a
    cabinet removed from the config since)."""

    cabinet: Cabinet | None
    side: Side
    order_id: int | str
    confirmed: bool = True

    def apply(self) -> None:
        """Nothing to show: the door's own change carries the state."""

    def told(self, snapshot: Callable[..., Feedback]) -> Told:
        """(alarm kind, ``code_opened``, the cabinet, its order id and side; when no door
        of it is known, the cabinet's ``key`` and what is known of the locker, which a
        cloud refusing an empty list still takes)."""
        own = self.cabinet.feedback() if self.cabinet is not None else None
        cabinets = [own] if own else snapshot()
        detail: dict[str, Any] = {"order_id": self.order_id, "side": self.side}
        if not own and self.cabinet is not None:
            detail["key"] = self.cabinet.key
        if not self.confirmed:
            detail["confirmed"] = False
        return "alarm", EVENT_CODE_OPENED, cabinets, detail


@dataclass(frozen=True, slots=True)
class ReaderLockedOut:
    """A journal entry: reader ``reader`` takes no code for ``locked_s`` seconds."""

    reader: str
    locked_s: float

    def apply(self) -> None:
        """Nothing to show: /healthz reads the readers themselves."""

    def told(self, snapshot: Callable[..., Feedback]) -> Told:
        """(alarm kind, ``reader_locked_out``, the whole locker, the reader and seconds)."""
        detail = {"reader": self.reader, "locked_s": round(self.locked_s)}
        return "alarm", EVENT_READER_LOCKED_OUT, snapshot(), detail
