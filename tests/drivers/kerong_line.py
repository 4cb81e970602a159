"""A faulty line to a Kerong board bank, for the driver's tests (bellows' FakeTransport
habits): bytes split, dropped, delayed and duplicated on their way back to the host."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from drivers.kerong.bus import BoardStatus, BusTuning
from simulator.kerong_core import KerongBank


@dataclass(frozen=True)
class Faults:
    """What the line does to the bytes coming back, each per chunk of bytes: ``split``
    (delivered in pieces of 1 to ``split`` bytes, one per loop turn; 0: whole), ``drop``
    (probability a piece is lost), ``duplicate`` (probability a piece comes twice: a
    stutter shorter than a frame, never a whole reply, which would be a twin's) and
    ``jitter_s`` (a random delay added to each reply, order kept)."""

    split: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    jitter_s: float = 0.0


CLEAN = Faults()
FAULTY = Faults(split=4, drop=0.03, duplicate=0.03, jitter_s=0.004)


class FaultyLine(asyncio.Transport):
    """The host's end of a line to ``bank``: replies (and unlock answers sent once a
    lock has moved) come back after the variant's ``reply_delay_s`` through ``faults``,
    in the order the boards sent them, as on one wire."""

    def __init__(
        self, bank: KerongBank, protocol: asyncio.Protocol, faults: Faults, seed: int
    ) -> None:
        super().__init__()
        self.bank = bank
        self.protocol = protocol
        self.faults = faults
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.written: list[bytes] = []
        self.written_at: list[float] = []  # loop time of each write
        self.stats: Counter[str] = Counter()
        self.closing = False
        self._last_at = 0.0
        self._queue: deque[bytes] = deque()
        self._pumping = False
        self._timers: set[asyncio.TimerHandle] = set()

    # -- transport API
    def write(self, data) -> None:
        if self.closing:
            return
        data = bytes(data)
        self.written.append(data)
        self.written_at.append(self.loop.time())
        out = self.bank.feed(data)
        if out:
            self._send(out, self.bank.variant.reply_delay_s)
        for after_s, board, addr in self.bank.take_later():
            self._later(after_s, lambda b=board, a=addr: self.bank.status_reply(b, a))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closing:
            self.closing = True
            for timer in self._timers:
                timer.cancel()
            self.loop.call_soon(self.protocol.connection_lost, None)

    # -- test controls
    def inject(self, data: bytes) -> None:
        """Bytes from elsewhere on the line (a stray frame), now."""
        self._queue.append(data)
        self._pump_soon()

    # -- internals
    def _later(self, after_s: float, make) -> None:
        def due() -> None:
            self._timers.discard(timer)
            self._send(make(), self.bank.variant.reply_delay_s)

        timer = self.loop.call_later(after_s, due)
        self._timers.add(timer)

    def _send(self, out: bytes, delay_s: float) -> None:
        faults = self.faults
        at = self.loop.time() + delay_s + self.rng.uniform(0, faults.jitter_s)
        at = self._last_at = max(at, self._last_at)  # one wire: never overtakes

        def due() -> None:
            self._timers.discard(timer)
            self._queue.extend(self._mangle(out))
            self._pump_soon()

        timer = self.loop.call_at(at, due)
        self._timers.add(timer)

    def _mangle(self, out: bytes) -> list[bytes]:
        faults, rng = self.faults, self.rng
        pieces: list[bytes] = []
        i = 0
        while i < len(out):
            size = rng.randint(1, faults.split) if faults.split else len(out)
            piece = out[i : i + size]
            i += size
            if faults.drop and rng.random() < faults.drop:
                self.stats["dropped"] += 1
                continue
            pieces.append(piece)
            if faults.duplicate and rng.random() < faults.duplicate and len(piece) < 9:
                self.stats["duplicated"] += 1
                pieces.append(piece)
        return pieces

    def _pump_soon(self) -> None:
        if not self._pumping:
            self._pumping = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        # One piece per loop turn, in order, so other tasks run in between.
        if self._queue and not self.closing:
            self.protocol.data_received(self._queue.popleft())
        if self._queue and not self.closing:
            self.loop.call_soon(self._pump)
        else:
            self._pumping = False


class LinePort:
    """An injectable ``connect`` opening FaultyLines to ``bank``."""

    def __init__(self, bank: KerongBank, faults: Faults = CLEAN, seed: int = 7) -> None:
        self.bank = bank
        self.faults = faults
        self.seed = seed
        self.lines: list[FaultyLine] = []

    async def __call__(self, factory):
        await asyncio.sleep(0)
        protocol = factory()
        line = FaultyLine(self.bank, protocol, self.faults, self.seed + len(self.lines))
        protocol.connection_made(line)
        self.lines.append(line)
        return line, protocol

    @property
    def line(self) -> FaultyLine:
        return self.lines[-1]


WAIT = 10.0  # only bounds how long a broken test hangs
# Quick to retry a silent board and to reopen: a test waits on behaviour, not back-off.
TUNING = BusTuning(offline_poll_interval_s=0.05, reconnect_min_s=0.001, reconnect_max_s=0.01)


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Return once ``predicate()`` holds; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


class Seen:
    """A bus's ``on_status`` and ``on_health``: every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, BoardStatus | None]] = []
        self.health: list[tuple[int, bool]] = []

    def __call__(self, board: int, status: BoardStatus | None) -> None:
        self.calls.append((board, status))

    def on_health(self, board: int, online: bool) -> None:
        self.health.append((board, online))

    def last(self, board: int) -> BoardStatus | None:
        return next((s for b, s in reversed(self.calls) if b == board), None)

    def closed(self, board: int, channel: int) -> bool | None:
        status = self.last(board)
        return None if status is None else status.closed[channel - 1]
