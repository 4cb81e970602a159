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
    detail: dict[str, Any] | None = None  # more of the event than its type

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Message:
        """A message from an outbox row; ValueError when its cabinets are not a JSON
        list of objects, or its detail not an object (a damaged row)."""
        seq, kind, event, cabinets, created, detail = row
        decoded = json.loads(cabinets)
        if not isinstance(decoded, list) or not all(isinstance(c, dict) for c in decoded):
            raise ValueError("cabinets is not a list of objects")
        told = None if detail is None else json.loads(detail)
        if told is not None and not isinstance(told, dict):
            raise ValueError("detail is not an object")
        return cls(seq, kind, event, tuple(decoded), created, told)

    def doors(self) -> set[tuple[int, str]]:
        """The (cabinet key, side) of every door status the message carries."""
        return {
            (c["key"], side)
            for c in self.cabinets
            for side in ("front", "rear")
            if c.get(f"{side}_status")
        }
