"""What a bus knows of each board: reads decoded and confirmed, silence with hysteresis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from drivers.kerong import codec
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.transaction import Transactions

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BoardStatus:
    """One board's status with the lock polarity already applied."""

    board: int
    closed: tuple[bool, ...]  # 16 entries, channel i+1 -> closed[i]
    items: tuple[bool, ...]  # 16 item-sensor bits, channel i+1 -> items[i]


StatusCallback = Callable[[int, BoardStatus | None], None]  # None = board not answering
HealthCallback = Callable[[int, bool], None]  # (board, online)


def _flips(before: BoardStatus, after: BoardStatus) -> int:
    """How many lock and item bits differ between two statuses of one board."""
    doors = sum(a != b for a, b in zip(before.closed, after.closed, strict=True))
    return doors + sum(a != b for a, b in zip(before.items, after.items, strict=True))


class StatusTracker:
    """Reads the boards of one bus and tells ``on_status`` and ``on_health`` what
    changed (``KerongBus`` says when and what they are told).

    ``offline`` holds the boards whose last poll went unanswered, retries included
    (the poller tries them only from ``next_offline_poll[board]`` on, every
    ``offline_poll_interval_s``); ``ready`` is set once every board was reported.
    """

    def __init__(
        self,
        tx: Transactions,
        matcher: ReplyMatcher,
        boards: Sequence[int],
        on_status: StatusCallback,
        *,
        on_health: HealthCallback | None,
        locked_bit: int,
        offline_after: int,
        online_after: int,
        offline_poll_interval_s: float,
        name: str,
    ) -> None:
        self._tx = tx
        self._matcher = matcher
        self._boards = tuple(boards)
        self._on_status = on_status
        self._on_health = on_health
        self._locked_bit = bool(locked_bit)
        self._name = name
        # Hysteresis: a board is silent after a run of missed polls, and answers again
        # after a run of answers, so a flapping board neither flickers its doors to
        # unknown nor floods its listeners.
        self._offline_after = offline_after
        self._online_after = online_after
        self._misses: dict[int, int] = {}  # consecutive missed polls
        self._answers: dict[int, int] = {}  # consecutive answers while reported silent
        self._offline_poll_interval_s = offline_poll_interval_s
        # What on_status last said per board; a missing key = nothing said yet.
        self._reported: dict[int, BoardStatus | None] = {}
        self.ready = asyncio.Event()  # every board reported at least once
        if not self._boards:
            self.ready.set()
        self.offline: set[int] = set()  # boards that failed their last poll
        self.next_offline_poll: dict[int, float] = {}
        self._decoded: dict[int, tuple[bytes, BoardStatus]] = {}  # board -> last reply
        self.heard_at: dict[int, float] = {}  # board -> loop time a frame of it last came

    def status(self, board: int) -> BoardStatus | None:
        """The last status reported; None if the board is not answering or never did."""
        return self._reported.get(board)

    def silent_boards(self) -> list[int]:
        """Boards reported silent and not heard from since, ascending."""
        return sorted(b for b, status in self._reported.items() if status is None)

    async def read(
        self, board: int, priority: int, *, confirming: BoardStatus | None = None
    ) -> BoardStatus:
        """Read ``board`` and report what changed. ``confirming``: the change the read
        before this one showed, reported only if this read shows it again."""
        frame = await self._tx.read(board, priority)
        return await self.accept(board, frame, priority, confirming=confirming)

    async def accept(
        self,
        board: int,
        frame: codec.Frame,
        priority: int,
        *,
        confirming: BoardStatus | None = None,
    ) -> BoardStatus:
        """A status reply of ``board`` got otherwise (a bus-wide sweep): reported as
        ``read`` reports one (a change of several bits is confirmed by a read)."""
        status = self._status_of(board, frame)
        if board in self._boards:
            self.heard_at[board] = asyncio.get_running_loop().time()
            self.offline.discard(board)  # polled at the normal rate again
            self._misses[board] = 0
            if board in self._reported and self._reported[board] is None:
                self._answers[board] = self._answers.get(board, 0) + 1
                if self._answers[board] < self._online_after:
                    return status  # not yet: one answer is not a recovery
            self._answers[board] = 0
            previous = self._reported.get(board)
            if status is not previous and previous is not None:
                if confirming is None and _flips(previous, status) > 1:
                    # One door changes at a time; two bits at once may also be a reply
                    # corrupted past its checksum (an 8-bit sum misses paired bit errors).
                    # Read it again before telling anyone: a read only for rare changes.
                    return await self.read(board, priority, confirming=status)
                if confirming is not None and status != confirming:
                    return status  # not seen twice: the last status stands
            if self._matcher.twinned(board) and self._reported.get(board) is not None:
                # Two boards answer as this one and disagree: which is right cannot be
                # told, so the last status reported stands (kerong.twin_reply says why).
                return status
            self._report(board, status)
        return status

    def heard(self, frame: codec.Frame, confirm: bool = False) -> bool:
        """A status frame no read of ours waited for (an unlock's answer, a late reply):
        a fresh reading of its board. A board reported online takes it as a read (its
        misses start over); a change of more than one bit is confirmed by a read, as
        are frames from a board not reported online and every change a frame to
        ``confirm`` shows. Returns whether to read the board now."""
        board = frame.board
        previous = self._reported.get(board)
        if board in self._boards:
            self.heard_at[board] = asyncio.get_running_loop().time()
        if board not in self._boards or previous is None:
            return board in self._boards
        status = self._status_of(board, frame)
        if status is previous or self._matcher.twinned(board):
            return False
        if confirm:
            return status != previous
        self._misses[board] = 0
        if _flips(previous, status) > 1:
            return True  # not on one frame's word: a read confirms it
        self._report(board, status)
        return False

    def missed(self, board: int) -> None:
        """A poll of ``board`` went unanswered, retries included."""
        self._answers[board] = 0
        self._misses[board] = self._misses.get(board, 0) + 1
        if self._reported.get(board) is not None and self._misses[board] < self._offline_after:
            return  # a miss or two: the last status stands (a silent board's does not)
        self.offline.add(board)
        self.next_offline_poll[board] = asyncio.get_running_loop().time() + (
            self._offline_poll_interval_s
        )
        self._report(board, None)

    def port_down(self) -> None:
        """The port failed to open or went away: every board is unknown."""
        self.offline.clear()
        for board in self._boards:
            self._report(board, None)

    def _status_of(self, board: int, frame: codec.Frame) -> BoardStatus:
        """The reply decoded, or the status decoded from the same bytes last time: a
        board at rest answers the same bytes read after read, and decoding them again
        was most of what an idle poll cost."""
        last = self._decoded.get(board)
        if last is not None and last[0] == frame.raw:
            return last[1]
        reply = codec.decode_status(frame)
        status = BoardStatus(
            board,
            tuple(bit == self._locked_bit for bit in reply.lock_bits),
            reply.items,
        )
        self._decoded[board] = (frame.raw, status)
        return status

    def _report(self, board: int, status: BoardStatus | None) -> None:
        said_before = board in self._reported
        previous = self._reported.get(board)
        if said_before and previous == status:
            return
        self._reported[board] = status
        if status is None:
            log.warning("kerong.board_offline", bus=self._name, board=board)
        elif previous is None:
            log.info("kerong.board_online", bus=self._name, board=board)
        try:
            self._on_status(board, status)
        except Exception:
            log.exception("kerong.callback_error", bus=self._name, board=board)
        # Health after the status: a listener sees the doors' state first.
        went_silent = status is None  # (None -> None returned above)
        came_back = status is not None and said_before and previous is None
        if self._on_health is not None and (went_silent or came_back):
            try:
                self._on_health(board, came_back)
            except Exception:
                log.exception("kerong.callback_error", bus=self._name, board=board)
        if not self.ready.is_set() and len(self._reported) == len(self._boards):
            self.ready.set()
