"""A token bucket: at most ``rate`` codes a second on average, ``burst`` at once."""

from __future__ import annotations

from dataclasses import dataclass

RATE = 2.0  # codes a second: a person scans one every few seconds
BURST = 5


@dataclass(slots=True)
class RateLimit:
    """Pure: the caller passes the monotonic time (seconds)."""

    rate: float = RATE
    burst: int = BURST
    _tokens: float = float(BURST)
    _at: float | None = None

    def take(self, now: float) -> bool:
        """Whether one more code may pass at ``now``."""
        if self._at is None:
            self._tokens = float(self.burst)
        else:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
