"""One message waiting in the outbox: the spec's ``cabinets`` entries and ``event.type``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

# What a queued message is, for the outbox's bounds and batching.
Kind = Literal["change", "snapshot", "heartbeat", "alarm"]


@dataclass(frozen=True, slots=True)
class Message:
    """One queued message: the spec's ``cabinets`` entries plus ``event.type``."""

    seq: int
    kind: Kind
    event: str
    cabinets: tuple[dict[str, Any], ...]
    created: float  # wall time, for people only: order is by seq

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Message:
        """A message from an outbox row; ValueError when its cabinets are not a JSON
        list of objects (a damaged row)."""
        seq, kind, event, cabinets, created = row
        decoded = json.loads(cabinets)
        if not isinstance(decoded, list) or not all(isinstance(c, dict) for c in decoded):
            raise ValueError("cabinets is not a list of objects")
        return cls(seq, kind, event, tuple(decoded), created)

    def doors(self) -> set[tuple[int, str]]:
        """The (cabinet key, side) of every door status the message carries."""
        return {
            (c["key"], side)
            for c in self.cabinets
            for side in ("front", "rear")
            if c.get(f"{side}_status")
        }
