"""The wait before a link's next try: exponential backoff with full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Seconds to wait before try ``attempt + 1``: uniform in
    [0, min(cap_s, base_s * 2**attempt)] (``rand()`` in [0, 1))."""
    return rand() * min(cap_s, base_s * 2 ** min(attempt, 32))


class Backoff:
    """One link's retry waits: ``failures`` since its last success, in seconds."""

    def __init__(
        self, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self._rand = rand
        self.failures = 0

    def next_s(self) -> float:
        """The wait before the next try; counts one more failure."""
        delay = backoff_delay(self.failures, self.base_s, self.cap_s, self._rand)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """The link works again: the next failure waits the shortest."""
        self.failures = 0
