"""Two boards set to one address: told by two answers to two polls in a row."""

from __future__ import annotations

import asyncio
from collections import Counter

import structlog

from drivers.kerong import codec

log = structlog.get_logger(__name__)

# Two boards answering one request with different bits: the board's status changes
# are not reported for this long after the last such pair (its doors would flap),
# and the fault is logged at most this often per board.
_TWIN_HOLD_S = 10.0
_TWIN_LOG_S = 60.0


class TwinWatch:
    """What a bus has seen of boards answering twice: ``seen`` each second answer to a
    poll that followed a poll answered twice (counted in ``counts[(board, "twins")]``);
    ``twinned(board)`` while two such answers disagreed within ``_TWIN_HOLD_S``."""

    def __init__(self, name: str, counts: Counter[tuple[int, str]]) -> None:
        self._name = name
        self._counts = counts
        self._twinned_until: dict[int, float] = {}
        self._twin_logged: dict[int, float] = {}

    def twinned(self, board: int) -> bool:
        """Whether two boards answering as ``board`` disagreed within the last
        ``_TWIN_HOLD_S``: which one is right cannot be told."""
        return bool(self._twinned_until) and (
            asyncio.get_running_loop().time() < self._twinned_until.get(board, 0.0)
        )

    def seen(self, board: int, first: codec.Frame | None, second: codec.Frame) -> None:
        """A second status reply to one request: two boards are set to one address."""
        self._counts[(board, "twins")] += 1
        now = asyncio.get_running_loop().time()
        differ = first is not None and first.raw != second.raw
        if differ:
            self._twinned_until[board] = now + _TWIN_HOLD_S
        if now >= self._twin_logged.get(board, float("-inf")):
            self._twin_logged[board] = now + _TWIN_LOG_S
            log.warning(
                "kerong.twin_reply",
                bus=self._name,
                board=board,
                first=first.raw.hex(" ") if first is not None else None,
                second=second.raw.hex(" "),
                held=differ,
            )
