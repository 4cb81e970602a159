"""Commands deduplicated by id: a retried command returns the first result without acting again.

Finished results live in the state store, so this holds across restarts too;
a repeat that arrives while the first is still running waits for it and gets
the same answer. An unlock is never sent twice by a retry (Open-Locker: dedupe
commands by id).

- A result that could not be saved (disk full) is still the answer: the first
  caller and every waiter get it, and it is kept in memory for later repeats.
- ``Unavailable`` is not a result but a moment (the board was silent): it is not
  remembered, so the same id acts once the hardware is back.
- The intent is written before the command acts: a command the process died in
  the middle of is answered ``Conflict`` (outcome unknown) on a retry, never run
  again. A bug or a cancellation inside a command is treated the same way.
- Results are forgotten by count only (``StateStore.max_commands``): no clock step
  can make a resent id act twice. Ids come namespaced from the edges
  (``local:<Idempotency-Key>``, ``cloud:<id>``), so they never collide.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from agent.locker import errors
from agent.locker.errors import Busy, Conflict, Invalid, LockerError, Unavailable
from agent.storage.store import Outcome, StateStore, StoreError

log = structlog.get_logger(__name__)

MAX_ID_LENGTH = 200  # of the id a client or the cloud gives, before its namespace
TRIM_EVERY = 100  # saves between two trims of the stored results
MEMORY_RESULTS = 1000  # results kept in memory when the store cannot save them
REPEAT_STOP_S = 1.0  # a repeat stopped while its first runs: how long it waits for that answer

Result = tuple[str, float, Outcome, dict[str, Any]]  # fingerprint, wall time, outcome, answer
INTERRUPTED = (
    "this command began before a restart and may have acted; its outcome is unknown:"
    " read the cabinet's state instead of sending it again"
)


def _error_from(saved: dict[str, Any]) -> LockerError:
    cls = getattr(errors, str(saved.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, LockerError)):
        cls = errors.Conflict  # a result written by another version
    return cls(str(saved.get("message", "")), saved.get("errors"), acted=saved.get("acted") is True)


class CommandLog:
    """Runs a command once per (namespaced) id, remembering results in ``store``."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._saves = 0
        self._running: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._unsaved: OrderedDict[str, Result] = OrderedDict()

    async def run(
        self,
        command_id: str | None,
        action: Callable[[], Awaitable[dict[str, Any]]],
        fingerprint: str = "",
        *,
        durable: bool = True,
    ) -> dict[str, Any]:
        """Run ``action`` unless ``command_id`` already ran; the first answer otherwise.

        ``fingerprint`` names what the command does: an id reused for another command
        is refused (``Invalid``). ``durable``: its intent must reach the disk before it
        acts (``Unavailable`` otherwise), for what acting twice would harm (a pulse);
        a command safe to repeat (a disable) acts with its intent kept in memory.
        Raises what ``action`` raises, or the remembered domain error.
        """
        if command_id is None:
            return await action()
        running = self._running.get(command_id)
        if running is not None:
            _check(running[0], fingerprint)
            return await _repeat(running[1])
        done = self._remembered(command_id)
        if done is not None:
            _check(done[0], fingerprint)
            if done[2] == "ok":
                return done[3]
            if done[2] == "failed":
                raise _error_from(done[3])
            # It began and never finished: it may have pulsed. Never twice.
            raise Conflict(INTERRUPTED, acted=True)

        now = time.time()  # for people reading the store; never compared
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._running[command_id] = (fingerprint, future)
        try:
            # The intent, on disk before acting: if the disk refuses it, the command does
            # not act (a crash could otherwise let a resent id act twice).
            self._save(command_id, (fingerprint, now, "running", {}), durable=durable)
            result = await action()
        except (Unavailable, Busy) as err:  # a moment, not an answer: it did not act
            self._forget(command_id)
            future.set_exception(err)
            future.exception()  # retrieved: no "never retrieved" warning if nobody repeats
            raise
        except LockerError as err:
            answer = {
                "error": type(err).__name__,
                "message": err.message,
                "errors": err.errors,
                "acted": err.acted,
            }
            self._save(command_id, (fingerprint, now, "failed", answer))
            future.set_exception(err)
            future.exception()
            raise
        except BaseException:
            # A bug or a cancellation: it may have acted. The intent stays, so a retry
            # is told the outcome is unknown instead of acting again, as is a repeat
            # waiting on it now (a cancelled future gave it no answer at all).
            future.set_exception(Conflict(INTERRUPTED, acted=True))
            future.exception()
            raise
        finally:
            del self._running[command_id]
        self._save(command_id, (fingerprint, now, "ok", result))
        future.set_result(result)
        return result

    def knows(self, command_id: str) -> bool:
        """Whether ``command_id`` ran or runs: a repeat answers without acting (so it
        need not count against a rate limit). False when the log cannot be read."""
        if command_id in self._running or command_id in self._unsaved:
            return True
        try:
            return self._store.command(command_id) is not None
        except StoreError:
            return False

    def _remembered(self, command_id: str) -> Result | None:
        """The record of ``command_id``; ``Unavailable`` when it cannot be read (acting
        without knowing could act twice)."""
        if command_id in self._unsaved:
            return self._unsaved[command_id]
        try:
            return self._store.command(command_id)
        except StoreError as exc:
            log.error("commands.store_unreadable", error=str(exc))
            raise Unavailable(f"cannot read the command log: {exc}") from None

    def _save(self, command_id: str, result: Result, *, durable: bool = False) -> None:
        """Keep a record; when the disk refuses, in memory (bounded), never lost
        silently, or (``durable``) ``Unavailable``."""
        try:
            self._store.save_command(command_id, *result)
            self._unsaved.pop(command_id, None)
            self._saves += 1
            if self._saves % TRIM_EVERY == 0:
                self._store.trim_commands()
        except StoreError as exc:
            log.error("commands.record_unsaved", id=command_id, error=str(exc))
            if durable:
                raise Unavailable(f"cannot record the command before acting: {exc}") from None
            self._unsaved[command_id] = result
            while len(self._unsaved) > MEMORY_RESULTS:
                self._unsaved.popitem(last=False)

    def _forget(self, command_id: str) -> None:
        self._unsaved.pop(command_id, None)
        try:
            self._store.forget_command(command_id)
        except StoreError as exc:  # the intent stays: a retry is told "unknown"
            log.error("commands.intent_unforgotten", id=command_id, error=str(exc))


def _check(known: str, fingerprint: str) -> None:
    if known != fingerprint:
        raise Invalid("this command id was used for a different command")


async def _repeat(first: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
    """A repeat's answer: its first run's. Stopped while it waits (a stop cancels both),
    it still takes that answer if it comes within ``REPEAT_STOP_S``: one id, one answer
    (the first may say "send it again", a repeat cut short would say "outcome unknown")."""
    try:
        return await asyncio.shield(first)
    except asyncio.CancelledError:
        await asyncio.wait({first}, timeout=REPEAT_STOP_S)
        if not first.done():
            raise
        return first.result()
