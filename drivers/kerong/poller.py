"""When each board of a bus is read: cycles at the wire's pace, retries, silent ones less often."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from drivers.kerong.codec import wire_cycle_s
from drivers.kerong.link import BusUnavailable
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.status import StatusTracker
from drivers.kerong.transaction import POLL, BoardTimeout

log = structlog.get_logger(__name__)

# A bus with nothing to poll (no boards) still goes round this often, so `polling()`
# stays true, without spinning a core.
_IDLE_CYCLE_S = 0.5


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


class Poller:
    """Reads every board of a bus through ``tracker`` while ``up`` is set: a cycle
    at most every ``poll_interval_s`` and never faster than the wire at ``baud``
    could carry it; a timed-out read retried ``poll_retries`` times, each once its
    late reply can no longer come; a silent board when it is due; a board handed to
    ``poll_soon`` at once."""

    def __init__(
        self,
        tracker: StatusTracker,
        matcher: ReplyMatcher,
        up: asyncio.Event,
        boards: Sequence[int],
        *,
        poll_retries: int,
        poll_interval_s: float,
        baud: int,
        name: str,
    ) -> None:
        self._tracker = tracker
        self._matcher = matcher
        self._up = up
        self._boards = tuple(boards)
        self._poll_retries = poll_retries
        self._poll_interval_s = poll_interval_s
        self._baud = baud
        self._name = name
        self.last_cycle: float | None = None  # loop time a poll cycle last began
        self._tries: dict[int, int] = {}  # timed-out polls in a row, retries included
        # Boards to read before the next cycle is due (an unlock's pulse ended), and
        # the poll loop's nap between cycles, which that cuts short.
        self._soon: set[int] = set()
        self._nap: asyncio.Future[None] | None = None

    def poll_soon(self, board: int) -> None:
        """Have the poll loop read ``board`` now instead of at its next cycle."""
        if board in self._boards:
            self._soon.add(board)
            if self._nap is not None:
                _wake(self._nap)

    def forget_retries(self) -> None:
        """A new connection: retries start over."""
        self._tries.clear()

    async def run(self, after_cycle: Callable[[float], None]) -> None:
        """Poll until cancelled, while the port is open; ``after_cycle(now)`` is called
        after every full cycle."""
        loop = asyncio.get_running_loop()
        next_cycle = 0.0
        while True:
            try:
                await self._up.wait()
                if loop.time() >= next_cycle:
                    next_cycle = await self._poll_cycle(after_cycle)
                elif self._soon:
                    # A retry, or an unlock's pulse is over: read those boards now,
                    # not at the next cycle (which may be seconds away).
                    await self._poll_boards([b for b in self._boards if b in self._soon])
                wake = next_cycle
                if self._soon:
                    # The soonest of them is due once its late reply can no longer come.
                    drain_until = self._matcher.drain_until
                    wake = min(wake, min(drain_until.get(b, 0.0) for b in self._soon))
                await self._nap_until(wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kerong.poll_error", bus=self._name)
                await asyncio.sleep(max(self._poll_interval_s, 0.01))

    async def _poll_cycle(self, after_cycle: Callable[[float], None]) -> float:
        """Poll every board due once; returns the loop time the next cycle is due."""
        loop = asyncio.get_running_loop()
        cycle_start = self.last_cycle = loop.time()
        polled, wake = await self._poll_boards(self._boards)
        after_cycle(loop.time())
        # A link faster than the wire (an emulator, a buffering gateway) is paced like
        # the wire: no cycle is shorter than its reads would take.
        next_cycle = cycle_start + max(self._poll_interval_s, wire_cycle_s(polled, self._baud))
        if not polled:
            # Nothing was due (every board silent or draining, or no boards): sleep until
            # the first one is, never a busy loop.
            next_cycle = max(next_cycle, cycle_start + _IDLE_CYCLE_S if wake is None else wake)
        return next_cycle

    async def _poll_boards(self, boards: Sequence[int]) -> tuple[int, float | None]:
        """Read each of ``boards`` that is due. Returns how many were read, and the
        earliest loop time one skipped (silent, or draining a late reply) is due."""
        loop = asyncio.get_running_loop()
        drain_until = self._matcher.drain_until
        offline, next_offline_poll = self._tracker.offline, self._tracker.next_offline_poll
        up = self._up
        polled = 0
        wake: float | None = None
        for board in boards:
            if not up.is_set():
                break
            # (Membership first: loop.time() only for the few boards it matters to.)
            if board in offline and loop.time() < (due := next_offline_poll[board]):
                wake = due if wake is None else min(wake, due)
                self._soon.discard(board)  # read when due, as silent boards are
                continue  # a dead board must not slow the others down
            if board in drain_until and loop.time() < (drain := drain_until[board]):
                # It timed out and may answer yet: the others go on, and it is read again
                # once that late reply can no longer be taken for this read's.
                wake = drain if wake is None else min(wake, drain)
                continue
            polled += 1
            try:
                await self._tracker.read(board, POLL)
            except BoardTimeout:
                tries = self._tries.get(board, 0) + 1
                log.debug("kerong.poll_timeout", bus=self._name, board=board, attempt=tries)
                # A board already known to be offline gets one try, not the retries.
                if board in offline or tries > self._poll_retries:
                    self._tries.pop(board, None)
                    self._soon.discard(board)
                    self._tracker.missed(board)
                else:
                    self._tries[board] = tries
                    self._soon.add(board)  # retried once its drain is over
            except BusUnavailable:
                break  # the port went away; the link's on_down reports the boards
            else:
                if self._tries:
                    self._tries.pop(board, None)
                if self._soon:
                    self._soon.discard(board)
        return polled, wake

    async def _nap_until(self, when: float) -> None:
        """Sleep until loop time ``when``; an unlock's end (``poll_soon``) wakes it."""
        loop = asyncio.get_running_loop()
        delay = when - loop.time()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        nap = self._nap = loop.create_future()
        handle = loop.call_later(delay, _wake, nap)
        try:
            await nap
        finally:
            handle.cancel()
            self._nap = None
