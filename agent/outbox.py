"""The outbox: feedback messages waiting for the cloud, in the order they happened.

A change is appended before it is shown anywhere else; the uplink deletes a
message only after the cloud answered 2xx for it. This module holds the
interface and the in-memory store; the durable store implements the same.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["change", "snapshot", "heartbeat", "alarm"]


@dataclass(frozen=True, slots=True)
class Message:
    """One feedback message: the spec's ``cabinets`` entries plus ``event.type``."""

    seq: int
    kind: Kind
    event: str
    cabinets: tuple[dict[str, Any], ...]
    created: float = field(default_factory=time.monotonic)


class Outbox(Protocol):
    def append(self, kind: Kind, event: str, cabinets: list[dict[str, Any]]) -> Message: ...

    def peek(self, limit: int) -> list[Message]: ...

    def ack(self, seqs: list[int]) -> None: ...

    async def wait(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class MemoryOutbox:
    """Keeps messages in memory: lost on a crash; the durable store replaces it."""

    def __init__(self) -> None:
        self._items: deque[Message] = deque()
        self._seq = 0
        self._ready = asyncio.Event()

    def append(self, kind: Kind, event: str, cabinets: list[dict[str, Any]]) -> Message:
        self._seq += 1
        msg = Message(self._seq, kind, event, tuple(cabinets))
        self._items.append(msg)
        self._ready.set()
        return msg

    def peek(self, limit: int) -> list[Message]:
        return [self._items[i] for i in range(min(limit, len(self._items)))]

    def ack(self, seqs: list[int]) -> None:
        done = set(seqs)
        self._items = deque(m for m in self._items if m.seq not in done)
        if not self._items:
            self._ready.clear()

    async def wait(self) -> None:
        await self._ready.wait()

    def stats(self) -> dict[str, Any]:
        oldest = self._items[0].created if self._items else None
        return {
            "pending": len(self._items),
            "oldest_age_s": round(time.monotonic() - oldest, 3) if oldest else 0.0,
        }

    def close(self) -> None:
        self._items.clear()
