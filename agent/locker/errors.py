"""Domain errors: why a command could not be carried out, in the locker's words.

The domain (locker, actions, hardware, command log) raises these; the two edges
that take commands, the local API and the cloud's command channel, turn them into
the JSON error model with one table (``agent.locker.commands.error_body``). No HTTP
status is chosen anywhere else.
"""

from __future__ import annotations


class LockerError(Exception):
    """Base of every domain error.

    ``message`` is one line for a person; ``errors`` maps a field name to what is
    wrong with it (only for ``Invalid``, as the SYNQ API answers a 422). ``acted``: the
    command actuated the hardware (a pulse, a motor run) or may have (stopped half
    way), so nothing may run it again; False when refused before any actuation.
    """

    acted = False

    def __init__(
        self, message: str, errors: dict[str, list[str]] | None = None, *, acted: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.acted = acted or type(self).acted


class Invalid(LockerError):
    """The command itself is malformed or impossible as written."""


class NotFound(LockerError):
    """No cabinet with that key."""


class Conflict(LockerError):
    """The command does not fit the cabinet as it is (disabled, no rear door, no heater)."""


class Unavailable(LockerError):
    """The hardware cannot act or tell right now (port closed, board silent, starting).

    Transient: a retry later may succeed, so it is never remembered as a result.
    """


class Busy(LockerError):
    """Not now: the lock's pulse gap or the command queue is full; retry after ``retry_after_s``.

    Transient, like ``Unavailable``: never remembered as a result.
    """

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Jammed(LockerError):
    """A lock was pulsed twice and its door never read open (a jam, or a broken switch)."""

    acted = True


class Obstructed(LockerError):
    """A motorised door did not reach its end switch (something in the way)."""

    acted = True
