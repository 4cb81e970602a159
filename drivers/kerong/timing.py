"""How long a bus waits for a reply: the configured start, raised by late replies (bounded);
and how often it reads its boards at rest (the poller's pace, which the config defaults to)."""

from __future__ import annotations

from collections import deque

# NOTE: the figures and why they are these: docs/adr/0014-what-a-write-may-bring-back.md.
MARGIN = 3.0
"""The timeout learned is this many times the slowest recent reply."""

LATE_FACTOR = 3.0
"""A reply is waited for (as late, if past the timeout) until this many timeouts after
its request was written; only then may the board be asked again."""

CEILING_S = 2.0
"""The longest timeout learned (twice what public clients wait), unless configured longer."""

RECENT = 32
"""Replies remembered: the timeout follows the slowest of them."""

# At rest each board is read this often (seconds): a door that changes at rest is seen
# within it plus one read (docs/benchmarks.md: 300 ms p99 to the cloud is the aim).
REST_INTERVAL_S = 0.25
# After the last command, change or door held open, the bus stays at the wire's pace
# this long (seconds): a person at a locker acts again within it (ADR 0015).
ACTIVE_HOLD_S = 10.0


class ReplyClock:
    """The reply timeout of one bus, in seconds.

    Starts at ``start_s`` (the config's ``reply_timeout_s``), which is also its floor.
    Every reply seen is ``seen(latency_s)``: seconds from the write to the reply. A
    late one raises the timeout at once to ``MARGIN`` times the slowest recent reply
    (at most ``CEILING_S``, or ``start_s`` if that is longer); once the slow replies
    have left the last ``RECENT``, it comes back down, never below ``start_s``.
    """

    __slots__ = ("_ceiling_s", "_floor_s", "_recent", "timeout_s")

    def __init__(self, start_s: float) -> None:
        self._floor_s = start_s
        self._ceiling_s = max(start_s, CEILING_S)
        self._recent: deque[float] = deque(maxlen=RECENT)
        self.timeout_s = start_s

    @property
    def ceiling_s(self) -> float:
        """The longest timeout this clock learns, seconds."""
        return self._ceiling_s

    @property
    def late_window_s(self) -> float:
        """Seconds after a write during which its reply is still taken as its own."""
        return LATE_FACTOR * self.timeout_s

    @property
    def answer_s(self) -> float:
        """Seconds an answer sent at once takes here: ``MARGIN`` times the slowest recent
        reply (the timeout before any was seen, and never more than it)."""
        if not self._recent:
            return self.timeout_s
        return min(self.timeout_s, MARGIN * max(self._recent))

    def seen(self, latency_s: float, *, late: bool = False) -> None:
        """A reply came ``latency_s`` seconds after its request was written."""
        recent = self._recent
        recent.append(latency_s)
        if late or latency_s * MARGIN > self.timeout_s or self.timeout_s > self._floor_s:
            wanted = MARGIN * max(recent)
            self.timeout_s = min(self._ceiling_s, max(self._floor_s, wanted))
