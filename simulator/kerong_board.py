"""A bank of Kerong KR-CU16 lock boards behind a pseudo-terminal.

The agent opens :attr:`KerongBoardEmulator.port` with pyserial exactly as it
would open ``/dev/ttyUSB0``; the emulator answers on the master side of the
pty with the bytes a real board sends. What the boards answer is decided by
the pure core :class:`simulator.kerong_core.KerongBank` (:attr:`bank`); this
module adds what needs a loop and a clock: the pty, reply delays, a simulated
person who shuts doors, and waiting for a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Iterable
from typing import Any

import structlog

from drivers.kerong.config import KerongBusConfig
from simulator.kerong_core import BoardVariant, ChangeCallback, ChannelState, KerongBank

log = structlog.get_logger(__name__)

READ_SIZE = 4096


class KerongBoardEmulator:
    """Boards ``boards`` (ids 0-15) answering KR-CU16 frames on a pty.

    ``locked_bit``, ``has_items``, ``seed`` and ``variant`` go to the :class:`KerongBank`
    core (ValueError for a bad board id or polarity); an unlock answer the variant sends
    once the lock has moved goes then. Knobs, changeable at any time:
    ``reply_delay_s`` (the boards answer that much later; an echo does not wait; starts
    at the variant's),
    ``auto_shut_after_s`` (a simulated person shuts a door that long after it
    opened; None: never), :attr:`echo`, ``baud`` (the speed the boards are set to:
    a host whose port is at another speed gets no answer; None: any); the other faults
    (garbage, corrupt, drop, twins, offline and flapping boards) are on :attr:`bank`.
    Replies leave in the order the requests came, as on one wire, even when
    ``reply_delay_s`` shrinks between two of them. ``on_change(board, channel)`` is
    called after any change of a channel's physical state.
    """

    # Slots: setting a renamed knob (``reply_delay``) raises instead of doing nothing.
    __slots__ = (
        "_auto_shut",
        "_frame_waiters",
        "_last_reply_at",
        "_loop",
        "_master",
        "_pending",
        "_port",
        "_slave",
        "auto_shut_after_s",
        "bank",
        "baud",
        "on_change",
        "reply_delay_s",
    )

    def __init__(
        self,
        boards: Iterable[int],
        *,
        locked_bit: int = 1,
        has_items: bool = True,
        seed: int | None = None,
        variant: BoardVariant | None = None,
    ) -> None:
        self.bank = KerongBank(
            boards, locked_bit=locked_bit, has_items=has_items, seed=seed, variant=variant
        )
        self.bank.on_change = self._bank_changed
        self.reply_delay_s = self.bank.variant.reply_delay_s
        self.auto_shut_after_s: float | None = None
        self.baud: int | None = None
        self.on_change: ChangeCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._auto_shut: dict[tuple[int, int], asyncio.TimerHandle] = {}
        self._frame_waiters: list[tuple[bytes, asyncio.Future[None]]] = []
        self._last_reply_at = 0.0  # loop time the latest scheduled reply goes out

    @classmethod
    def for_bus(
        cls,
        config: KerongBusConfig,
        *,
        variant: BoardVariant | None = None,
        has_items: bool = True,
        seed: int | None = None,
    ) -> KerongBoardEmulator:
        """The boards of the bus ``config`` describes, set to its speed and polarity."""
        emulator = cls(
            config.boards,
            locked_bit=config.locked_bit,
            has_items=has_items,
            seed=seed,
            variant=variant,
        )
        emulator.baud = config.baud
        return emulator

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Open the pty and answer on it. Idempotent."""
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
        log.info("kerong emulator started", port=self._port, boards=self.bank.boards)

    async def close(self) -> None:
        """Close the pty; pending replies and auto-shuts are dropped. Idempotent."""
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
        """Path of the pty slave, for the agent to open with pyserial. RuntimeError before start."""
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def boards(self) -> list[int]:
        """The board ids of this bank, ascending."""
        return self.bank.boards

    @property
    def echo(self) -> bool:
        """Whether every request comes back first (an echoing RS-485 adapter)."""
        return self.bank.echo

    @echo.setter
    def echo(self, on: bool) -> None:
        self.bank.echo = on

    @property
    def received(self) -> list[bytes]:
        """Every request frame received, in order (the bank's list, not a copy)."""
        return self.bank.received

    # -- people and the physical world: see KerongBank -----------------------

    def state(self, board: int, channel: int) -> ChannelState:
        """A copy of one channel's physical state (channel 1-16). ValueError if unknown."""
        return self.bank.state(board, channel)

    def feedback_closed(self, board: int, channel: int) -> bool:
        """Whether the channel's lock feedback means "closed" right now."""
        return self.bank.feedback_closed(board, channel)

    def open_door(self, board: int, channel: int) -> bool:
        """A person pulls the door; a latched door does not move. True if it opened."""
        return self.bank.open_door(board, channel)

    def force_open(self, board: int, channel: int) -> None:
        """The door is forced open, latch or not (a break-in, a bent door)."""
        self.bank.force_open(board, channel)

    def shut_door(self, board: int, channel: int) -> None:
        """A person pushes the door shut; the latch catches it."""
        self.bank.shut_door(board, channel)

    def set_item(self, board: int, channel: int, present: bool) -> None:
        """An item is put in (True) or taken out (False) of the compartment."""
        self.bank.set_item(board, channel, present)

    def jam(self, board: int, channel: int, on: bool = True) -> None:
        """A jammed lock: a pulse does not release the latch (LockJammed)."""
        self.bank.jam(board, channel, on)

    def set_offline(self, board: int, offline: bool = True) -> None:
        """An offline board ignores everything on the line (unpowered, cable cut)."""
        self.bank.set_offline(board, offline)

    def is_online(self, board: int) -> bool:
        """Whether ``board`` answers the line."""
        return self.bank.is_online(board)

    # -- faults on the line -------------------------------------------------

    def inject(self, data: bytes) -> None:
        """Put bytes on the line towards the agent now (noise, a stray board)."""
        self._write(data)

    # -- observation --------------------------------------------------------

    # The timeout parameter is the agreed test-helper signature.
    async def wait_for_frame(self, raw: bytes, timeout: float) -> None:
        """Return once ``raw`` has been received (earlier or later); TimeoutError if not."""
        if raw in self.bank.received:
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
        """Every board and channel with the fault knobs, JSON-able, for the web view."""
        return {
            "port": self._port,
            "reply_delay_s": self.reply_delay_s,
            "auto_shut_after_s": self.auto_shut_after_s,
            **self.bank.snapshot(),
        }

    # -- internals ----------------------------------------------------------

    def _bank_changed(self, board: int, channel: int) -> None:
        """A channel changed: (re)arm or cancel its auto-shut, then tell the observer."""
        key = (board, channel)
        delay_s, loop = self.auto_shut_after_s, self._loop
        if not self.bank.state(board, channel).door_open:
            handle = self._auto_shut.pop(key, None)
            if handle is not None:
                handle.cancel()
        elif key not in self._auto_shut and delay_s is not None and loop is not None:
            self._auto_shut[key] = loop.call_later(delay_s, self._auto_shut_now, board, channel)
        if self.on_change is not None:
            self.on_change(board, channel)  # the bank contains an observer's exception

    def _auto_shut_now(self, board: int, channel: int) -> None:
        self._auto_shut.pop((board, channel), None)
        log.info("simulated person shuts door", board=board, channel=channel)
        self.bank.shut_door(board, channel)

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
        if self.baud is not None and _line_baud(self._master) != self.baud:
            # The boards hear noise at the wrong speed: no answer; the adapter's echo
            # is local, at the host's speed.
            if self.bank.echo:
                self._write(data)
            return
        seen = len(self.bank.received)
        out = self.bank.feed(data)
        if self.bank.echo:
            # The adapter's echo is local and immediate; only the boards take reply_delay_s.
            self._write(out[: len(data)])
            out = out[len(data) :]
        for raw in self.bank.received[seen:]:
            for wanted, fut in self._frame_waiters:
                if wanted == raw and not fut.done():
                    fut.set_result(None)
        if out:
            self._reply(out)
        for after_s, board, addr in self.bank.take_later():
            self._answer_once_moved(after_s, board, addr)

    def _answer_once_moved(self, after_s: float, board: int, addr: int) -> None:
        """In ``after_s`` the lock has moved: the board answers its unlock (ADDR ``addr``)
        with its status then, through the reply delay."""
        loop = self._loop
        if loop is None:
            return
        handle: asyncio.TimerHandle

        def moved() -> None:
            self._pending.discard(handle)
            self._reply(self.bank.status_reply(board, addr))

        handle = loop.call_later(after_s, moved)
        self._pending.add(handle)

    def _reply(self, data: bytes) -> None:
        loop = self._loop
        if loop is None:
            self._write(data)
            return
        # Never before an earlier reply still waiting: one wire, one order (strictly
        # later: timers due at the same instant run in no promised order).
        now = loop.time()
        at = now + self.reply_delay_s
        if self._pending:
            at = max(at, self._last_reply_at + 1e-6)
        if at <= now:
            self._write(data)
            return
        self._last_reply_at = at
        handle: asyncio.TimerHandle

        def send() -> None:
            self._pending.discard(handle)
            self._write(data)

        handle = loop.call_at(at, send)
        self._pending.add(handle)

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


_SPEEDS = {
    getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
}


def _line_baud(master: int) -> int | None:
    """The speed the host set on the pty's slave side, bit/s (the master reads it)."""
    try:
        return _SPEEDS.get(termios.tcgetattr(master)[5])
    except termios.error:
        return None
