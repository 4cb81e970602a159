"""One RS-485 bus of Kerong KR-CU16 lock boards, driven from asyncio.

The bus owns the serial port: it opens it (and reopens it after an unplug, with
backoff), polls every board's status continuously, and lets callers unlock and
read boards. RS-485 is half duplex and the boards only speak when asked, so there
is exactly one request on the wire at a time, behind a priority lock: commands
(unlock, read_status) always go before polls waiting for the bus.

An unlock is an actuation like a GPIO relay pulse: it takes a slot of a
``drivers.power.PowerBudget`` before it queues for the bus, and keeps it for
``pulse_s`` (the board energises the lock that long) after the frame is on the
wire, without holding the bus: polls go on. Buses on one power supply share one
budget. The bus also tells its health: which boards are silent, whether every
board has been heard from (or found silent) once, whether the port is open.

See ``shared/protocols/kerong-cu16.md`` for the frames and
``shared/LESSONS.md`` ("Serial protocols in asyncio") for why it is built this way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import structlog

from drivers.kerong import codec
from drivers.kerong.codec import wire_cycle_s
from drivers.kerong.link import BusUnavailable, ConnectFn, Link
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.pulse import Pulser
from drivers.kerong.status import BoardStatus, HealthCallback, StatusCallback, StatusTracker
from drivers.kerong.transaction import COMMAND, POLL, BoardTimeout, Transactions
from drivers.power import PowerBudget

log = structlog.get_logger(__name__)


# A bus with nothing to poll (no boards) still goes round this often, so `polling()`
# stays true, without spinning a core.
_IDLE_CYCLE_S = 0.5


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


class KerongBus:
    """Polls the boards of one bus and sends them commands.

    ``on_status(board, status)`` is called on the loop whenever what is known
    about a board changes: its first good read, any bit change, ``None`` when
    it stops answering (after ``poll_retries`` retries) or the port goes away,
    and the status again when it answers again. A board that never answered
    and cannot be read is reported ``None`` once. ``on_health(board, online)``
    follows it when a board goes silent (``False``, also one never heard) and
    when a silent board answers again (``True``). A change of more than one bit at
    once is reported once a second read shows it too (an 8-bit sum lets paired bit
    errors through); one door changing costs no extra read. Two boards on one address
    (two replies to one request) count in ``counts[(board, "twins")]`` and log
    ``kerong.twin_reply``; while their replies disagree the board's last status stands.
    A board whose read timed out or was cancelled is not asked again until its late
    reply can no longer come (``reply_timeout_s`` later): a late reply is never taken
    for a later request's. An unlocked board is read as soon as its pulse is over,
    whatever ``poll_interval_s``.

    ``port`` is a pyserial URL (a device path, ``socket://host:port``), ``boards``
    the addresses 0 to ``codec.MAX_BOARD``, ``baud`` bit/s. Durations are seconds:
    ``reply_timeout_s`` (one reply), ``poll_interval_s`` (one poll cycle at most
    this often, and never more often than the wire could carry it, ``wire_cycle_s``:
    0 polls back to back at the wire's pace), ``offline_poll_interval_s`` (a silent
    board is tried this often),
    ``reconnect_min_s``/``reconnect_max_s`` (reopen backoff), ``silent_reopen_s``
    (every board silent this long on a port that looks open: reopen it), ``pulse_s``
    (the board's lock pulse: an unlock holds a power slot that long). The power
    budget is ``power_budget`` when given (shared with the other drivers on the same
    supply), else a budget of its own of ``max_concurrent`` and ``stagger_s``; the
    stagger also holds between the unlock frames as they go on the wire.
    ``locked_bit`` is the lock-feedback bit value meaning "closed".

    The constructor raises ``ValueError`` for boards out of range or listed twice and
    settings out of range; nothing is opened before ``start()``.
    """

    def __init__(
        self,
        port: str,
        boards: Sequence[int],
        on_status: StatusCallback,
        *,
        on_health: HealthCallback | None = None,
        baud: int = 19200,
        reply_timeout_s: float = 0.1,
        poll_retries: int = 1,
        offline_after: int = 3,
        online_after: int = 2,
        poll_interval_s: float = 0.0,
        offline_poll_interval_s: float = 1.0,
        locked_bit: int = 1,
        pulse_s: float = 0.5,
        max_concurrent: int = 1,
        stagger_s: float = 0.1,
        power_budget: PowerBudget | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        silent_reopen_s: float = 10.0,
        connect: ConnectFn | None = None,
        name: str = "kerong",
    ) -> None:
        for board in boards:
            if not 0 <= board <= codec.MAX_BOARD:
                raise ValueError(f"board {board} out of range 0-{codec.MAX_BOARD}")
        if len(set(boards)) != len(boards):
            raise ValueError(f"duplicate board in {list(boards)}")
        if poll_retries < 0:
            raise ValueError("poll_retries must be >= 0")
        if offline_after < 1 or online_after < 1:
            raise ValueError("offline_after and online_after must be >= 1")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        if pulse_s <= 0:
            raise ValueError(f"pulse_s must be > 0, not {pulse_s}")
        self._name = name
        self._boards = tuple(boards)
        self._baud = baud
        self._poll_retries = poll_retries
        if poll_interval_s < 0:
            raise ValueError(f"poll_interval_s must be >= 0, not {poll_interval_s}")
        self._poll_interval_s = poll_interval_s
        self._budget = power_budget or PowerBudget(max_concurrent, stagger_s)
        self.last_cycle: float | None = None  # loop time a poll cycle last began
        # For metrics: replies and timeouts per board, and the seconds the replies took
        # from request to reply (waiting for the bus included).
        self.counts: Counter[tuple[int, str]] = Counter()
        self.rtt_s: Counter[int] = Counter()
        self._matcher = ReplyMatcher(name, reply_timeout_s, self.counts)
        self._link = Link(
            port,
            baud,
            name=name,
            connect=connect,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
            silent_reopen_s=silent_reopen_s,
            on_frame=self._matcher.frame_received,
            on_open=self._port_open,
            on_lost=self._matcher.fail,
            on_down=self._port_down,
        )

        self._tx = Transactions(
            self._link,
            self._matcher,
            self._boards,
            baud=baud,
            reply_timeout_s=reply_timeout_s,
            counts=self.counts,
            rtt_s=self.rtt_s,
            name=name,
        )
        self._tracker = StatusTracker(
            self._tx,
            self._matcher,
            self._boards,
            on_status,
            on_health=on_health,
            locked_bit=locked_bit,
            offline_after=offline_after,
            online_after=online_after,
            offline_poll_interval_s=offline_poll_interval_s,
            name=name,
        )
        self._pulser = Pulser(self._tx, self._budget, pulse_s, self._poll_soon)
        self._run_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._closed = False
        self._tries: dict[int, int] = {}  # timed-out polls in a row, retries included
        # Boards to read before the next cycle is due (an unlock's pulse ended), and
        # the poll loop's nap between cycles, which that cuts short.
        self._soon: set[int] = set()
        self._nap: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- public

    async def start(self) -> None:
        """Start opening the port and polling in the background; returns at once."""
        if self._closed:
            raise RuntimeError(f"bus {self._name} is closed")
        if self._run_task is not None:
            return
        self._run_task = asyncio.create_task(self._link.run(), name=f"kerong-{self._name}-port")
        self._poll_task = asyncio.create_task(self._poll_loop(), name=f"kerong-{self._name}-poll")

    async def close(self) -> None:
        """Stop polling and close the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._run_task, self._poll_task) if t is not None]
        for task in tasks:
            task.cancel()
        self._matcher.fail(BusUnavailable(f"bus {self._name} closed"))
        self._link.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._link.wait_closed()
        log.info("kerong.closed", bus=self._name)

    async def unlock(self, board: int, channel: int) -> None:
        """Pulse one lock (board 0 to ``MAX_BOARD``, channel 1 to ``CHANNELS``).

        Takes a slot of the power budget first (waiting for one does not hold the
        bus), then sends the frame ahead of waiting polls; returns ``pulse_s`` after
        the frame is on the wire, when the board has let the lock go (the board sends
        no reliable reply: confirm with the status). The slot is held for the whole
        pulse, also when the caller is cancelled once the frame is out. Raises
        ``BusUnavailable`` (nothing was sent), ``codec.CodecError`` (a ValueError)
        for a board or channel the protocol cannot address.
        """
        request = codec.unlock_request(board, channel)
        log.info("kerong.unlock", bus=self._name, board=board, channel=channel)
        await self._pulser.pulse(request, board)

    async def unlock_all(self, board: int) -> None:
        """Pulse every lock of one board, inside one power slot held ``pulse_s``
        (how the board spaces its 16 pulses is its own affair: to stay inside the
        power budget, unlock channel by channel). Raises ``BusUnavailable``."""
        request = codec.unlock_all_request(board)
        log.info("kerong.unlock_all", bus=self._name, board=board)
        await self._pulser.pulse(request, board)

    async def read_status(self, board: int) -> BoardStatus:
        """Read one board now, ahead of the polls. Raises BoardTimeout, BusUnavailable."""
        return await self._tracker.read(board, COMMAND)

    def status(self, board: int) -> BoardStatus | None:
        """The last known status; None if the board is not answering or never did."""
        return self._tracker.status(board)

    # ---------------------------------------------------------------- health

    @property
    def name(self) -> str:
        """The bus's name (in logs and problems)."""
        return self._name

    @property
    def boards(self) -> tuple[int, ...]:
        """The board addresses polled, in order."""
        return self._boards

    @property
    def budget(self) -> PowerBudget:
        """The power budget unlocks take a slot of (shared when given at construction)."""
        return self._budget

    def polling(self, stall_s: float) -> bool:
        """Whether the bus is alive: its tasks run, and, with the port open, a poll
        cycle began within ``stall_s`` seconds. A closed port being reopened counts
        as alive (a restart would not mend an unplugged adapter)."""
        tasks = [t for t in (self._run_task, self._poll_task) if t is not None]
        if self._closed or not tasks or any(t.done() for t in tasks):
            return False
        if not self._link.up.is_set() or self.last_cycle is None:
            return True
        return asyncio.get_running_loop().time() - self.last_cycle < stall_s

    @property
    def bad_bytes(self) -> int:
        """Bytes dropped as garbage by the frame parser on the current connection."""
        return self._link.bad_bytes

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._link.transport is not None

    @property
    def ready(self) -> bool:
        """True once every board has answered or been reported silent at least once."""
        return self._tracker.ready.is_set()

    async def wait_ready(self) -> None:
        """Return once ``ready`` (at once if it is); bound it with a timeout."""
        await self._tracker.ready.wait()

    def silent_boards(self) -> list[int]:
        """Boards reported silent and not heard from since, ascending (every board
        while the port is not open, once reported)."""
        return self._tracker.silent_boards()

    # ----------------------------------------------------------- transactions

    def _poll_soon(self, board: int) -> None:
        """Have the poll loop read ``board`` now instead of at its next cycle."""
        if board in self._boards and not self._closed:
            self._soon.add(board)
            if self._nap is not None:
                _wake(self._nap)

    # ----------------------------------------------------------------- status

    def _port_open(self) -> None:
        """A new connection: every board is polled at the normal rate, the old
        connection's late replies are ignored, retries start over."""
        self._tracker.offline.clear()
        self._matcher.forget_late()
        self._tries.clear()

    def _port_down(self) -> None:
        """The port failed to open or went away: every board is unknown."""
        self._tracker.port_down()

    # ------------------------------------------------------------------ polls

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_cycle = 0.0
        while True:
            try:
                await self._link.up.wait()
                if loop.time() >= next_cycle:
                    next_cycle = await self._poll_cycle()
                elif self._soon:
                    # A retry, or an unlock's pulse is over: read those boards now,
                    # not at the next cycle (which may be seconds away).
                    await self._poll_boards([b for b in self._boards if b in self._soon])
                wake = next_cycle
                if self._soon:
                    # The soonest of them is due once its late reply can no longer come.
                    wake = min(wake, min(self._matcher.drain_until.get(b, 0.0) for b in self._soon))
                await self._nap_until(wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kerong.poll_error", bus=self._name)
                await asyncio.sleep(max(self._poll_interval_s, 0.01))

    async def _poll_cycle(self) -> float:
        """Poll every board due once; returns the loop time the next cycle is due."""
        loop = asyncio.get_running_loop()
        cycle_start = self.last_cycle = loop.time()
        polled, wake = await self._poll_boards(self._boards)
        self._check_liveness(loop.time())
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
        up = self._link.up
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
        """Sleep until loop time ``when``; an unlock's end (``_poll_soon``) wakes it."""
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

    def _check_liveness(self, now: float) -> None:
        self._link.check_liveness(now, boards_silent=self._tracker.offline.issuperset(self._boards))
