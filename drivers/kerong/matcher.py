"""Which request a frame from the bus answers: the reply, a late one, a twin's, an echo."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import structlog

from drivers.kerong import codec

log = structlog.get_logger(__name__)

# Two boards answering one request with different bits: the board's status changes
# are not reported for this long after the last such pair (its doors would flap),
# and the fault is logged at most this often per board.
_TWIN_HOLD_S = 10.0
_TWIN_LOG_S = 60.0


@dataclass(slots=True)
class Pending:
    """A status request registered: its board, and where its reply comes."""

    board: int
    reply: asyncio.Future[codec.Frame]


class ReplyMatcher:
    """Matches each frame from the bus to the status request registered last.

    A status reply (0x35) from that request's board answers it. The request stays
    registered until the next one, so a second reply to it is told apart from a
    first: after a timeout or a cancel it is late and dropped; after an answer it is
    a twin's (two boards on one address), counted in ``counts[(board, "twins")]`` and
    logged ``kerong.twin_reply``, and while the two disagree ``twinned(board)`` holds.
    A copy of the last frame written is the adapter's echo; anything else is logged
    and dropped.

    ``drain_until``: the loop time before which a board must not be asked again,
    because a reply to its request that timed out or was cancelled may still come
    and would be taken for the next request's.
    """

    def __init__(self, name: str, reply_timeout_s: float, counts: Counter[tuple[int, str]]) -> None:
        self._name = name
        self._reply_timeout_s = reply_timeout_s
        self._counts = counts
        self._pending: Pending | None = None
        self._last_request = b""
        # A board whose read timed out or was cancelled may still answer it: its next
        # request waits until then (loop time), so a late reply is never taken for
        # the answer to a later request.
        self.drain_until: dict[int, float] = {}
        # Boards that gave two disagreeing replies to one request (two boards on one
        # address): until when their changes are held, and when they were last logged.
        self._twinned_until: dict[int, float] = {}
        self._twin_logged: dict[int, float] = {}

    def expect(self, board: int) -> Pending:
        """Register a status request to ``board``: before the write, as a reply can
        arrive inside write(). The reply, or the request's failure, comes on its
        ``reply`` future."""
        reply: asyncio.Future[codec.Frame] = asyncio.get_running_loop().create_future()
        pending = self._pending = Pending(board, reply)
        return pending

    def written(self, request: bytes) -> None:
        """``request`` went on the wire: the same bytes coming back are its echo."""
        self._last_request = request

    def finished(self, pending: Pending, *, same_link: bool) -> None:
        """The reader of ``pending`` is done with it. Not answered (timed out, failed,
        the reader cancelled) on a connection still open (``same_link``): the board
        may answer yet, so its next request waits until that answer can no longer
        come. The request stays registered until the next one (see frame_received)."""
        reply = pending.reply
        if not reply.done():
            reply.cancel()  # the caller was cancelled
        if (reply.cancelled() or reply.exception() is not None) and same_link:
            self.drain_until[pending.board] = (
                asyncio.get_running_loop().time() + self._reply_timeout_s
            )

    async def drained(self, board: int) -> None:
        """Return once a late reply to ``board``'s last request can no longer come."""
        loop = asyncio.get_running_loop()
        # A loop: another timeout may extend it.
        while (drain_s := self.drain_until.get(board, 0.0) - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(drain_s)
        self.drain_until.pop(board, None)

    def forget_late(self) -> None:
        """A new connection: the old one's late replies are ignored."""
        self.drain_until.clear()

    def fail(self, exc: Exception) -> None:
        """Fail the request waiting for its reply, if any, with ``exc``."""
        pending = self._pending
        if pending is not None and not pending.reply.done():
            pending.reply.set_exception(exc)

    def twinned(self, board: int) -> bool:
        """Whether two boards answering as ``board`` disagreed within the last
        ``_TWIN_HOLD_S``: which one is right cannot be told."""
        return bool(self._twinned_until) and (
            asyncio.get_running_loop().time() < self._twinned_until.get(board, 0.0)
        )

    def frame_received(self, frame: codec.Frame) -> None:
        """A valid frame from the current connection."""
        pending = self._pending
        if pending is not None and frame.cmd == codec.REPLY_STATUS and frame.board == pending.board:
            reply = pending.reply
            if not reply.done():
                reply.set_result(frame)
            elif reply.cancelled() or reply.exception() is not None:
                # Past its timeout, or its reader gave up; the drain window keeps it
                # from coming while the board's next request waits.
                log.debug("kerong.late_reply", bus=self._name, board=frame.board)
            else:
                self._twin(frame.board, reply.result(), frame)
        elif frame.raw == self._last_request:
            log.debug("kerong.echo_skipped", bus=self._name, frame=frame.raw.hex(" "))
        else:
            log.debug("kerong.unexpected_frame", bus=self._name, frame=frame.raw.hex(" "))

    def _twin(self, board: int, first: codec.Frame, second: codec.Frame) -> None:
        """A second status reply to one request: two boards are set to one address."""
        self._counts[(board, "twins")] += 1
        now = asyncio.get_running_loop().time()
        if first.raw != second.raw:
            self._twinned_until[board] = now + _TWIN_HOLD_S
        if now >= self._twin_logged.get(board, float("-inf")):
            self._twin_logged[board] = now + _TWIN_LOG_S
            log.warning(
                "kerong.twin_reply",
                bus=self._name,
                board=board,
                first=first.raw.hex(" "),
                second=second.raw.hex(" "),
                held=first.raw != second.raw,
            )
