"""What one write to a Kerong bus may bring back, registered before it goes out (ADR 0014)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from drivers.kerong import codec

STATUS = "status"
UNLOCK = "unlock"


@dataclass(slots=True, eq=False)
class Expectation:
    """What one request may bring back, registered before it is written.

    ``tag`` orders the requests (a board answers in order); ``kind`` is ``STATUS`` (one
    reply owed, timed) or ``UNLOCK`` (none, or one status, maybe once the lock moved);
    ``addrs`` the ADDR bytes a reply may carry; ``reply`` the future of whoever waits
    for it (None: nobody waits); ``sent`` and ``until`` loop times: written, and the last
    moment a reply to it can still come (``inf`` until written).
    """

    tag: int
    board: int
    kind: str
    addrs: frozenset[int]
    reply: asyncio.Future[codec.Frame] | None
    extra_s: float = 0.0  # an unlock: the pulse, during which the lock may move
    sent: float = 0.0
    until: float = float("inf")
    answered: bool = False
    timed_out: bool = False
    frame: codec.Frame | None = None  # the frame that answered it
    doubled: bool = False  # a second answer came before the next write
    teaches: bool = True  # an unlock: whether its answer, or none, says how the board answers


def status_addrs(board: int) -> frozenset[int]:
    """The ADDR forms of a board's status reply."""
    return frozenset((board << 4,))
