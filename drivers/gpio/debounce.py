"""The debouncer of ``GpioInput``.

Debouncing is ours, not gpiozero's: gpiozero's ``bounce_time`` differs between pin
factories and mock pins do not bounce at all. ``Debouncer`` is pure and runs on any
clock; ``GpioInput`` drives it with ``loop.time()``.
"""

from __future__ import annotations


class Debouncer:
    """A level counts once it has held for ``stable_s``; pure, for any clock.

    Every change of the raw level restarts the window; going back to the debounced
    value inside the window cancels the pending change.
    """

    def __init__(self, stable_s: float, initial: bool) -> None:
        if stable_s < 0:
            raise ValueError(f"stable_s must be >= 0, not {stable_s}")
        self.stable_s = stable_s
        self.value = initial
        self._pending: bool | None = None
        self._since = 0.0

    def feed(self, raw: bool, now: float) -> None:
        """A raw edge or level seen at ``now``."""
        raw = bool(raw)
        if raw == self.value:
            self._pending = None
        elif self._pending is None:
            self._pending = raw
            self._since = now
        # else: the same new level seen again; it has held since `_since`

    def poll(self, now: float) -> bool | None:
        """The new debounced value if it settled by ``now``, else None."""
        if self._pending is None or now < self._since + self.stable_s:
            return None
        self.value = self._pending
        self._pending = None
        return self.value

    def due(self) -> float | None:
        """When poll() may settle the pending change; None if nothing is pending."""
        return None if self._pending is None else self._since + self.stable_s
