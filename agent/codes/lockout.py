"""A reader locked out after a run of wrong codes, for a time that grows with each run.

Pure: the caller passes the monotonic time. ``after`` wrong codes in a row lock the
reader for ``base_s``; each further lockout doubles it, up to ``max_s``; a right code
ends the run and the growth. Codes read while locked out are not judged at all (not
even counted as wrong): a door never opens during a lockout, whatever is read.
"""

from __future__ import annotations

from dataclasses import dataclass

AFTER = 5  # wrong codes in a row
BASE_S = 30.0  # the first lockout, seconds
MAX_S = 960.0  # the longest, seconds (16 min)


@dataclass(slots=True)
class Lockout:
    """One reader's run of wrong codes and its lockout."""

    after: int = AFTER
    base_s: float = BASE_S
    max_s: float = MAX_S
    wrong: int = 0  # wrong codes in the current run
    lockouts: int = 0  # lockouts since the last right code
    until: float = 0.0  # monotonic time the current lockout ends

    def locked(self, now: float) -> float:
        """Seconds left of the lockout at ``now`` (0: not locked out)."""
        return max(0.0, self.until - now)

    def wrong_code(self, now: float) -> float:
        """A wrong code at ``now``; the lockout it starts, in seconds (0: none yet)."""
        self.wrong += 1
        if self.wrong < self.after:
            return 0.0
        self.wrong = 0
        length = min(self.max_s, self.base_s * 2**self.lockouts)
        self.lockouts += 1
        self.until = now + length
        return length

    def right_code(self) -> None:
        """A code that matched: the run of wrong ones is over."""
        self.wrong = 0
        self.lockouts = 0
