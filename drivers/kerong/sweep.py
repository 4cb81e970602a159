"""The bus-wide status (0x32): one request, the boards answer 0x36; probed board by board.

At rest a sweep reads every board for the cost of one request: one wake of the
loop for the answers instead of one a board (docs/benchmarks.md). Real boards
disagree on it (``shared/protocols/kerong-cu16.md``: its address, how boards space
their answers), so it is probed on the bus, board by board: a board that misses
``GIVE_UP_AFTER`` sweeps in a row while it answers its own reads is no longer waited
for (``deaf``: read on its own at the rest pace), and a bus whose boards are all deaf
stops sending it. A sweep waits as long as the evidence says an answer takes (the
reply clock's ``answer_s``, or the slowest recent sweep answer's with its margin), not
the worst case; an answer later than that is its own sweep's, late (the matcher's
tags), never the next sweep's (ADR 0015).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Sequence

import structlog

from drivers.kerong import codec
from drivers.kerong.expectation import Expectation
from drivers.kerong.link import BusUnavailable, Link
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.timing import MARGIN, RECENT
from drivers.kerong.transaction import POLL, Transactions

log = structlog.get_logger(__name__)

GIVE_UP_AFTER = 3
"""Sweeps in a row a board misses, while it answers its own reads, before the sweeps stop
waiting for it (every board: before the bus gives the bus-wide status up)."""


_ANSWER_BYTES = codec.FRAME_LENGTH[codec.REPLY_BUS_STATUS]


class BusSweep:
    """Sweeps the boards of one bus with one bus-wide status request.

    ``usable`` is True until every board is ``deaf`` (boards the sweeps no longer wait
    for: they missed ``GIVE_UP_AFTER`` in a row while answering their own reads; one that
    answers a sweep again is waited for again); ``answered`` once any board answered one
    (the probe passed).
    """

    def __init__(
        self,
        link: Link,
        tx: Transactions,
        matcher: ReplyMatcher,
        boards: Sequence[int],
        *,
        baud: int,
        name: str,
    ) -> None:
        self._link = link
        self._tx = tx
        self._matcher = matcher
        self._boards = frozenset(boards)
        self._answer_wire_s = _ANSWER_BYTES * 10 / baud
        # Never less than MARGIN reads on the wire (a link faster than the wire, as the
        # emulator is, shows replies too fast to size a window by on a busy host).
        self._lead_floor_s = min(MARGIN * codec.wire_cycle_s(1, baud), matcher.clock.timeout_s)
        self._name = name
        self._request = codec.bus_status_request()
        self.usable = True
        self.answered = False
        self.deaf: set[int] = set()
        self._misses: dict[int, int] = {}  # board -> sweeps in a row it missed
        self._waited: set[int] = set()  # the boards the last sweep waited for
        # Seconds the recent answers took, less the answers ahead of them on the wire.
        self._leads: deque[float] = deque(maxlen=RECENT)
        self._current: _Sweep | None = None
        matcher.on_bus_answer = self._answer
        self.sweeps = 0  # for tests and metrics

    def window_s(self, waiting: int) -> float:
        """Seconds a sweep waits for ``waiting`` boards: the request and their answers on
        the wire, and the time an answer takes here: the reply clock's ``answer_s`` (3x
        the slowest recent reply; its timeout before any; at least 3 reads on the wire),
        or ``MARGIN`` times the slowest recent sweep answer if longer; at most the
        clock's ceiling."""
        clock = self._matcher.clock
        lead_s = max(clock.answer_s, self._lead_floor_s)
        if self._leads:
            lead_s = min(clock.ceiling_s, max(lead_s, MARGIN * max(self._leads)))
        return self._tx.wire_time(self._request) + waiting * self._answer_wire_s + lead_s

    async def sweep(self, boards: Collection[int]) -> dict[int, codec.Frame]:
        """Send one bus-wide status and collect the 0x36 answers until each board of
        ``boards`` that is not ``deaf`` answered, or ``window_s`` is up. Returns board ->
        frame for the boards that answered in time, once (a board answering twice with
        different bits is left out: its own read sees the twin), each counted a reply
        (``Transactions.replied``). Holds the bus meanwhile. Raises BusUnavailable."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self._tx.hold(POLL):
            transport = self._link.transport
            if transport is None or transport.is_closing():
                raise BusUnavailable(f"bus {self._name}: port not open")
            self.sweeps += 1
            # Every board answers a bus-wide request: each owes one answer, waited or not.
            asked = self._matcher.expect_bus_status(sorted(self._boards))
            waiting = {b for b in boards if b in asked and b not in self.deaf}
            self._waited = set(waiting)
            current = self._current = _Sweep(loop.create_future(), waiting)
            try:
                # Its echo is not an answer; the answers are matched by their tags.
                self._matcher.written(list(asked.values()), self._request)
                transport.write(self._request)
                if waiting:
                    await asyncio.wait([current.done], timeout=self.window_s(len(waiting)))
            finally:
                self._current = None
                if not current.done.done():
                    current.done.cancel()
                same_link = self._link.transport is transport
                self._matcher.sweep_over(asked.values(), same_link=same_link)
        for board in current.twins:
            current.frames.pop(board, None)
        for board in current.frames:
            self._tx.replied(board, current.heard_at[board] - started)
        return current.frames

    def _answer(self, expectation: Expectation | None, frame: codec.Frame) -> None:
        """The matcher's word on a 0x36 frame: the answer to ``expectation`` (in time or
        late), or None for one no sweep waits for (a second answer)."""
        current = self._current
        board = frame.board
        if expectation is None:
            first = current.frames.get(board) if current is not None else None
            if current is not None and first is not None and first.raw != frame.raw:
                current.twins.add(board)  # two boards answer as one, and disagree
            return
        self.deaf.discard(board)  # it does answer the sweeps
        self._misses.pop(board, None)
        now = asyncio.get_running_loop().time()
        in_time = current is not None and not expectation.timed_out
        if current is not None and in_time:
            frames = current.frames
            ahead = len(frames)
            frames[board] = frame
            current.heard_at[board] = now
            current.waiting.discard(board)
            if not current.waiting and not current.done.done():
                current.done.set_result(None)
        else:
            ahead = self._ahead
        lead_s = max(0.0, now - expectation.sent - ahead * self._answer_wire_s)
        self._leads.append(lead_s)
        if in_time:
            # Its own latency, as a read's would be: the clock comes back down at rest,
            # where the sweeps read every board (a late one teaches the window only).
            self._matcher.clock.seen(lead_s)

    @property
    def _ahead(self) -> int:
        """Answers that came ahead of a late one (the last sweep's, in time)."""
        return max(0, len(self._waited) - 1)

    def result(self, *, answered: Collection[int], read_alone: Collection[int]) -> None:
        """After a cycle: the boards that ``answered`` the last sweep in time, and those
        that answered their own read in it (``read_alone``). A board waited for that
        missed the sweep while it answered its own read counts against it; after
        ``GIVE_UP_AFTER`` in a row it is ``deaf``; with every board deaf, the bus-wide
        status is given up for good."""
        if answered:
            if not self.answered:
                log.info("kerong.bus_status_answered", bus=self._name, boards=len(answered))
            self.answered = True
        for board in self._waited:
            if board in answered or board not in read_alone:
                continue  # answered, or silent to everything: the board is off, not deaf
            misses = self._misses[board] = self._misses.get(board, 0) + 1
            if misses >= GIVE_UP_AFTER and board not in self.deaf:
                self.deaf.add(board)
                log.info(
                    "kerong.bus_status_unanswered",
                    bus=self._name,
                    board=board,
                    detail="the board does not answer the bus-wide status (0x32); read alone",
                )
        if self.deaf >= self._boards:
            self.usable = False
            log.info(
                "kerong.bus_status_unsupported",
                bus=self._name,
                detail="no board answers the bus-wide status (0x32); reading board by board",
            )


class _Sweep:
    """One sweep under way: ``done`` once every board ``waiting`` answered; ``frames``
    the answers in time, ``heard_at`` the loop time each came; ``twins`` the boards that
    answered twice, differently."""

    __slots__ = ("done", "frames", "heard_at", "twins", "waiting")

    def __init__(self, done: asyncio.Future[None], waiting: set[int]) -> None:
        self.done = done
        self.waiting = waiting
        self.frames: dict[int, codec.Frame] = {}
        self.heard_at: dict[int, float] = {}
        self.twins: set[int] = set()
