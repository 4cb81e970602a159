"""One request on the bus at a time: commands before polls, a shielded write, its answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import structlog

from drivers.kerong import codec
from drivers.kerong.link import BusUnavailable, Link
from drivers.kerong.lock import PriorityLock
from drivers.kerong.matcher import STATUS, UNLOCK, Expectation, ReplyMatcher

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
    (``COMMAND`` before ``POLL``). Each request tells the matcher what it may bring
    back before it is written: a status read waits ``matcher.clock.timeout_s`` for its
    reply; an unlock holds the bus for an answer at once unless its board's last
    unlock had none (so the next request does not talk over it on a half-duplex line).

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
        counts: Counter[tuple[int, str]],
        rtt_s: Counter[int],
        name: str,
    ) -> None:
        self._link = link
        self._matcher = matcher
        self._clock = matcher.clock
        self._baud = baud
        self._counts = counts
        self._rtt_s = rtt_s
        self._name = name
        self._lock = PriorityLock()
        self._requests = {board: codec.status_request(board) for board in boards}
        # Seconds a status reply takes on the wire (9 bytes, 10 bits each).
        self._reply_s = codec.FRAME_LENGTH[codec.REPLY_STATUS] * 10 / baud

    async def read(self, board: int, priority: int) -> codec.Frame:
        """Read ``board``'s status reply. Raises BoardTimeout, BusUnavailable, and
        ``codec.CodecError`` for a board the protocol cannot address."""
        request = self._requests.get(board) or codec.status_request(board)
        loop = asyncio.get_running_loop()
        # Not while a reply to an earlier request may still come (outside the bus lock:
        # the other boards go on meanwhile).
        drain_until = self._matcher.drain_until
        started = loop.time()
        try:
            while True:
                if board in drain_until:
                    await self._matcher.drained(board)
                try:
                    frame = await self.transact(request, priority, status_of=board)
                    break
                except NotYet:
                    continue  # another read of it timed out while this one waited
        except BoardTimeout:
            self._counts[(board, "timeouts")] += 1
            raise
        self.replied(board, asyncio.get_running_loop().time() - started)
        assert frame is not None
        return frame

    def replied(self, board: int, rtt_s: float) -> None:
        """For metrics: ``board``'s status was read, ``rtt_s`` seconds from the request
        (waiting for the bus included) to the reply: by its own read, or a sweep's."""
        self._counts[(board, "replies")] += 1
        self._rtt_s[board] += rtt_s

    @staticmethod
    def _link_time() -> float:
        return asyncio.get_running_loop().time()

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
        priority: int,
        *,
        status_of: int | None = None,
        unlock: tuple[int, float] | None = None,
        on_sent: Callable[[], None] | None = None,
        gate: Callable[[], float] | None = None,
    ) -> codec.Frame | None:
        """Send one request: ``status_of`` a board, wait for its status reply; ``unlock``
        ``(board, pulse_s)``, the unlock of a lock of that board (its answer, if any, is
        the matcher's). ``on_sent`` is called once the bytes are handed to the transport
        (also when the caller is cancelled during the shielded send). ``gate``, once the
        bus is held, gives the seconds the frame must still wait: above 0 raises
        ``NotYet``. Raises BoardTimeout, BusUnavailable."""
        async with self._lock.hold(priority):
            transport = self._link.transport
            if transport is None or transport.is_closing():
                raise BusUnavailable(f"bus {self._name}: port not open")
            if gate is not None and (wait_s := gate()) > 0:
                raise NotYet(wait_s)
            drain_until = self._matcher.drain_until
            if status_of in drain_until and drain_until[status_of] > self._link_time():
                # Checked again once the bus is held: another read of this board may
                # have timed out while this one waited for the bus.
                raise NotYet(drain_until[status_of] - self._link_time())
            # Registered before the write: a reply can arrive inside write().
            expectation: Expectation | None = None
            if status_of is not None:
                expectation = self._matcher.expect_status(status_of)
            elif unlock is not None:
                expectation = self._matcher.expect_unlock(unlock[0], request[1], unlock[1])
                # A board may leave an unlock-all unanswered and answer single unlocks.
                expectation.teaches = request[2] == codec.CMD_UNLOCK
            try:
                await self._send(transport, request, expectation, on_sent)
                if expectation is None or expectation.reply is None:
                    return None
                if expectation.kind == UNLOCK:
                    # Held for an answer at once, so the next request does not talk over
                    # it; sent, whatever happens to that answer.
                    answer_s = max(self._clock.answer_s, self.wire_time(request) + self._reply_s)
                    with contextlib.suppress(BusUnavailable):
                        await self._reply(expectation, answer_s)
                    return None
                frame = await self._reply(expectation, self._clock.timeout_s)
                if frame is None:
                    raise BoardTimeout(
                        f"bus {self._name}: board {status_of} did not answer "
                        f"within {self._clock.timeout_s:.3f} s"
                    )
                if self._link.transport is not transport:
                    # The port went away between the reply and now: the boards are
                    # already reported unknown, do not report this stale status.
                    raise BusUnavailable(f"bus {self._name}: connection lost")
                return frame
            finally:
                if expectation is not None:
                    self._matcher.finished(expectation, same_link=self._link.transport is transport)

    async def _reply(self, expectation: Expectation, within_s: float) -> codec.Frame | None:
        """The frame answering ``expectation`` within ``within_s`` of its write; None if
        none came."""
        reply = expectation.reply
        assert reply is not None
        if reply.done():
            return reply.result()
        # A bare timer, not asyncio.timeout(): it fails the reply instead of cancelling
        # this task (cheaper, and it runs for every read).
        loop = asyncio.get_running_loop()
        expiry = loop.call_at(expectation.sent + within_s, _expire, reply)
        try:
            return await reply
        except _ReplyExpired:
            return None
        finally:
            expiry.cancel()

    async def _send(
        self,
        transport: asyncio.WriteTransport,
        request: bytes,
        expectation: Expectation | None,
        on_sent: Callable[[], None] | None,
    ) -> None:
        """Write a frame; shielded, because bytes half on the wire cannot be taken back
        and the next request must not start until they are out."""
        if expectation is not None and expectation.kind == STATUS:
            # The write itself never waits (the reply paces the bus): nothing to shield,
            # and no task to make for every poll.
            self._write_now(transport, request, expectation, on_sent)
            return
        task = asyncio.ensure_future(self._write(transport, request, expectation, on_sent))
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
        expectation: Expectation | None,
        on_sent: Callable[[], None] | None,
    ) -> None:
        self._write_now(transport, request, expectation, on_sent)
        # No status reply comes to pace us: wait until the frame has left the wire.
        await asyncio.sleep(self.wire_time(request))

    def _write_now(
        self,
        transport: asyncio.WriteTransport,
        request: bytes,
        expectation: Expectation | None,
        on_sent: Callable[[], None] | None,
    ) -> None:
        self._matcher.written(expectation, request)
        try:
            transport.write(request)
        except Exception as exc:
            log.warning("kerong.write_failed", bus=self._name, error=repr(exc))
            transport.abort()
            raise BusUnavailable(f"bus {self._name}: write failed: {exc!r}") from exc
        if on_sent is not None:
            on_sent()
