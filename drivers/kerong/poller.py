"""When each board of a bus is read: at rest slowly, at the wire's pace once anything happens.

Pace: a bus at rest (no command, no change, no door held open for ``ACTIVE_HOLD_S``)
reads each board once every ``rest_interval_s``, the reads spread evenly over it; a
command, a change or a door held open brings it to ``poll_interval_s`` (the wire's
pace by default) at once, cutting the rest nap short. See ADR 0015.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence

import structlog

from drivers.kerong.codec import wire_cycle_s
from drivers.kerong.link import BusUnavailable
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.status import BoardStatus, StatusTracker
from drivers.kerong.sweep import BusSweep
from drivers.kerong.timing import ACTIVE_HOLD_S, REST_INTERVAL_S
from drivers.kerong.transaction import POLL, BoardTimeout

log = structlog.get_logger(__name__)

# A bus with nothing to poll (no boards) still goes round this often, so `polling()`
# stays true, without spinning a core.
_IDLE_CYCLE_S = 0.5


def _open_mask(status: BoardStatus) -> int:
    """The channels whose lock reads open, as bits (channel i+1 -> bit i)."""
    return sum(1 << i for i, closed in enumerate(status.closed) if not closed)


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


class Poller:
    """Reads every board of a bus through ``tracker`` while ``up`` is set: a cycle
    at most every ``poll_interval_s`` and never faster than the wire at ``baud``
    could carry it; a timed-out read retried ``poll_retries`` times, each once its
    late reply can no longer come; a silent board when it is due; a board handed to
    ``poll_soon`` at once.

    Pace: at the wire's pace while ``active`` (a command (``activate``), a
    ``poll_soon``, a status that changed, a door open that was closed when first
    read, within ``active_hold_s``); else one read of each board every
    ``rest_interval_s``, spread evenly, or one bus-wide ``sweep`` of them all while the
    bus answers it (a ``rest_interval_s`` no longer than ``poll_interval_s``: always
    at the wire's pace). A channel
    already open at the first read (no door wired to it) never keeps the bus awake;
    once it closes it counts like the others.
    """

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
        rest_interval_s: float = REST_INTERVAL_S,
        active_hold_s: float = ACTIVE_HOLD_S,
        sweep: BusSweep | None = None,
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
        # Boards whose last try timed out while its reply may come yet, with the loop time:
        # the miss counts only if nothing came from the board by the time it is read again
        # (a board whose replies come past the timeout is not shown silent meanwhile).
        self._unsure: dict[int, float] = {}
        # Boards to read before the next cycle is due (an unlock's pulse ended), and
        # the poll loop's nap between cycles, which that cuts short.
        self._soon: set[int] = set()
        self._nap: asyncio.Future[None] | None = None
        self._rest_interval_s = max(rest_interval_s, poll_interval_s)
        # A rest interval no longer than the wire's pace: never at rest (no sweeps).
        self._adaptive = rest_interval_s > poll_interval_s
        self._active_hold_s = active_hold_s
        self._active_until = float("-inf")  # loop time the wire's pace lasts until
        self._seen: dict[int, BoardStatus] = {}  # board -> the status last read
        self._unwired: dict[int, int] = {}  # board -> channels open since its first read
        self._held_open: set[int] = set()  # boards with a door open that was closed
        self._sweep = sweep  # the bus-wide status, used at rest while the bus answers it
        self._read_alone: set[int] = set()  # boards whose own read answered this cycle

    @property
    def active(self) -> bool:
        """True while the bus polls at the wire's pace."""
        if not self._adaptive or self._held_open or not self._tracker.ready.is_set():
            return True  # a door open, or boards not yet known (start, a new port)
        return asyncio.get_running_loop().time() < self._active_until

    def activate(self) -> None:
        """A command, or anything else worth watching: the wire's pace now, for
        ``active_hold_s`` from here."""
        self._active_until = asyncio.get_running_loop().time() + self._active_hold_s
        if self._nap is not None:
            _wake(self._nap)

    def observe(self, board: int, status: BoardStatus) -> None:
        """A read of ``board`` (the poll's, or a frame the bus heard unasked: a late
        reply, an unlock's answer): a change or a door held open keeps the pace up."""
        previous = self._seen.get(board)
        if previous is status:
            return  # the same reply bytes as last time: the tracker kept the object
        self._seen[board] = status
        opened = _open_mask(status)
        if previous is None:
            self._unwired[board] = opened
            return
        unwired = self._unwired[board] = self._unwired.get(board, 0) & opened
        if opened & ~unwired:
            self._held_open.add(board)
        else:
            self._held_open.discard(board)
        if status != previous:
            self.activate()

    def poll_soon(self, board: int) -> None:
        """Have the poll loop read ``board`` now instead of at its next cycle."""
        if board in self._boards:
            self._soon.add(board)
            self.activate()

    def forget_retries(self) -> None:
        """A new connection: retries start over."""
        self._tries.clear()
        self._unsure.clear()

    async def run(self, after_cycle: Callable[[float], None]) -> None:
        """Poll until cancelled, while the port is open; ``after_cycle(now)`` is called
        after every full cycle."""
        loop = asyncio.get_running_loop()
        next_active = next_rest = 0.0
        while True:
            try:
                await self._up.wait()
                next_cycle = next_active if self.active else next_rest
                if loop.time() >= next_cycle:
                    next_active, next_rest = await self._poll_cycle(after_cycle)
                    next_cycle = next_active if self.active else next_rest
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

    async def _poll_cycle(self, after_cycle: Callable[[float], None]) -> tuple[float, float]:
        """Poll every board due once; returns the loop times the next cycle is due at
        the wire's pace and at rest."""
        loop = asyncio.get_running_loop()
        cycle_start = self.last_cycle = loop.time()
        # At rest the reads are spread over the rest interval (a door waits at most
        # that plus one read); a wake (activate) reads the rest of them at once.
        boards: Sequence[int] = self._boards
        swept: set[int] = set()
        heard: Collection[int] | None = None  # boards that answered a sweep; None: none sent
        sweep = self._sweep
        if sweep is not None and sweep.usable and not self.active:
            heard, swept = await self._sweep_boards(sweep)
            boards = [b for b in self._boards if b not in swept]
        gap = self._rest_interval_s / len(boards) if boards else 0.0
        self._read_alone.clear()
        polled, wake = await self._poll_boards(boards, spread=(cycle_start, gap))
        if sweep is not None and heard is not None:
            sweep.result(answered=heard, read_alone=self._read_alone)
        after_cycle(loop.time())
        # A link faster than the wire (an emulator, a buffering gateway) is paced like
        # the wire: no cycle is shorter than its reads would take.
        next_active = cycle_start + max(self._poll_interval_s, wire_cycle_s(polled, self._baud))
        next_rest = max(next_active, cycle_start + self._rest_interval_s)
        if not polled and not swept:
            # Nothing was due (every board silent or draining, or no boards): sleep until
            # the first one is, never a busy loop.
            idle = cycle_start + _IDLE_CYCLE_S if wake is None else wake
            next_active, next_rest = max(next_active, idle), max(next_rest, idle)
        return next_active, next_rest

    async def _sweep_boards(self, sweep: BusSweep) -> tuple[Collection[int] | None, set[int]]:
        """Read the boards by one bus-wide status. Returns the boards that answered it
        (None: not sent, no board to expect an answer from, or the port went away) and
        the boards whose status it read."""
        drain_until, offline = self._matcher.drain_until, self._tracker.offline
        expected = [b for b in self._boards if b not in offline and b not in drain_until]
        swept: set[int] = set()
        if not expected:
            return None, swept  # an empty sweep would say nothing of the bus
        try:
            frames = await sweep.sweep(expected)
        except BusUnavailable:
            return None, swept  # the port went away; the reads below see it too
        for board in sorted(frames):
            if board in drain_until:
                continue  # its late 0x35 may come yet: its own read, once drained
            try:
                status = await self._tracker.accept(board, frames[board], POLL)
            except BoardTimeout:
                continue  # a change's confirming read went unanswered: read it below
            except BusUnavailable:
                break
            swept.add(board)
            self._unsure.pop(board, None)
            self.observe(board, status)
            self._tries.pop(board, None)
            self._soon.discard(board)
        return frames.keys(), swept

    async def _poll_boards(
        self, boards: Sequence[int], spread: tuple[float, float] | None = None
    ) -> tuple[int, float | None]:
        """Read each of ``boards`` that is due; with ``spread`` (start, gap), while at
        rest, the i-th read waits until start + i * gap. Returns how many were read,
        and the earliest loop time one skipped (silent, or draining) is due."""
        loop = asyncio.get_running_loop()
        drain_until = self._matcher.drain_until
        offline, next_offline_poll = self._tracker.offline, self._tracker.next_offline_poll
        up = self._up
        polled = 0
        wake: float | None = None
        for index, board in enumerate(boards):
            if not up.is_set():
                break
            if spread is not None and index and not self.active:
                await self._nap_until(spread[0] + index * spread[1])
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
            if board in self._unsure and self._judge(board):
                continue  # silent after all: read again when due, as silent boards are
            polled += 1
            try:
                status = await self._tracker.read(board, POLL)
            except BoardTimeout:
                tries = self._tries.get(board, 0) + 1
                log.debug("kerong.poll_timeout", bus=self._name, board=board, attempt=tries)
                # A board already known to be offline gets one try, not the retries.
                if board in offline or tries > self._poll_retries:
                    self._tries.pop(board, None)
                    if board in drain_until and board not in offline:
                        self._unsure[board] = loop.time()  # a late reply may come yet
                        self._soon.add(board)  # judged when read again, once drained
                    else:
                        self._soon.discard(board)
                        self._tracker.missed(board)
                else:
                    self._tries[board] = tries
                    self._soon.add(board)  # retried once its drain is over
            except BusUnavailable:
                break  # the port went away; the link's on_down reports the boards
            else:
                self._unsure.pop(board, None)
                self._read_alone.add(board)
                self.observe(board, status)
                if self._tries:
                    self._tries.pop(board, None)
                if self._soon:
                    self._soon.discard(board)
        return polled, wake

    def _judge(self, board: int) -> bool:
        """``board``'s last try timed out: a miss unless a frame of it came since. Returns
        whether it is now silent."""
        since = self._unsure.pop(board)
        if self._tracker.heard_at.get(board, float("-inf")) >= since:
            return False  # it answered, late: not a miss (the clock has learnt)
        self._tracker.missed(board)
        return board in self._tracker.offline

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
