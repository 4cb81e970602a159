"""What may wait for a cabinet: commands bounded per cabinet and in all.

A command costs its sender nothing and the agent a task and its parsed body until
it is answered, so both edges (the local API and the cloud's channel) admit a
command here, synchronously, before anything waits: beyond a bound it is refused
at once as ``Busy``. Only parsed commands wait; the raw text is gone by then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from agent.locker.errors import Busy

PER_CABINET = 4  # commands waiting or running for one cabinet
SPARE = 16  # beyond two for every cabinet (open-all takes one of each)
RETRY_S = 1.0  # what a refused sender is told to wait


class Intake:
    """Commands admitted and not yet answered: ``per_cabinet`` a cabinet, ``total`` in all."""

    def __init__(self, per_cabinet: int, total: int) -> None:
        self.per_cabinet = per_cabinet
        self.total = total
        self._waiting: Counter[int] = Counter()
        self.refused = 0  # for /metrics

    @property
    def waiting(self) -> int:
        """Commands admitted and not yet answered, in all."""
        return self._waiting.total()

    def admit(self, key: int) -> Callable[[], None]:
        """Take a command for cabinet ``key``; returns its release. ``Busy`` when full."""
        if self._waiting[key] >= self.per_cabinet or self.waiting >= self.total:
            self.refused += 1
            where = f"cabinet {key}" if self._waiting[key] >= self.per_cabinet else "the locker"
            raise Busy(f"too many commands waiting for {where}", retry_after_s=RETRY_S)
        self._waiting[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._waiting[key] -= 1

        return release
