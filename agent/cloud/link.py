"""One cloud link's health: up or down, how often it dropped, and whether it flaps.

A link that drops and comes back every few minutes looks "ok" at almost any moment
one looks; what tells the truth is the count. So each link keeps its drops (an up
that went down) in a window of ``window_s`` of monotonic time, and with
``unstable_after`` of them or more it is unstable until the window has passed
without them. Never the wall clock: a Pi steps it by days at its first NTP sync.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 600.0  # drops are counted over the last ten minutes
UNSTABLE_AFTER = 3  # this many drops in the window: the link is unstable
_KEPT = 1000  # drops remembered at most (memory stays bounded whatever the cloud does)


class LinkHealth:
    """Up/down of the link ``name`` ("command channel", "uplink") and its drops.

    ``drops`` counts every up that went down since start (a counter for /metrics).
    Seconds: ``window_s``; ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        name: str,
        *,
        window_s: float = WINDOW_S,
        unstable_after: int = UNSTABLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.window_s = window_s
        self.unstable_after = unstable_after
        self._clock = clock
        self.up = False
        self.drops = 0
        self.reason = "not connected yet"  # why it is (or last went) down
        self._changed_at = clock()  # when it last went up or down
        self._recent: deque[float] = deque(maxlen=_KEPT)

    def went_up(self) -> None:
        """The link works (a peer heard, a POST taken)."""
        if not self.up:
            self.up = True
            self._changed_at = self._clock()

    def went_down(self, reason: str) -> None:
        """The link failed for ``reason`` (no secret in it): a drop when it was up."""
        self.reason = reason
        if self.up:
            self.up = False
            now = self._clock()
            self._changed_at = now
            self.drops += 1
            self._recent.append(now)

    def down_for(self) -> float:
        """Seconds since the link went down (0 while up)."""
        return 0.0 if self.up else self._clock() - self._changed_at

    def recent_drops(self) -> int:
        """Drops within the last ``window_s``."""
        horizon = self._clock() - self.window_s
        while self._recent and self._recent[0] <= horizon:
            self._recent.popleft()
        return len(self._recent)

    def flapping(self) -> str | None:
        """ "dropped 3 times in the last 10 min", when that is ``unstable_after`` or more."""
        n = self.recent_drops()
        if n < self.unstable_after:
            return None
        return f"dropped {n} times in the last {duration(self.window_s)}"

    def unstable(self) -> str | None:
        """The health line of a link that keeps dropping, even while it is up now:
        "command channel unstable: dropped 3 times in the last 10 min (last: ...)"."""
        flapping = self.flapping()
        if flapping is None:
            return None
        return f"{self.name} unstable: {flapping} (last: {self.reason})"


def duration(seconds: float) -> str:
    """A span for people: "45 s", "10 min", "2 h 5 min"."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    minutes = s // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
