"""Commands deduplicated by id: a retried command returns the first result without acting again."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from agent.commands import CommandError

MAX_ID_LENGTH = 200


class CommandLog:
    """Results by command id, kept ``ttl_s`` seconds (at most ``max_entries``).

    A repeat that arrives while the first is still running waits for it and gets
    the same answer: an unlock is never sent twice by a retry.
    """

    def __init__(
        self,
        ttl_s: float = 24 * 3600,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str, asyncio.Future[dict[str, Any]]]] = (
            OrderedDict()
        )

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
        self._expire()
        known = self._entries.get(command_id)
        if known is not None:
            if known[1] != fingerprint:
                raise CommandError(
                    422, "INVALID_REQUEST", "this command id was used for a different command"
                )
            return await asyncio.shield(known[2])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._entries[command_id] = (self._clock(), fingerprint, future)
        try:
            result = await action()
        except CommandError as err:
            future.set_exception(err)
            future.exception()  # retrieved: no "never retrieved" warning if nobody repeats
            raise
        except BaseException:
            # Not an answer (a bug, a cancellation): let a retry act.
            del self._entries[command_id]
            future.cancel()
            raise
        future.set_result(result)
        return result

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            command_id, (at, _, future) = next(iter(self._entries.items()))
            if now - at < self._ttl and len(self._entries) < self._max:
                break
            if not future.done():
                break  # still running: keep it and everything after
            del self._entries[command_id]
