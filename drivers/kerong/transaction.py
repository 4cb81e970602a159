"""One request on the bus at a time: commands before polls, a shielded write, a timed reply."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import structlog

from drivers.kerong import codec
from drivers.kerong.link import BusUnavailable, Link
from drivers.kerong.lock import PriorityLock
from drivers.kerong.matcher import ReplyMatcher

log = structlog.get_logger(__name__)

# Lock priorities: lower goes first.
COMMAND = 0
POLL = 1
# USB adapters and TCP gateways add their own latency on top of the wire time;
# a small margin keeps an unlock from colliding with the next request.
_GUARD_MARGIN_S = 0.002


class BoardTimeout(Exception):
    """The board did not answer in time."""


class NotYet(Exception):
    """A frame got the bus before its gate opened (an unlock's stagger): release the
    bus, wait ``wait_s``, try again."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s)
        self.wait_s = wait_s


class _ReplyExpired(Exception):
    """The reply timer ran out (turned into BoardTimeout by the waiter)."""


def _expire(reply: asyncio.Future[codec.Frame]) -> None:
    if not reply.done():
        reply.set_exception(_ReplyExpired())


class Transactions:
    """Puts the requests of one bus on the wire one at a time, behind a priority lock
    (``COMMAND`` before ``POLL``), and waits ``reply_timeout_s`` for a status reply
    (the matcher says which frame is one).

    ``counts`` and ``rtt_s`` are the bus's metrics, counted here: replies and timeouts
    per board, and the seconds the replies took from request to reply (waiting for
    the bus included).
    """

    def __init__(
        self,
        link: Link,
        matcher: ReplyMatcher,
        boards: Sequence[int],
        *,
        baud: int,
        reply_timeout_s: float,
        counts: Counter[tuple[int, str]],
        rtt_s: Counter[int],
        name: str,
    ) -> None:
        self._link = link
        self._matcher = matcher
        self._baud = baud
        self._reply_timeout_s = reply_timeout_s
        self._counts = counts
        self._rtt_s = rtt_s
        self._name = name
        self._lock = PriorityLock()
        self._requests = {board: codec.status_request(board) for board in boards}

    async def read(self, board: int, priority: int) -> codec.Frame:
        """Read ``board``'s status reply. Raises BoardTimeout, BusUnavailable, and
        ``codec.CodecError`` for a board the protocol cannot address."""
        request = self._requests.get(board) or codec.status_request(board)
        loop = asyncio.get_running_loop()
        # Not while a reply to an earlier request may still come (outside the bus lock:
        # the other boards go on meanwhile).
        if board in self._matcher.drain_until:
            await self._matcher.drained(board)
        started = loop.time()
        try:
            frame = await self.transact(request, board, priority)
        except BoardTimeout:
            self._counts[(board, "timeouts")] += 1
            raise
        self._counts[(board, "replies")] += 1
        self._rtt_s[board] += asyncio.get_running_loop().time() - started
        assert frame is not None
        return frame

    def hold(self, priority: int) -> AbstractAsyncContextManager[None]:
        """``async with tx.hold(priority):`` the bus to oneself, for a request whose
        answers this class does not wait for (a bus-wide sweep: ``sweep.py``)."""
        return self._lock.hold(priority)

    def wire_time(self, request: bytes) -> float:
        """Seconds ``request`` takes on the wire: 10 bits a byte (8N1), plus the adapter's
        latency margin."""
        return len(request) * 10 / self._baud + _GUARD_MARGIN_S

    async def transact(
        self,
        request: bytes,
        board: int | None,
        priority: int,
        *,
        on_sent: Callable[[], None] | None = None,
        gate: Callable[[], float] | None = None,
    ) -> codec.Frame | None:
        """Send one request and, if ``board`` is given, wait for its status reply.
        ``on_sent`` is called once the bytes are handed to the transport (also when the
        caller is cancelled during the shielded send). ``gate``, once the bus is held,
        gives the seconds the frame must still wait: above 0 raises ``NotYet``."""
        async with self._lock.hold(priority):
            transport = self._link.transport
            if transport is None or transport.is_closing():
                raise BusUnavailable(f"bus {self._name}: port not open")
            if gate is not None and (wait_s := gate()) > 0:
                raise NotYet(wait_s)
            # Registered before the write: a reply can arrive inside write().
            pending = None if board is None else self._matcher.expect(board)
            try:
                await self._send(
                    transport, request, expect_reply=board is not None, on_sent=on_sent
                )
                if pending is None:
                    return None
                # A bare timer, not asyncio.timeout(): it fails the reply instead of
                # cancelling this task (cheaper, and it runs for every read).
                loop = asyncio.get_running_loop()
                expiry = loop.call_later(self._reply_timeout_s, _expire, pending.reply)
                try:
                    frame = await pending.reply
                except _ReplyExpired:
                    raise BoardTimeout(
                        f"bus {self._name}: board {board} did not answer "
                        f"within {self._reply_timeout_s} s"
                    ) from None
                finally:
                    expiry.cancel()
                if self._link.transport is not transport:
                    # The port went away between the reply and now: the boards are
                    # already reported unknown, do not report this stale status.
                    raise BusUnavailable(f"bus {self._name}: connection lost")
                return frame
            finally:
                if pending is not None:
                    self._matcher.finished(pending, same_link=self._link.transport is transport)

    async def _send(
        self,
        transport: asyncio.WriteTransport,
        request: bytes,
        *,
        expect_reply: bool,
        on_sent: Callable[[], None] | None,
    ) -> None:
        """Write a frame; shielded, because bytes half on the wire cannot be taken back
        and the next request must not start until they are out."""
        if expect_reply:
            # The write itself never waits (the reply paces the bus): nothing to shield,
            # and no task to make for every poll.
            self._write_now(transport, request, on_sent)
            return
        task = asyncio.ensure_future(
            self._write(transport, request, expect_reply=expect_reply, on_sent=on_sent)
        )
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller gave up; keep holding the bus until the frame is out.
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # nobody else will look at it
            raise

    async def _write(
        self,
        transport: asyncio.WriteTransport,
        request: bytes,
        *,
        expect_reply: bool,
        on_sent: Callable[[], None] | None,
    ) -> None:
        self._write_now(transport, request, on_sent)
        if not expect_reply:
            # No reply comes to pace us: wait until the frame has left the wire.
            await asyncio.sleep(self.wire_time(request))

    def _write_now(
        self,
        transport: asyncio.WriteTransport,
        request: bytes,
        on_sent: Callable[[], None] | None,
    ) -> None:
        self._matcher.written(request)
        try:
            transport.write(request)
        except Exception as exc:
            log.warning("kerong.write_failed", bus=self._name, error=repr(exc))
            transport.abort()
            raise BusUnavailable(f"bus {self._name}: write failed: {exc!r}") from exc
        if on_sent is not None:
            on_sent()
