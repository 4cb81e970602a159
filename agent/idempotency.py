"""Commands deduplicated by id: a retried command returns the first result without acting again.

Finished results live in the state store, so this holds across restarts too;
a repeat that arrives while the first is still running waits for it and gets
the same answer. An unlock is never sent twice by a retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.commands import CommandError
from agent.store import StateStore

MAX_ID_LENGTH = 200
SWEEP_S = 3600.0


class CommandLog:
    def __init__(
        self,
        store: StateStore,
        ttl_s: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._running: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._next_sweep = 0.0  # old results are deleted now and then, not on every command

    async def run(
        self,
        command_id: str | None,
        action: Callable[[], Awaitable[dict[str, Any]]],
        fingerprint: str = "",
    ) -> dict[str, Any]:
        """``fingerprint`` names what the command does: an id reused for another is refused."""
        if command_id is None:
            return await action()
        if not command_id or len(command_id) > MAX_ID_LENGTH:
            raise CommandError(
                422, "INVALID_REQUEST", f"a command id is 1 to {MAX_ID_LENGTH} characters"
            )
        running = self._running.get(command_id)
        if running is not None:
            _check(running[0], fingerprint)
            return await asyncio.shield(running[1])
        now = self._clock()
        if now >= self._next_sweep:
            self._store.forget_commands(now - self._ttl)
            self._next_sweep = now + SWEEP_S
        done = self._store.command(command_id)
        if done is not None and now - done[1] < self._ttl:
            _check(done[0], fingerprint)
            status, answer = done[2], done[3]
            if status == 200:
                return answer
            raise CommandError(status, answer["type"], answer["message"], answer.get("errors"))

        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._running[command_id] = (fingerprint, future)
        try:
            result = await action()
        except CommandError as err:
            self._store.save_command(command_id, fingerprint, now, err.status, err.as_json())
            future.set_exception(err)
            future.exception()  # retrieved: no "never retrieved" warning if nobody repeats
            raise
        except BaseException:
            future.cancel()  # not an answer (a bug, a cancellation): a retry may act
            raise
        finally:
            del self._running[command_id]
        self._store.save_command(command_id, fingerprint, now, 200, result)
        future.set_result(result)
        return result


def _check(known: str, fingerprint: str) -> None:
    if known != fingerprint:
        raise CommandError(
            422, "INVALID_REQUEST", "this command id was used for a different command"
        )
