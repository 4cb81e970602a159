"""A bank of Kerong KR-CU16 lock boards behind a pseudo-terminal.

The agent opens :attr:`KerongBoardEmulator.port` with pyserial exactly as it
would open ``/dev/ttyUSB0``; the emulator answers on the master side of the
pty with the bytes a real board sends. Behind each channel sits a small
physical model (door, latch, item, jam) that simulated people act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import structlog

from drivers.kerong import codec

log = structlog.get_logger(__name__)

REQUEST_COMMANDS = frozenset(
    (codec.CMD_STATUS, codec.CMD_UNLOCK, codec.CMD_BUS_STATUS, codec.CMD_UNLOCK_ALL)
)
READ_SIZE = 4096

ChangeCallback = Callable[[int, int], None]


@dataclass(slots=True)
class ChannelState:
    """One compartment as the physical world has it.

    ``latched`` implies the door is shut: a door that is open cannot be held by
    the latch. The board's lock feedback says "closed" only when the door is
    shut *and* latched.
    """

    door_open: bool = False
    latched: bool = True
    item: bool = False
    jammed: bool = False

    @property
    def closed(self) -> bool:
        return self.latched and not self.door_open


@dataclass(slots=True)
class _Board:
    channels: list[ChannelState]
    online: bool = True


class KerongBoardEmulator:
    """Boards ``boards`` (ids 0-15) answering KR-CU16 frames on a pty."""

    def __init__(
        self, boards: Iterable[int], *, locked_bit: int = 1, has_items: bool = True
    ) -> None:
        ids = sorted(set(boards))
        for board in ids:
            if not 0 <= board <= codec.MAX_BOARD:
                raise ValueError(f"board {board} out of range 0-{codec.MAX_BOARD}")
        if locked_bit not in (0, 1):
            raise ValueError("locked_bit must be 0 or 1")
        self._boards = {b: _Board([ChannelState() for _ in range(codec.CHANNELS)]) for b in ids}
        self.locked_bit = locked_bit
        # Boards without infrared sensors report every item bit as 0.
        self.has_items = has_items
        # Fault knobs, changeable at any time.
        self.echo = False
        self.reply_delay = 0.0
        # A simulated person shuts a door this many seconds after it opened.
        self.auto_shut_after: float | None = None
        self.on_change: ChangeCallback | None = None
        self.received: list[bytes] = []
        self._parser = codec.FrameParser()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._auto_shut: dict[tuple[int, int], asyncio.TimerHandle] = {}
        self._frame_waiters: list[tuple[bytes, asyncio.Future[None]]] = []

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._master is not None:
            return
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        # Raw on both ends: in cooked mode 0x03 (ETX) would be ^C, 0x0D/0x0A
        # get translated and bytes would be echoed by the line discipline.
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        # Keeping our own slave fd open means the master never sees a hang-up
        # (EIO) when the agent closes and reopens the port.
        self._port = os.ttyname(slave)
        self._loop.add_reader(master, self._on_readable)
        log.info("kerong emulator started", port=self._port, boards=list(self._boards))

    async def close(self) -> None:
        if self._master is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        for handle in (*self._pending, *self._auto_shut.values()):
            handle.cancel()
        self._pending.clear()
        self._auto_shut.clear()
        for _, fut in self._frame_waiters:
            if not fut.done():
                fut.cancel()
        self._frame_waiters.clear()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        log.info("kerong emulator closed", port=self._port)

    @property
    def port(self) -> str:
        """Path of the pty slave, for the agent to open with pyserial."""
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def boards(self) -> list[int]:
        return list(self._boards)

    # -- people and the physical world --------------------------------------

    def state(self, board: int, channel: int) -> ChannelState:
        """A copy of one channel's physical state."""
        return replace(self._channel(board, channel))

    def feedback_closed(self, board: int, channel: int) -> bool:
        """What the lock feedback bit means right now (polarity applied)."""
        return self._channel(board, channel).closed

    def open_door(self, board: int, channel: int) -> bool:
        """A person pulls the door; a latched door does not move."""
        ch = self._channel(board, channel)
        if ch.latched:
            return False
        self._set(board, channel, door_open=True)
        return True

    def force_open(self, board: int, channel: int) -> None:
        """The door is forced open, latch or not (a break-in, a bent door)."""
        self._set(board, channel, door_open=True, latched=False)

    def shut_door(self, board: int, channel: int) -> None:
        """A person pushes the door shut; the latch catches it."""
        self._set(board, channel, door_open=False, latched=True)

    def set_item(self, board: int, channel: int, present: bool) -> None:
        self._set(board, channel, item=present)

    def jam(self, board: int, channel: int, on: bool = True) -> None:
        """A jammed lock: a pulse does not release the latch (LockJammed)."""
        self._set(board, channel, jammed=on)

    def set_offline(self, board: int, offline: bool = True) -> None:
        """An offline board ignores everything on the line (unpowered, cable cut)."""
        self._board(board).online = not offline
        log.info("kerong board online changed", board=board, online=not offline)

    def is_online(self, board: int) -> bool:
        return self._board(board).online

    # -- faults on the line -------------------------------------------------

    def inject(self, data: bytes) -> None:
        """Put bytes on the line towards the agent (noise, a stray board)."""
        self._write(data)

    # -- observation --------------------------------------------------------

    # The timeout parameter is the agreed test-helper signature.
    async def wait_for_frame(self, raw: bytes, timeout: float) -> None:
        """Return once ``raw`` has been received (earlier or later); TimeoutError if not."""
        if raw in self.received:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (bytes(raw), fut)
        self._frame_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            with contextlib.suppress(ValueError):
                self._frame_waiters.remove(entry)

    def snapshot(self) -> dict[str, Any]:
        """Every board and channel, JSON-able, for the web view."""
        return {
            "port": self._port,
            "locked_bit": self.locked_bit,
            "has_items": self.has_items,
            "echo": self.echo,
            "reply_delay": self.reply_delay,
            "auto_shut_after": self.auto_shut_after,
            "boards": [
                {
                    "board": board_id,
                    "online": board.online,
                    "channels": [
                        {"channel": i + 1, "closed": ch.closed, **asdict(ch)}
                        for i, ch in enumerate(board.channels)
                    ],
                }
                for board_id, board in self._boards.items()
            ],
        }

    # -- internals ----------------------------------------------------------

    def _board(self, board: int) -> _Board:
        try:
            return self._boards[board]
        except KeyError:
            raise ValueError(f"board {board} is not in this bank") from None

    def _channel(self, board: int, channel: int) -> ChannelState:
        if not 1 <= channel <= codec.CHANNELS:
            raise ValueError(f"channel {channel} out of range 1-{codec.CHANNELS}")
        return self._board(board).channels[channel - 1]

    def _set(self, board: int, channel: int, **changes: bool) -> None:
        ch = self._channel(board, channel)
        before = replace(ch)
        for name, value in changes.items():
            setattr(ch, name, value)
        if ch == before:
            return
        log.debug("kerong channel changed", board=board, channel=channel, **asdict(ch))
        if ch.door_open != before.door_open:
            self._schedule_auto_shut(board, channel, ch.door_open)
        if self.on_change is not None:
            try:
                self.on_change(board, channel)
            except Exception:
                # An observer's bug must not take the boards down.
                log.exception("on_change observer failed", board=board, channel=channel)

    def _schedule_auto_shut(self, board: int, channel: int, opened: bool) -> None:
        handle = self._auto_shut.pop((board, channel), None)
        if handle is not None:
            handle.cancel()
        if opened and self.auto_shut_after is not None and self._loop is not None:
            self._auto_shut[(board, channel)] = self._loop.call_later(
                self.auto_shut_after, self._auto_shut_now, board, channel
            )

    def _auto_shut_now(self, board: int, channel: int) -> None:
        self._auto_shut.pop((board, channel), None)
        log.info("simulated person shuts door", board=board, channel=channel)
        self.shut_door(board, channel)

    def _unlock(self, board: int, channel: int) -> None:
        # The pulse releases the latch and the door's spring pushes it open,
        # unless the lock is jammed: then nothing moves.
        if not self._channel(board, channel).jammed:
            self._set(board, channel, latched=False, door_open=True)

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("kerong emulator read failed", error=str(exc))
            return
        if not data:
            return
        if self.echo:
            self._write(data)
        dropped = self._parser.dropped
        for frame in self._parser.feed(data):
            self._handle(frame)
        if self._parser.dropped != dropped:
            log.debug("kerong emulator dropped garbage", count=self._parser.dropped - dropped)

    def _handle(self, frame: codec.Frame) -> None:
        if frame.cmd not in REQUEST_COMMANDS:
            log.debug("kerong emulator ignored non-request frame", raw=frame.raw.hex(" "))
            return
        self.received.append(frame.raw)
        for raw, fut in self._frame_waiters:
            if raw == frame.raw and not fut.done():
                fut.set_result(None)

        if frame.cmd == codec.CMD_BUS_STATUS:
            if frame.addr == codec.BUS_ADDR:
                for board_id, board in self._boards.items():
                    if board.online:
                        reply = self._status_reply(board_id)
                        self._reply(codec.encode(reply[1], codec.REPLY_BUS_STATUS, reply[3:7]))
            return

        board = self._boards.get(frame.board)
        if board is None or not board.online:
            return  # nobody with that address on the bus: silence
        if frame.cmd == codec.CMD_STATUS:
            self._reply(self._status_reply(frame.board))
        elif frame.cmd == codec.CMD_UNLOCK:
            log.info("kerong unlock pulse", board=frame.board, channel=frame.channel)
            self._unlock(frame.board, frame.channel)
        elif frame.cmd == codec.CMD_UNLOCK_ALL:
            log.info("kerong unlock-all pulse", board=frame.board)
            for channel in range(1, codec.CHANNELS + 1):
                self._unlock(frame.board, channel)

    def _status_reply(self, board_id: int) -> bytes:
        channels = self._boards[board_id].channels
        lock_bits = tuple(ch.closed == bool(self.locked_bit) for ch in channels)
        items = tuple(ch.item and self.has_items for ch in channels)
        return codec.status_reply(board_id, lock_bits, items)

    def _reply(self, data: bytes) -> None:
        if self.reply_delay > 0 and self._loop is not None:
            handle: asyncio.TimerHandle

            def send() -> None:
                self._pending.discard(handle)
                self._write(data)

            handle = self._loop.call_later(self.reply_delay, send)
            self._pending.add(handle)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            log.warning("kerong emulator write failed", error=str(exc))
            return
        if written < len(data):
            # Nobody is reading the port and the pty buffer is full: on a real
            # RS-485 line those bytes would be lost too.
            log.debug("kerong emulator reply lost", lost=len(data) - written)
