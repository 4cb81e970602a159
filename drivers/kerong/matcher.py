"""Which write a frame from the bus answers: every request says what it may bring back."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence

import structlog

from drivers.kerong import codec
from drivers.kerong.expectation import STATUS, UNLOCK, Expectation, status_addrs
from drivers.kerong.timing import ReplyClock
from drivers.kerong.twins import TwinWatch

__all__ = ["STATUS", "UNLOCK", "Expectation", "ReplyMatcher"]

log = structlog.get_logger(__name__)

ReadingCallback = Callable[[codec.Frame, bool], None]  # (frame, to confirm by a read)
BusAnswerCallback = Callable[["Expectation | None", codec.Frame], None]  # None: owed to none


class ReplyMatcher:
    """Matches each frame from the bus to the request it answers.

    A status frame (0x35) for a board goes, in order: to its status request waiting for
    a reply; to its status request that timed out, within its late window (counted in
    ``counts[(board, "late")]``, and the ``clock`` learns); to an unlock of the board
    that may still answer (``counts[(board, "unlock_replies")]``); to a status request
    closed unanswered, when the next one was answered already (a reply later than the
    window: counted late, never a twin). Left over: a second answer to the request
    written last is a twin's (two boards on one address, ``counts[(board, "twins")]``)
    if the poll before had two too, else a stray (``counts[(board, "strays")]``). Each
    status frame answering a request
    of ours is handed to ``on_reading(frame, False)``: a fresh reading of the board; a
    stray, ``on_reading(frame, True)``: one to confirm by a read. A copy of the last
    frame written is the adapter's echo; anything else is logged and dropped.

    A bus-wide status (0x32) owes each board one 0x36 answer (``expect_bus_status``),
    tagged: a board's answers go to its sweeps in order, so a late one is never taken
    for a later sweep's. In time it goes to ``on_bus_answer``; after its sweep stopped
    waiting (``sweep_over``) and within its late window it is late: counted, a fresh
    reading (``on_bus_answer`` learns from it).

    One wire keeps replies in order: an answer ends every other board's wait for a reply
    to a request written before it: lost, not late (``_lost_before``, ADR 0014).

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
        self.on_bus_answer: BusAnswerCallback | None = None
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
        self._drain_sent: dict[int, float] = {}  # board -> write time of what it drains for
        self._swept: dict[int, list[Expectation]] = {}  # board -> its open 0x36, in order
        # Boards whose unlocks were answered at once (True) or not (False) last time:
        # an unlock of a board not known to stay quiet holds the bus for its answer.
        self.unlock_answers: dict[int, bool] = {}
        self._twins = TwinWatch(name, counts)

    # ------------------------------------------------------------ registering

    def expect_status(self, board: int) -> Expectation:
        """Register a status request to ``board`` (before the write: a reply can arrive
        inside write()); its reply comes on ``reply``."""
        reply: asyncio.Future[codec.Frame] = asyncio.get_running_loop().create_future()
        expectation = Expectation(next(self._tags), board, STATUS, status_addrs(board), reply)
        return self._register(expectation)

    def expect_bus_status(self, boards: Iterable[int]) -> dict[int, Expectation]:
        """Register the 0x36 answer a bus-wide status may bring from each of ``boards``,
        all for one ``written``. Returns board -> expectation."""
        now = asyncio.get_running_loop().time()
        made = {}
        for board in boards:
            opened = self._swept.setdefault(board, [])
            while opened and opened[0].until < now:
                del opened[0]  # its window is over: nothing more can come for it
            expectation = Expectation(next(self._tags), board, STATUS, status_addrs(board), None)
            made[board] = expectation
            opened.append(expectation)
        return made

    def sweep_over(self, expectations: Iterable[Expectation], *, same_link: bool) -> None:
        """The sweep that wrote ``expectations`` stopped waiting: an answer still to come
        within its late window is late (on a connection still open)."""
        for expectation in expectations:
            opened = self._swept.get(expectation.board, [])
            if (not same_link or expectation.until == float("inf")) and expectation in opened:
                opened.remove(expectation)
            expectation.timed_out = not expectation.answered

    def expect_unlock(self, board: int, addr: int, pulse_s: float) -> Expectation:
        """Register an unlock (ADDR ``addr``) of ``board``: it may bring back one status
        frame in the board's ADDR or the unlock's, at once or within ``pulse_s`` and the
        late window. Its ``reply`` is a future to hold the bus for, unless the board's
        last unlock (one that ``teaches``) went unanswered (then None)."""
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
            if expectation.until != float("inf") and expectation.teaches:
                self.unlock_answers[expectation.board] = expectation.answered
            return
        if expectation.answered or not same_link or expectation.until == float("inf"):
            if not expectation.answered:
                self._drop(expectation)  # never written, or the link went
            return
        expectation.timed_out = True
        self.drain_until[expectation.board] = expectation.until
        self._drain_sent[expectation.board] = expectation.sent

    async def drained(self, board: int) -> None:
        """Return once a late reply to ``board``'s last status request can no longer come."""
        loop = asyncio.get_running_loop()
        while (drain_s := self.drain_until.get(board, 0.0) - loop.time()) > 0:  # noqa: ASYNC110
            # Looked at again: another timeout may extend it, _lost_before end it.
            await asyncio.sleep(min(drain_s, max(self.clock.answer_s, 0.01)))
        self.drain_until.pop(board, None)
        self._drain_sent.pop(board, None)

    def forget_late(self) -> None:
        """A new connection: nothing written on the old one is answered on this one."""
        self.drain_until.clear()
        self._drain_sent.clear()
        self._swept.clear()
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
        """Whether two boards answering as ``board`` disagree (``twins.TwinWatch``)."""
        return self._twins.twinned(board)

    # ------------------------------------------------------------ matching

    def frame_received(self, frame: codec.Frame) -> None:
        """A valid frame from the current connection."""
        if frame.cmd == codec.REPLY_BUS_STATUS:
            self._bus_answer(frame)
        elif frame.cmd == codec.REPLY_STATUS and frame.board in self._open:
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
            if frame.addr not in expectation.addrs:
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
            if not self._resync(board, status, now):
                self._lost_before(board, status.sent)  # its own reply: the line is in order
        elif unlock is not None:
            unlock.answered = True
            self._drop(unlock)
            if now - unlock.sent <= self.clock.timeout_s and unlock.teaches:
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
                self._twins.seen(board, answered.frame, frame)
            else:
                self._counts[(board, "strays")] += 1
                log.debug("kerong.second_answer", bus=self._name, frame=frame.raw.hex(" "))
        else:
            self._stray(frame)

    def _bus_answer(self, frame: codec.Frame) -> None:
        """A 0x36 frame: the answer of its board's open sweep expectation, in time or late."""
        board, now = frame.board, asyncio.get_running_loop().time()
        opened = self._swept.get(board) or []
        while opened and opened[0].until < now:
            del opened[0]
        if not opened or board not in self._boards:
            log.debug("kerong.unexpected_frame", bus=self._name, frame=frame.raw.hex(" "))
            if self.on_bus_answer is not None:
                self.on_bus_answer(None, frame)  # a second answer to a sweep: a twin's?
            return
        expectation = opened.pop(0)  # the oldest: a board answers the sweeps in order
        expectation.answered, expectation.frame = True, frame
        if not expectation.timed_out:
            self._lost_before(board, expectation.sent)
        else:  # after its sweep stopped waiting: late, its own, a fresh reading
            self._counts[(board, "late")] += 1
            log.info("kerong.late_bus_answer", bus=self._name, board=board)
            self._reading(frame)
        if self.on_bus_answer is not None:
            self.on_bus_answer(expectation, frame)

    def _lost_before(self, board: int, sent: float) -> None:
        """A request written at ``sent`` was answered as its own: on one wire replies come
        in the order of their requests, so every other board's drain for a request written
        before it is over (that reply was lost, not late), and so is its resync pause; and
        no answer to an earlier sweep is still to come, from any board."""
        for opened in self._swept.values():
            while opened and opened[0].sent < sent:
                del opened[0]
        for other, drained_for in list(self._drain_sent.items()):
            if other == board or drained_for >= sent:
                continue
            del self._drain_sent[other]
            if self.drain_until.pop(other, None) is not None:
                self._counts[(other, "lost")] += 1
            self._unanswered.pop(other, None)
            for expectation in list(self._open.get(other, ())):
                if expectation.timed_out and expectation.sent <= drained_for:
                    self._drop(expectation)

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
            self._drain_sent.pop(expectation.board, None)
        self._reading(frame)

    def _resync(self, board: int, answered: Expectation, now: float) -> bool:
        """A read answered while an earlier one went unanswered: the frame may be that
        one's reply, later than its window, and this read's own reply still to come.
        The board is asked again only once that reply could have come too, so the
        replies can never stay one request behind their reads (a stream shifted for
        good matched every reply to the wrong read, and taught the clock wrong)."""
        earlier = self._unanswered.get(board)
        if earlier is None or earlier.tag >= answered.tag or self._resynced.get(board) == earlier:
            return False
        if now - earlier.sent > self.clock.ceiling_s:
            return False
        self._resynced[board] = earlier
        until = answered.sent + (now - earlier.sent)
        self.drain_until[board] = max(self.drain_until.get(board, 0.0), until)
        self._drain_sent[board] = answered.sent
        self._counts[(board, "resyncs")] += 1
        return True

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
