"""A mutex whose waiters go by priority, then arrival: commands before polls."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class PriorityLock:
    """A mutex whose waiters are served by (priority, arrival) instead of arrival only.

    The holder hands the lock straight to the best waiter on release, so a task
    that calls acquire() right after releasing cannot jump the queue.
    """

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def hold(self, priority: int) -> _Held:
        """``async with lock.hold(priority):`` the lock, released on the way out."""
        return _Held(self, priority)

    async def _acquire(self, priority: int) -> None:
        if not self._locked:
            self._locked = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._seq), fut)
        heapq.heappush(self._waiters, entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The lock was handed to us just as we were cancelled: pass it on.
                self._release()
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # ownership passes on; _locked stays True
                return
        self._locked = False


class _Held:
    """The context of one ``PriorityLock.hold``: a class, not a generator-based context
    manager, because every read of every board enters one (a third of a poll's cost)."""

    __slots__ = ("_lock", "_priority")

    def __init__(self, lock: PriorityLock, priority: int) -> None:
        self._lock = lock
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._lock._acquire(self._priority)

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock._release()
