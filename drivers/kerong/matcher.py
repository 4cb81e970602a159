"""Which write a frame from the bus answers: every request says what it may bring back."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import structlog

from drivers.kerong import codec
from drivers.kerong.timing import ReplyClock

log = structlog.get_logger(__name__)

# Two boards answering one request with different bits: the board's status changes
# are not reported for this long after the last such pair (its doors would flap),
# and the fault is logged at most this often per board.
_TWIN_HOLD_S = 10.0
_TWIN_LOG_S = 60.0

STATUS = "status"
UNLOCK = "unlock"

ReadingCallback = Callable[[codec.Frame, bool], None]  # (frame, to confirm by a read)


@dataclass(slots=True, eq=False)
class Expectation:
    """What one request may bring back, registered before it is written.

    ``tag`` orders the requests (a board answers in order); ``kind`` is ``STATUS`` (one
    reply owed, timed) or ``UNLOCK`` (none, or one status, maybe once the lock moved);
    ``addrs`` the ADDR bytes a reply may carry; ``reply`` the future of whoever waits
    for it (None: nobody waits); ``sent`` and ``until`` loop times: written, and the last
    moment a reply to it can still come (``inf`` until written).
    """

    tag: int
    board: int
    kind: str
    addrs: frozenset[int]
    reply: asyncio.Future[codec.Frame] | None
    extra_s: float = 0.0  # an unlock: the pulse, during which the lock may move
    reply_cmd: int = codec.REPLY_STATUS  # 0x36 for a bus-wide status (0x32)
    sent: float = 0.0
    until: float = float("inf")
    answered: bool = False
    timed_out: bool = False
    frame: codec.Frame | None = None  # the frame that answered it
    doubled: bool = False  # a second answer came before the next write


class ReplyMatcher:
    """Matches each frame from the bus to the request it answers.

    A status frame (0x35) for a board goes, in order: to its status request waiting for
    a reply; to its status request that timed out, within its late window (counted in
    ``counts[(board, "late")]``, and the ``clock`` learns); to an unlock of the board
    that may still answer (``counts[(board, "unlock_replies")]``); to a status request
    closed unanswered, when the next one was answered already (a reply later than the
    window: counted late, never a twin). Left over: a second answer to the request
    written last is a twin's (two boards on one address, ``counts[(board, "twins")]``;
    while the two disagree ``twinned(board)`` holds); else a
    stray (``counts[(board, "strays")]``). A twin is told by two answers to two polls
    in a row; a single second answer is a stray. Each status frame answering a request
    of ours is handed to ``on_reading(frame, False)``: a fresh reading of the board; a
    stray, ``on_reading(frame, True)``: one to confirm by a read. A copy of the last
    frame written is the adapter's echo; anything else is logged and dropped.

    ``drain_until``: the loop time before which a board must not be asked for its status
    again, because a reply to its request that timed out may still come.
    """

    def __init__(
        self,
        name: str,
        clock: ReplyClock,
        counts: Counter[tuple[int, str]],
        boards: Collection[int] = (),
    ) -> None:
        self._name = name
        self.clock = clock
        self._counts = counts
        self._boards = frozenset(boards)
        self.on_reading: ReadingCallback | None = None
        self._tags = itertools.count()
        self._open: dict[int, list[Expectation]] = {}  # board -> in write order
        self._waiting: set[Expectation] = set()  # whose reply future someone awaits
        self._unanswered: dict[int, Expectation] = {}  # board -> last status closed unanswered
        self._resynced: dict[int, Expectation] = {}  # board -> the unanswered read waited for
        self._answered: dict[int, Expectation] = {}  # board -> last status request answered
        self._doubled: dict[int, bool] = {}  # board -> its poll before that had two answers
        self._last_request = b""
        self._last_written: Expectation | None = None
        self.drain_until: dict[int, float] = {}
        # Boards whose unlocks were answered at once (True) or not (False) last time:
        # an unlock of a board not known to stay quiet holds the bus for its answer.
        self.unlock_answers: dict[int, bool] = {}
        self._twinned_until: dict[int, float] = {}
        self._twin_logged: dict[int, float] = {}

    # ------------------------------------------------------------ registering

    def expect_status(self, board: int, reply_cmd: int = codec.REPLY_STATUS) -> Expectation:
        """Register a status request to ``board`` (before the write: a reply can arrive
        inside write()); its reply comes on ``reply``. ``reply_cmd`` 0x36: the board's
        part of a bus-wide status (one per board, all given to one ``written``)."""
        reply: asyncio.Future[codec.Frame] = asyncio.get_running_loop().create_future()
        expectation = Expectation(next(self._tags), board, STATUS, _at(board), reply)
        expectation.reply_cmd = reply_cmd
        return self._register(expectation)

    def expect_unlock(self, board: int, addr: int, pulse_s: float) -> Expectation:
        """Register an unlock (ADDR ``addr``) of ``board``: it may bring back one status
        frame in the board's ADDR or the unlock's, at once or within ``pulse_s`` and the
        late window. Its ``reply`` is a future to hold the bus for, unless the board's
        last unlock went unanswered (then None)."""
        reply: asyncio.Future[codec.Frame] | None = None
        if self.unlock_answers.get(board, True):
            reply = asyncio.get_running_loop().create_future()
        addrs = frozenset((board << 4, addr))
        return self._register(Expectation(next(self._tags), board, UNLOCK, addrs, reply, pulse_s))

    def _register(self, expectation: Expectation) -> Expectation:
        board = expectation.board
        if board in self._open:
            self._prune(board, asyncio.get_running_loop().time())
        self._open.setdefault(board, []).append(expectation)
        if expectation.reply is not None:
            self._waiting.add(expectation)
        return expectation

    def written(
        self, expectation: Expectation | Sequence[Expectation] | None, request: bytes
    ) -> None:
        """``request`` went on the wire: its answers (to each expectation given) may
        come until its window ends; the same bytes coming back are its echo."""
        self._last_request = request
        many = () if expectation is None else expectation
        if isinstance(many, Expectation):
            self._last_written = many
            many = (many,)
        else:
            self._last_written = None  # a bus-wide request: no twin is told by it
        if many:
            now = asyncio.get_running_loop().time()
            for each in many:
                each.sent = now
                each.until = now + each.extra_s + self.clock.late_window_s

    def finished(self, expectation: Expectation, *, same_link: bool) -> None:
        """Whoever waited on ``expectation`` is done. A status request not answered (timed
        out, failed, its reader cancelled) on a connection still open (``same_link``)
        may be answered yet: the board's next status request waits until its window
        ends. An unlock not answered at once: its board's next unlock does not wait."""
        reply = expectation.reply
        self._waiting.discard(expectation)
        if reply is not None and not reply.done():
            reply.cancel()
        if expectation.kind == UNLOCK:
            if expectation.until != float("inf"):
                self.unlock_answers[expectation.board] = expectation.answered
            return
        if expectation.answered or not same_link or expectation.until == float("inf"):
            if not expectation.answered:
                self._drop(expectation)  # never written, or the link went
            return
        expectation.timed_out = True
        self.drain_until[expectation.board] = expectation.until

    async def drained(self, board: int) -> None:
        """Return once a late reply to ``board``'s last status request can no longer come."""
        loop = asyncio.get_running_loop()
        # A loop: another timeout may extend it.
        while (drain_s := self.drain_until.get(board, 0.0) - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(drain_s)
        self.drain_until.pop(board, None)

    def forget_late(self) -> None:
        """A new connection: nothing written on the old one is answered on this one."""
        self.drain_until.clear()
        self._open.clear()
        self._unanswered.clear()
        self._resynced.clear()
        self._answered.clear()
        self._doubled.clear()

    def fail(self, exc: Exception) -> None:
        """Fail every request waiting for its reply with ``exc``."""
        for expectation in self._waiting:
            reply = expectation.reply
            if reply is not None and not reply.done():
                reply.set_exception(exc)

    def twinned(self, board: int) -> bool:
        """Whether two boards answering as ``board`` disagreed within the last
        ``_TWIN_HOLD_S``: which one is right cannot be told."""
        return bool(self._twinned_until) and (
            asyncio.get_running_loop().time() < self._twinned_until.get(board, 0.0)
        )

    # ------------------------------------------------------------ matching

    def frame_received(self, frame: codec.Frame) -> None:
        """A valid frame from the current connection."""
        if frame.cmd in _REPLIES and frame.board in self._open:
            self._status_frame(frame)
        elif frame.raw == self._last_request:
            log.debug("kerong.echo_skipped", bus=self._name, frame=frame.raw.hex(" "))
        elif frame.cmd == codec.REPLY_STATUS and frame.board in self._boards:
            self._stray(frame)
        else:
            log.debug("kerong.unexpected_frame", bus=self._name, frame=frame.raw.hex(" "))

    def _status_frame(self, frame: codec.Frame) -> None:
        board = frame.board
        now = asyncio.get_running_loop().time()
        opened = self._prune(board, now)
        status: Expectation | None = None
        unlock: Expectation | None = None
        for expectation in opened:
            if frame.addr not in expectation.addrs or frame.cmd != expectation.reply_cmd:
                continue
            if expectation.kind == STATUS:
                status = status or expectation  # the oldest: boards answer in order
            else:
                unlock = unlock or expectation
        answered = self._answered.get(board)
        shifted = self._unanswered.get(board)
        if shifted is not None and (
            answered is None
            or answered.tag < shifted.tag
            or now - answered.sent > self.clock.ceiling_s
        ):
            shifted = None  # not the request before the one answered, or too long ago
        if status is not None:
            self._answer(status, frame, now)
            self._resync(board, status, now)
        elif frame.cmd != codec.REPLY_STATUS:
            log.debug("kerong.unexpected_frame", bus=self._name, frame=frame.raw.hex(" "))
        elif unlock is not None:
            unlock.answered = True
            self._drop(unlock)
            if now - unlock.sent <= self.clock.timeout_s:
                self.unlock_answers[board] = True  # answers at once: hold for it next time
            self._counts[(board, "unlock_replies")] += 1
            if unlock.reply is not None and not unlock.reply.done():
                unlock.reply.set_result(frame)
            log.debug("kerong.unlock_reply", bus=self._name, board=board, addr=frame.addr)
            self._reading(frame)
        elif shifted is not None and answered is not None:
            # Later than its window: the reply to the request before the one answered,
            # which took this one's reply. Late, never a twin; the clock learns how late.
            del self._unanswered[board]
            self._late(board, now - answered.sent)
            self._reading(frame)
        elif (
            answered is not None
            and answered is self._last_written
            and frame.addr in answered.addrs
            and not answered.doubled
        ):
            # A second answer before the bus moved on: two boards on one address, if the
            # board's last poll had one too (a twin answers every poll; a stray does not).
            answered.doubled = True
            if self._doubled.get(board, False):
                self._twin(board, answered, frame)
            else:
                self._counts[(board, "strays")] += 1
                log.debug("kerong.second_answer", bus=self._name, frame=frame.raw.hex(" "))
        else:
            self._stray(frame)

    def _answer(self, expectation: Expectation, frame: codec.Frame, now: float) -> None:
        expectation.answered = True
        self._drop(expectation)
        expectation.frame = frame
        previous = self._answered.get(expectation.board)
        if previous is not None:
            self._doubled[expectation.board] = previous.doubled
        self._answered[expectation.board] = expectation
        reply = expectation.reply
        if reply is not None and not reply.done():
            reply.set_result(frame)
            self.clock.seen(now - expectation.sent)
            return
        # Past its timeout (or its reader gave up): late, but its own.
        self._late(expectation.board, now - expectation.sent)
        if self.drain_until.get(expectation.board, 0.0) <= expectation.until:
            self.drain_until.pop(expectation.board, None)  # nothing more can come
        self._reading(frame)

    def _resync(self, board: int, answered: Expectation, now: float) -> None:
        """A read answered while an earlier one went unanswered: the frame may be that
        one's reply, later than its window, and this read's own reply still to come.
        The board is asked again only once that reply could have come too, so the
        replies can never stay one request behind their reads (a stream shifted for
        good matched every reply to the wrong read, and taught the clock wrong)."""
        earlier = self._unanswered.get(board)
        if earlier is None or earlier.tag >= answered.tag or self._resynced.get(board) == earlier:
            return
        if now - earlier.sent > self.clock.ceiling_s:
            return
        self._resynced[board] = earlier
        until = answered.sent + (now - earlier.sent)
        self.drain_until[board] = max(self.drain_until.get(board, 0.0), until)

    def _late(self, board: int, latency_s: float) -> None:
        self._counts[(board, "late")] += 1
        self.clock.seen(latency_s, late=True)
        log.info("kerong.late_reply", bus=self._name, board=board, latency_s=round(latency_s, 4))

    def _stray(self, frame: codec.Frame) -> None:
        # Nothing asked for it: a reading to confirm by a read (a twin answering out of
        # turn must not flap the doors), never one to report as it is.
        self._counts[(frame.board, "strays")] += 1
        log.debug("kerong.stray_status", bus=self._name, frame=frame.raw.hex(" "))
        self._reading(frame, confirm=True)

    def _reading(self, frame: codec.Frame, *, confirm: bool = False) -> None:
        if self.on_reading is not None and frame.board in self._boards:
            try:
                self.on_reading(frame, confirm)
            except Exception:
                log.exception("kerong.reading_error", bus=self._name, board=frame.board)

    def _prune(self, board: int, now: float) -> list[Expectation]:
        """The board's expectations still open at ``now``; a status request whose window
        ended unanswered is remembered (see ``_status_frame``)."""
        opened = self._open[board]
        if all(e.until >= now for e in opened):
            return opened
        keep = []
        for expectation in opened:
            if expectation.until >= now:
                keep.append(expectation)
            elif expectation.kind == STATUS and expectation.timed_out:
                self._unanswered[board] = expectation
        self._open[board] = keep
        return keep

    def _drop(self, expectation: Expectation) -> None:
        """``expectation`` takes no more frames (answered, or nothing can come for it)."""
        opened = self._open.get(expectation.board)
        if opened and expectation in opened:
            opened.remove(expectation)

    def _twin(self, board: int, answered: Expectation, second: codec.Frame) -> None:
        """A second status reply to one request: two boards are set to one address."""
        self._counts[(board, "twins")] += 1
        now = asyncio.get_running_loop().time()
        first = answered.frame
        differ = first is not None and first.raw != second.raw
        if differ:
            self._twinned_until[board] = now + _TWIN_HOLD_S
        if now >= self._twin_logged.get(board, float("-inf")):
            self._twin_logged[board] = now + _TWIN_LOG_S
            log.warning(
                "kerong.twin_reply",
                bus=self._name,
                board=board,
                first=first.raw.hex(" ") if first is not None else None,
                second=second.raw.hex(" "),
                held=differ,
            )


_REPLIES = frozenset((codec.REPLY_STATUS, codec.REPLY_BUS_STATUS))


def _at(board: int) -> frozenset[int]:
    """The ADDR forms of a board's status reply."""
    return frozenset((board << 4,))
