"""A code read at the locker: judged here, the door opened through the locker's own path.

No round trip: the locker decides from the codes it holds (ADR 0017). A reader's
code goes: lockout? -> match (constant time) -> its state and expiry -> the cabinet
(disabled, a door state unknown) -> written ``opening`` -> ``Locker.submit`` (the
intake's bounds, the cabinet's lock, the pulse gap, confirmation, jam handling) ->
``spent`` and ``code_opened`` through the journal (the outbox: in order, after an
outage). An open that actuated the lock (``LockerError.acted``: jammed, obstructed,
stopped half way) spent its code too, told ``confirmed: false``: a door switch that
never says open may sit on a door that did. Only a refusal before any pulse (disabled,
busy, a silent board, the pulse gap) keeps the code. Codes are never logged: only
their length and what became of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Literal

import structlog

from agent.codes.entries import CodeOpened, ReaderLockedOut
from agent.codes.held import Held, HeldCodes
from agent.codes.lockout import Lockout
from agent.locker.commands import CabinetCommand
from agent.locker.errors import Busy, LockerError
from agent.locker.locker import Locker
from agent.storage.store import StoreError

log = structlog.get_logger(__name__)

Outcome = Literal[
    "opened",  # the door opened
    "unconfirmed",  # the lock acted, the door was not seen open: spent all the same
    "wrong",  # matches no code
    "locked_out",  # the reader takes nothing now
    "busy",  # the reader is still opening a door, or the locker refused for now
    "spent",  # the code opened its door already
    "superseded",  # the cabinet was given to another order since
    "expired",
    "refused",  # the cabinet is disabled, its door unknown, the disk full: the code is kept
]
REFUSED_SHOW_S = 3.0  # a refused code's red flash on the cabinet's indicator


class Pickup:
    """Codes from the readers to doors. ``clock``: monotonic seconds (the lockouts)."""

    def __init__(
        self,
        locker: Locker,
        codes: HeldCodes,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._locker = locker
        self._codes = codes
        self._clock = clock
        self._lockouts: dict[str, Lockout] = {}
        self._busy: set[str] = set()  # readers with a door opening
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self.outcomes: dict[str, int] = {}  # for /metrics and the tests
        self.on_outcome: Callable[[str, Outcome], None] | None = None

    def lockout(self, reader: str) -> Lockout:
        """The lockout state of ``reader`` (made on first use)."""
        return self._lockouts.setdefault(reader, Lockout())

    def locked_for(self, reader: str) -> float:
        """Seconds ``reader`` stays locked out (0: it takes codes)."""
        found = self._lockouts.get(reader)
        return found.locked(self._clock()) if found else 0.0

    def start(self) -> None:
        """At start: codes a dead run left ``opening`` are spent, and the cloud hears
        ``code_opened`` (unconfirmed) for each: a pulse may have gone. A cabinet removed
        from the config since is told with the whole locker's statuses (the order is
        what the cloud needs; the body cannot name a cabinet the locker lacks)."""
        for code in self._codes.interrupted():
            cabinet = self._locker.cabinets.get(code.key)
            log.warning(
                "code.interrupted" if cabinet is not None else "code.interrupted_cabinet_gone",
                key=code.key,
                side=code.side,
                order_id=code.order_id,
            )
            self._locker.journal.publish(
                CodeOpened(cabinet, code.side, code.order_id, confirmed=False)
            )
        if orphans := self._codes.orphans():
            log.warning(
                "codes.door_gone",
                count=len(orphans),
                keys=sorted({c.key for c in orphans}),
                consequence="refused when scanned until the cloud drops them or they expire",
            )

    async def close(self) -> None:
        """Cancel codes being judged (an open running stays ``opening``: see ``start``)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def read(self, reader: str, code: str) -> None:
        """A driver's callback: ``reader`` read ``code`` (judged in a task of its own)."""
        task = asyncio.get_running_loop().create_task(self.scanned(reader, code))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def scanned(self, reader: str, code: str) -> Outcome:
        """Judge ``code`` read by ``reader`` and open its door when it may; the outcome."""
        outcome = await self._judge(reader, code)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        log.info("code.read", reader=reader, length=len(code), outcome=outcome)
        if self.on_outcome is not None:
            self.on_outcome(reader, outcome)
        return outcome

    async def _judge(self, reader: str, code: str) -> Outcome:
        now = self._clock()
        lockout = self.lockout(reader)
        if lockout.locked(now):
            return "locked_out"
        if reader in self._busy:
            return "busy"
        if self._codes.unsaved:  # an open's end the disk refused: it may take it now
            self._codes.save_unsaved()
        found = self._codes.match(code)
        if found is None:
            locked_s = lockout.wrong_code(now)
            if locked_s:
                log.warning("reader.locked_out", reader=reader, locked_s=locked_s)
                self._locker.journal.publish(ReaderLockedOut(reader, locked_s))
            return "wrong"
        # A known code counts as right only once it opens: a spent, superseded or
        # expired one (a customer's own, kept) must not end a run of wrong guesses.
        if found.state == "opening":
            return "busy"
        if found.state in ("spent", "superseded"):
            self._refused(found)
            return found.state
        if self._codes.expired(found):
            self._refused(found)
            return "expired"
        self._busy.add(reader)
        try:
            outcome = await self._open(found)
        finally:
            self._busy.discard(reader)
        if outcome in ("opened", "unconfirmed"):
            lockout.right_code()
        return outcome

    async def _open(self, code: Held) -> Outcome:
        cabinet = self._locker.cabinets.get(code.key)
        if cabinet is None or not cabinet.enabled:
            self._refused(code)
            return "refused"
        try:
            opening = self._codes.mark(code, "opening")  # before the pulse: never twice
        except StoreError as exc:
            log.error("code.unsaved", key=code.key, state="opening", error=str(exc))
            self._refused(code)
            return "refused"
        cmd = CabinetCommand(
            command="open",
            rearload=code.side == "rear",
            order_id=code.order_id,
            reason="pickup code",
        )
        try:
            await asyncio.shield(self._locker.submit(code.key, cmd))
        except LockerError as err:
            log.warning("code.open_failed", key=code.key, error=err.message, acted=err.acted)
            if err.acted:  # the lock was pulsed (or may have been): its one open is done
                self._spent(opening, confirmed=False)
                return "unconfirmed"
            self._codes.settle(opening, "held")  # in memory even if the disk refuses
            self._refused(code)
            return "busy" if isinstance(err, Busy) else "refused"
        except Exception:  # a bug: it may have acted, so never a second pulse
            log.exception("code.open_crashed", key=code.key)
            self._spent(opening, confirmed=False)
            return "unconfirmed"
        self._spent(opening, confirmed=True)
        return "opened"

    def _spent(self, code: Held, *, confirmed: bool) -> None:
        # Told first, then spent: a power cut between them tells the cloud twice (the
        # row still says "opening"), never not at all.
        cabinet = self._locker.cabinets.get(code.key)
        self._locker.journal.publish(CodeOpened(cabinet, code.side, code.order_id, confirmed))
        self._codes.settle(code, "spent")

    def _refused(self, code: Held) -> None:
        """Show the refusal on the code's cabinet, where it has an indicator."""
        self._locker.indicators.flash(code.key, "code_refused", REFUSED_SHOW_S)
