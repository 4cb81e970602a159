"""The bus-wide status (0x32): one request, every board answers 0x36; probed, given up on.

At rest a sweep reads every board for the cost of one request: one wake of the
loop for the answers instead of one a board (docs/benchmarks.md). Real boards
disagree on it (``shared/protocols/kerong-cu16.md``: its address, how boards space
their answers), so it is probed on the bus: the first sweep that no board answers
while the boards answer their own reads counts against it, and after
``GIVE_UP_AFTER`` of those in a row the bus reads board by board for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import structlog

from drivers.kerong import codec
from drivers.kerong.link import BusUnavailable, Link
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.transaction import POLL, Transactions

log = structlog.get_logger(__name__)

GIVE_UP_AFTER = 3
"""Sweeps in a row that no board answers, while boards answer their own reads, before
the bus gives the bus-wide status up."""


_ANSWER_BYTES = codec.FRAME_LENGTH[codec.REPLY_BUS_STATUS]


class BusSweep:
    """Sweeps the boards of one bus with one bus-wide status request.

    ``usable`` is True until the bus is found not to answer it (``missed``);
    ``answered`` once any board answered one (the probe passed).
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
        self._baud = baud
        self._name = name
        self._request = codec.bus_status_request()
        self.usable = True
        self.answered = False
        self._empty = 0  # sweeps in a row no board answered
        self.sweeps = 0  # for tests and metrics

    async def sweep(self, expected: Collection[int]) -> dict[int, codec.Frame]:
        """Send one bus-wide status and collect the 0x36 answers until each board of
        ``expected`` answered or their time is up: at most one reply timeout for the
        first answer (``timing.ReplyClock``) plus 9 bytes on the wire for each.
        Returns board -> frame for the boards of this bus that answered once (a
        board answering twice with different bits is left out: its own read sees
        the twin). Holds the bus
        meanwhile. Raises BusUnavailable."""
        loop = asyncio.get_running_loop()
        frames: dict[int, codec.Frame] = {}
        twins: set[int] = set()
        waiting = set(expected) & self._boards
        done: asyncio.Future[None] = loop.create_future()

        def answer(frame: codec.Frame) -> None:
            board = frame.board
            if board not in self._boards:
                return
            if board in frames and frames[board].raw != frame.raw:
                twins.add(board)
            frames[board] = frame
            waiting.discard(board)
            if not waiting and not done.done():
                done.set_result(None)

        async with self._tx.hold(POLL):
            transport = self._link.transport
            if transport is None or transport.is_closing():
                raise BusUnavailable(f"bus {self._name}: port not open")
            self.sweeps += 1
            self._link.tap(codec.REPLY_BUS_STATUS, answer)
            try:
                self._matcher.written(None, self._request)  # its echo is not an answer
                transport.write(self._request)
                if waiting:
                    window = (
                        self._tx.wire_time(self._request)
                        + self._matcher.clock.timeout_s
                        + len(waiting) * _ANSWER_BYTES * 10 / self._baud
                    )
                    await asyncio.wait([done], timeout=window)
            finally:
                self._link.tap(codec.REPLY_BUS_STATUS, None)
                if not done.done():
                    done.cancel()
        for board in twins:
            frames.pop(board, None)
        return frames

    def result(self, *, answered: int, board_reads_answered: bool) -> None:
        """After a cycle: ``answered`` boards answered the sweep, and whether any board
        answered its own read. Gives the bus-wide status up after ``GIVE_UP_AFTER``
        sweeps in a row that none answered while the boards answer their reads."""
        if answered:
            if not self.answered:
                log.info("kerong.bus_status_answered", bus=self._name, boards=answered)
            self.answered = True
            self._empty = 0
            return
        if not board_reads_answered:
            return  # nothing answers at all: the boards are off, not the sweep
        self._empty += 1
        if self._empty >= GIVE_UP_AFTER:
            self.usable = False
            log.info(
                "kerong.bus_status_unsupported",
                bus=self._name,
                detail="no board answers the bus-wide status (0x32); reading board by board",
            )
