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

``KerongBus`` builds the parts and wires them (the package's docstring maps
them): the link below the transactions, the matcher beside them, the status
tracker and the unlocks above them, and the poller on top.

See ``shared/protocols/kerong-cu16.md`` for the frames and
``shared/LESSONS.md`` ("Serial protocols in asyncio") for why it is built this way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import structlog

from drivers.kerong import codec
from drivers.kerong.codec import wire_cycle_s
from drivers.kerong.config import KerongBusConfig
from drivers.kerong.link import BusUnavailable, ConnectFn, Link
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.poller import Poller
from drivers.kerong.pulse import Pulser
from drivers.kerong.status import BoardStatus, HealthCallback, StatusCallback, StatusTracker
from drivers.kerong.sweep import BusSweep
from drivers.kerong.timing import ReplyClock
from drivers.kerong.transaction import COMMAND, BoardTimeout, Transactions
from drivers.power import PowerBudget

__all__ = [
    "BoardStatus",
    "BoardTimeout",
    "BusTuning",
    "BusUnavailable",
    "ConnectFn",
    "HealthCallback",
    "KerongBus",
    "KerongBusConfig",
    "StatusCallback",
    "wire_cycle_s",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BusTuning:
    """The bus's own timings that no config file sets (tests shorten them), seconds:
    ``poll_retries`` (a timed-out poll is retried this often before it counts as a
    miss, >= 0), ``offline_poll_interval_s`` (a silent board is tried this often),
    ``reconnect_min_s``/``reconnect_max_s`` (reopen backoff, 0 < min <= max),
    ``silent_reopen_s`` (every board silent this long on a port that looks open: reopen
    it). Raises ValueError out of those bounds."""

    poll_retries: int = 1
    offline_poll_interval_s: float = 1.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    silent_reopen_s: float = 10.0

    def __post_init__(self) -> None:
        if self.poll_retries < 0:
            raise ValueError("poll_retries must be >= 0")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        if self.offline_poll_interval_s <= 0 or self.silent_reopen_s <= 0:
            raise ValueError("offline_poll_interval_s and silent_reopen_s must be > 0")


class KerongBus:
    """Polls the boards of one bus and sends them commands.

    Built from its validated config section (``config``: every setting, default and
    bound is ``KerongBusConfig``'s) and ``tuning`` (``BusTuning``: timings no config
    sets). ``on_status(board, status)`` is called on the loop whenever what is known
    about a board changes: its first good read, any bit change, ``None`` when it stops
    answering (``offline_after`` missed polls) or the port goes away, and the status
    again once it answers again (``online_after`` answers). A board that never answered
    and cannot be read is reported ``None`` once. ``on_health(board, online)`` follows
    it when a board goes silent (``False``, also one never heard) and when a silent
    board answers again (``True``). A change of more than one bit at once is reported
    once a second read shows it too (an 8-bit sum lets paired bit errors through).

    Every request says what it may bring back (``matcher.ReplyMatcher``): an unlock's
    answer, in either ADDR form, at once or once the lock moved, is a fresh reading and
    never a second board; a late reply is its own request's, counted in
    ``counts[(board, "late")]``, and makes the bus wait longer (``timing.ReplyClock``,
    ADR 0014); two boards on one address count in ``counts[(board, "twins")]``, and
    while their replies disagree the board's last status stands. An unlocked board is
    read as soon as its pulse is over, whatever ``poll_interval_s``.

    The power budget is ``power_budget`` when given (shared with the other drivers on
    the same supply), else one of the config's ``max_concurrent`` and ``stagger_s``; the
    stagger also holds between the unlock frames as they go on the wire. ``connect``
    replaces the opening of the port (tests). Nothing is opened before ``start()``.
    """

    def __init__(
        self,
        config: KerongBusConfig,
        on_status: StatusCallback,
        *,
        on_health: HealthCallback | None = None,
        power_budget: PowerBudget | None = None,
        connect: ConnectFn | None = None,
        tuning: BusTuning = BusTuning(),
    ) -> None:
        name = self._name = config.name
        self._config = config
        self._boards = tuple(config.boards)
        self._budget = power_budget or PowerBudget(config.max_concurrent, config.stagger_s)
        # For metrics: replies, timeouts, late replies and the rest per board, and the
        # seconds the replies took from request to reply (waiting for the bus included).
        self.counts: Counter[tuple[int, str]] = Counter()
        self.rtt_s: Counter[int] = Counter()
        self.clock = ReplyClock(config.reply_timeout_s)
        self._matcher = ReplyMatcher(name, self.clock, self.counts, self._boards)
        self._link = Link(
            config.port,
            config.baud,
            name=name,
            connect=connect,
            reconnect_min_s=tuning.reconnect_min_s,
            reconnect_max_s=tuning.reconnect_max_s,
            silent_reopen_s=tuning.silent_reopen_s,
            on_frame=self._matcher.frame_received,
            on_open=self._port_open,
            on_lost=self._matcher.fail,
            on_down=self._port_down,
        )
        self._tx = Transactions(
            self._link,
            self._matcher,
            self._boards,
            baud=config.baud,
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
            locked_bit=config.locked_bit,
            offline_after=config.offline_after,
            online_after=config.online_after,
            offline_poll_interval_s=tuning.offline_poll_interval_s,
            name=name,
        )
        self._matcher.on_reading = self._heard
        self._poller = Poller(
            self._tracker,
            self._matcher,
            self._link.up,
            self._boards,
            poll_retries=tuning.poll_retries,
            poll_interval_s=config.poll_interval_s,
            baud=config.baud,
            name=name,
            rest_interval_s=config.rest_poll_interval_s,
            active_hold_s=config.active_hold_s,
            sweep=BusSweep(
                self._link, self._tx, self._matcher, self._boards, baud=config.baud, name=name
            )
            if config.bus_status
            else None,
        )
        self._pulser = Pulser(self._tx, self._budget, config.pulse_s, self._poll_soon)
        self._run_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._closed = False

    # ---------------------------------------------------------------- public

    async def start(self) -> None:
        """Start opening the port and polling in the background; returns at once."""
        if self._closed:
            raise RuntimeError(f"bus {self._name} is closed")
        if self._run_task is not None:
            return
        self._run_task = asyncio.create_task(self._link.run(), name=f"kerong-{self._name}-port")
        self._poll_task = asyncio.create_task(
            self._poller.run(self._check_liveness), name=f"kerong-{self._name}-poll"
        )

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
        self._poller.activate()  # a command: the wire's pace now (ADR 0015)
        await self._pulser.pulse(request, board)

    async def unlock_all(self, board: int) -> None:
        """Pulse every lock of one board, inside one power slot held ``pulse_s``
        (how the board spaces its 16 pulses is its own affair: to stay inside the
        power budget, unlock channel by channel). Raises ``BusUnavailable``."""
        request = codec.unlock_all_request(board)
        log.info("kerong.unlock_all", bus=self._name, board=board)
        self._poller.activate()
        await self._pulser.pulse(request, board)

    async def read_status(self, board: int) -> BoardStatus:
        """Read one board now, ahead of the polls. Raises BoardTimeout, BusUnavailable."""
        self._poller.activate()
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
    def last_cycle(self) -> float | None:
        """The loop time a poll cycle last began; None before the first."""
        return self._poller.last_cycle

    @property
    def bad_bytes(self) -> int:
        """Bytes dropped as garbage by the frame parser on the current connection."""
        return self._link.bad_bytes

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._link.transport is not None

    @property
    def open_error(self) -> Exception | None:
        """Why the port is not open (an open's error: its ``errno`` tells why; or the
        connection's loss); None while it is."""
        return self._link.open_error

    @property
    def port(self) -> str:
        """The port (a path or a pyserial URL) the bus opens."""
        return self._link.port

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

    # ---------------------------------------------------------------- wiring

    def _poll_soon(self, board: int) -> None:
        """An unlock's pulse is over: have the poll loop read ``board`` now."""
        if not self._closed:
            self._poller.poll_soon(board)

    def _heard(self, frame: codec.Frame, confirm: bool) -> None:
        """A status frame no read waited for: a fresh reading (a read confirms it if
        the tracker asks)."""
        if self._tracker.heard(frame, confirm):
            self._poll_soon(frame.board)
        elif not self._closed and (status := self._tracker.status(frame.board)) is not None:
            # Taken as a read: the poller sees it too, or a door whose close came only
            # in a late reply and that opens again looks unwired to it (no fast pace).
            self._poller.observe(frame.board, status)

    def _port_open(self) -> None:
        """A new connection: every board is polled at the normal rate, the old
        connection's late replies are ignored, retries start over."""
        self._tracker.offline.clear()
        self._matcher.forget_late()
        self._poller.forget_retries()
        self._poller.activate()  # every door unknown since the port went: the wire's pace

    def _port_down(self) -> None:
        """The port failed to open or went away: every board is unknown."""
        self._tracker.port_down()

    def _check_liveness(self, now: float) -> None:
        """After each poll cycle: a port that looks open while every board is silent
        and no frame came for ``silent_reopen_s`` is reopened."""
        self._link.check_liveness(now, boards_silent=self._tracker.offline.issuperset(self._boards))
