"""A bank of Kerong KR-CU16 lock boards as bytes in, bytes out.

:meth:`KerongBank.feed` takes the bytes the host wrote on the RS-485 line and
returns the bytes that come back: the boards' replies, and whatever the line
adds on its own (an adapter's echo, noise, a flipped bit). No asyncio, no file
descriptor, no clock: the pty emulator (:mod:`simulator.kerong_board`) and the
driver tests' fake transports both wrap this one core, so there is a single
idea of what a board answers.

Behind each channel sits a small physical model (door, latch, item, jam) that
simulated people act on; a board's status reply is read off that model.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from typing import Any

import structlog
from pydantic import TypeAdapter

from drivers.kerong import codec
from drivers.kerong.config import Boards, KerongBusConfig, LockedBit
from simulator.kerong_model import VARIANTS, BoardVariant, ChannelState

__all__ = ["VARIANTS", "BoardVariant", "ChangeCallback", "ChannelState", "KerongBank"]

log = structlog.get_logger(__name__)

REQUEST_COMMANDS = frozenset(
    (codec.CMD_STATUS, codec.CMD_UNLOCK, codec.CMD_BUS_STATUS, codec.CMD_UNLOCK_ALL)
)
MAX_GARBAGE = 12  # the most noise bytes one garbage burst puts on the line

ChangeCallback = Callable[[int, int], None]
PulseCallback = Callable[[int, int], None]

_BOARDS: TypeAdapter[list[int]] = TypeAdapter(Boards)
_LOCKED_BIT: TypeAdapter[int] = TypeAdapter(LockedBit)


class KerongBank:
    """Boards ``boards`` (ids 0-15) on one line, answering KR-CU16 request frames.

    ``locked_bit`` is the raw lock bit a closed channel reports (1 on most boards,
    0 on the inverted models); ``has_items=False`` plays boards without infrared
    sensors (every item bit 0). ``seed`` seeds :attr:`rng`, which decides the
    random line faults. The boards and ``locked_bit`` are checked by the driver's config
    types (``drivers.kerong.config``), the one place their bounds are written: a
    ``pydantic.ValidationError`` (a ValueError) for a board out of range or listed
    twice, or a ``locked_bit`` other than 0 or 1. ``variant`` (:class:`BoardVariant`)
    is how the boards answer unlocks; an answer sent once the lock has moved waits
    in :attr:`later` until its wrapper, which has a clock, sends it.

    Fault knobs, changeable at any time:

    - :attr:`offline`: boards that ignore everything on the line (unpowered,
      cable cut); a mutable set, also set through :meth:`set_offline`;
    - :attr:`echo`: the request comes back first, as some USB RS-485 adapters do;
    - :attr:`garbage`: probability (0.0-1.0), per :meth:`feed`, that a burst of
      1-12 random bytes and a stray STX goes out before the replies;
    - :attr:`corrupt`: probability (0.0-1.0), per :meth:`feed` with a reply, that
      one bit of the replies is flipped;
    - :attr:`twins`: boards with a second board set to the same address (left on the
      factory address): every reply of theirs comes twice.
    - :attr:`drop`: probability (0.0-1.0), per :meth:`feed` with a reply, that the
      replies are lost on the line (the boards did act: a pulse still pulses);
    - :attr:`flapping`: boards that answer some requests and miss others, set
      through :meth:`set_flapping` (a loose connector, a failing supply);
    - :attr:`no_bus_status`: boards that ignore the bus-wide status (0x32) and answer
      their own reads, as some firmwares do (a bus where only some boards answer it).

    Observation: :attr:`received` (every request frame, in order),
    :attr:`unlocked` (every pulse a board acted on, ``(board, channel)``, channel
    0 for unlock-all), :attr:`status_reads` (0x30
    requests each board answered), :attr:`faults` (how many ``"garbage"`` bursts,
    ``"corrupted"`` and ``"dropped"`` replies went out and how many requests a
    flapping board ``"missed"``), ``on_change(board, channel)``, called after
    any change of a channel's physical state, and ``on_pulse(board, channel)``,
    called for each pulse a board acts on, before the latch moves.
    """

    # Slots: a misspelt or renamed knob (``dead``, ``reply_delay``) is an
    # AttributeError, not a silently ignored new attribute.
    __slots__ = (
        "_channels",
        "_flap_seen",
        "_parser",
        "corrupt",
        "drop",
        "echo",
        "faults",
        "flapping",
        "garbage",
        "has_items",
        "later",
        "locked_bit",
        "no_bus_status",
        "offline",
        "on_change",
        "on_pulse",
        "received",
        "rng",
        "status_reads",
        "twins",
        "unlocked",
        "variant",
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
        ids = sorted(_BOARDS.validate_python(list(boards)))
        locked_bit = _LOCKED_BIT.validate_python(locked_bit)
        self.variant = variant or BoardVariant()
        # Unlock answers sent once the lock has moved: (seconds from now, board, ADDR).
        self.later: list[tuple[float, int, int]] = []
        self._channels = {b: [ChannelState() for _ in range(codec.CHANNELS)] for b in ids}
        self.locked_bit = locked_bit
        self.has_items = has_items
        self.offline: set[int] = set()
        self.no_bus_status: set[int] = set()
        self.echo = False
        self.garbage = 0.0
        self.corrupt = 0.0
        self.twins: set[int] = set()
        self.drop = 0.0
        # board -> (requests answered, requests missed), repeating; see set_flapping.
        self.flapping: dict[int, tuple[int, int]] = {}
        self._flap_seen: Counter[int] = Counter()
        self.rng = random.Random(seed)
        self.received: list[bytes] = []
        self.unlocked: list[tuple[int, int]] = []
        self.status_reads: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.on_change: ChangeCallback | None = None
        self.on_pulse: PulseCallback | None = None
        self._parser = codec.FrameParser()

    @classmethod
    def for_bus(
        cls,
        config: KerongBusConfig,
        *,
        variant: BoardVariant | None = None,
        has_items: bool = True,
        seed: int | None = None,
    ) -> KerongBank:
        """The boards of the bus ``config`` describes (its boards and lock polarity)."""
        return cls(
            config.boards,
            locked_bit=config.locked_bit,
            has_items=has_items,
            seed=seed,
            variant=variant,
        )

    @property
    def boards(self) -> list[int]:
        """The board ids of this bank, ascending."""
        return list(self._channels)

    # -- the line -----------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Bytes the host wrote in; the bytes the line carries back out.

        A frame may arrive split over several calls; bytes that are not a valid
        request (noise, a wrong SUM) are dropped and the parser resynchronises
        on the next STX. Out comes, in order: the echo (if :attr:`echo`), a
        garbage burst (see :attr:`garbage`), then every reply of the requests
        completed by ``data`` (``b""`` when nobody answers, or when the line
        lost them: see :attr:`drop`).
        """
        out = bytearray(data if self.echo else b"")
        if self.garbage and self.rng.random() < self.garbage:
            noise = self.rng.randbytes(self.rng.randint(1, MAX_GARBAGE))
            out += noise + bytes((codec.STX,))
            self.faults["garbage"] += 1
        dropped = self._parser.dropped
        reply = b"".join(self._answer(frame) for frame in self._parser.feed(data))
        if self._parser.dropped != dropped:
            log.debug("kerong bank dropped garbage", count=self._parser.dropped - dropped)
        if reply and self.drop and self.rng.random() < self.drop:
            reply = b""
            self.faults["dropped"] += 1
        if reply and self.corrupt and self.rng.random() < self.corrupt:
            i = self.rng.randrange(len(reply))
            bit = 1 << self.rng.randrange(8)
            reply = reply[:i] + bytes((reply[i] ^ bit,)) + reply[i + 1 :]
            self.faults["corrupted"] += 1
        return bytes(out + reply)

    def lock_bits(self, board: int) -> tuple[bool, ...]:
        """The 16 raw lock bits ``board`` reports now (polarity applied), channel 1 first."""
        channels = self._board(board)
        return tuple(ch.closed == bool(self.locked_bit) for ch in channels)

    def item_bits(self, board: int) -> tuple[bool, ...]:
        """The 16 item sensor bits ``board`` reports now (all False without sensors)."""
        return tuple(ch.item and self.has_items for ch in self._board(board))

    def status_reply(self, board: int, addr: int | None = None) -> bytes:
        """The 9-byte 0x35 frame ``board`` would answer to a status request now (with
        ``addr`` for ADDR when given: an unlock's answer in the unlock frame's form)."""
        frame = codec.status_reply(board, self.lock_bits(board), self.item_bits(board))
        return frame if addr is None else codec.encode(addr, codec.REPLY_STATUS, frame[3:7])

    def take_later(self) -> list[tuple[float, int, int]]:
        """The unlock answers due once a lock has moved, ``(seconds from now, board,
        ADDR)``, taken off :attr:`later`: send ``status_reply(board, addr)`` then."""
        later, self.later = self.later, []
        return later

    # -- people and the physical world --------------------------------------

    def state(self, board: int, channel: int) -> ChannelState:
        """A copy of one channel's physical state (channel 1-16). ValueError if unknown."""
        return replace(self._channel(board, channel))

    def feedback_closed(self, board: int, channel: int) -> bool:
        """Whether the channel's lock feedback means "closed" right now."""
        return self._channel(board, channel).closed

    def open_door(self, board: int, channel: int) -> bool:
        """A person pulls the door; a latched door does not move. True if it opened."""
        if self._channel(board, channel).latched:
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
        """An item is put in (True) or taken out (False) of the compartment."""
        self._set(board, channel, item=present)

    def jam(self, board: int, channel: int, on: bool = True) -> None:
        """A jammed lock: a pulse does not release the latch (LockJammed)."""
        self._set(board, channel, jammed=on)

    def set_offline(self, board: int, offline: bool = True) -> None:
        """An offline board ignores everything on the line. ValueError if not in the bank."""
        self._board(board)
        if offline:
            self.offline.add(board)
        else:
            self.offline.discard(board)
        log.info("kerong board online changed", board=board, online=not offline)

    def set_flapping(self, board: int, answer: int | None = 2, miss: int = 2) -> None:
        """``board`` answers ``answer`` requests addressed to it, then misses ``miss``
        (ignores them as an offline board would: no reply, no pulse), and so on;
        ``answer=None`` makes it steady again. ValueError if not in the bank or for
        counts below 1."""
        self._board(board)
        self._flap_seen.pop(board, None)
        if answer is None:
            self.flapping.pop(board, None)
        elif answer < 1 or miss < 1:
            raise ValueError("a flapping board answers and misses at least 1 request each")
        else:
            self.flapping[board] = (answer, miss)
        log.info("kerong board flapping changed", board=board, flapping=self.flapping.get(board))

    def is_online(self, board: int) -> bool:
        """Whether ``board`` answers the line. ValueError if not in the bank."""
        self._board(board)
        return board not in self.offline

    def snapshot(self) -> dict[str, Any]:
        """Every board and channel with the fault knobs, JSON-able, for a web view."""
        return {
            "locked_bit": self.locked_bit,
            "has_items": self.has_items,
            "echo": self.echo,
            "garbage": self.garbage,
            "corrupt": self.corrupt,
            "drop": self.drop,
            "boards": [
                {
                    "board": board,
                    "online": board not in self.offline,
                    "flapping": list(self.flapping[board]) if board in self.flapping else None,
                    "channels": [
                        {"channel": i + 1, "closed": ch.closed, **asdict(ch)}
                        for i, ch in enumerate(channels)
                    ],
                }
                for board, channels in self._channels.items()
            ],
        }

    # -- internals ----------------------------------------------------------

    def _board(self, board: int) -> list[ChannelState]:
        try:
            return self._channels[board]
        except KeyError:
            raise ValueError(f"board {board} is not in this bank") from None

    def _channel(self, board: int, channel: int) -> ChannelState:
        if not 1 <= channel <= codec.CHANNELS:
            raise ValueError(f"channel {channel} out of range 1-{codec.CHANNELS}")
        return self._board(board)[channel - 1]

    def _set(self, board: int, channel: int, **changes: bool) -> None:
        ch = self._channel(board, channel)
        before = replace(ch)
        for name, value in changes.items():
            setattr(ch, name, value)
        if ch == before:
            return
        log.debug("kerong channel changed", board=board, channel=channel, **asdict(ch))
        self._tell(self.on_change, board, channel)

    def _unlock(self, board: int, channel: int) -> None:
        # The pulse releases the latch and the door's spring pushes it open,
        # unless the lock is jammed: then nothing moves.
        if not self._channel(board, channel).jammed:
            self._set(board, channel, latched=False, door_open=True)

    def _misses(self, board: int) -> bool:
        """Whether a flapping board misses this request addressed to it."""
        cycle = self.flapping.get(board)
        if cycle is None:
            return False
        answer, miss = cycle
        seen = self._flap_seen[board]
        self._flap_seen[board] = seen + 1
        return seen % (answer + miss) >= answer

    @staticmethod
    def _tell(observer: ChangeCallback | None, board: int, channel: int) -> None:
        if observer is not None:
            try:
                observer(board, channel)
            except Exception:
                # An observer's bug must not take the boards down.
                log.exception("kerong bank observer failed", board=board, channel=channel)

    def _answer(self, frame: codec.Frame) -> bytes:
        """What the bank sends back for one well-formed frame (often nothing)."""
        if frame.cmd not in REQUEST_COMMANDS:
            log.debug("kerong bank ignored non-request frame", raw=frame.raw.hex(" "))
            return b""
        self.received.append(frame.raw)
        if frame.cmd == codec.CMD_BUS_STATUS:
            if frame.addr != codec.BUS_ADDR:
                return b""
            return b"".join(
                codec.encode(board << 4, codec.REPLY_BUS_STATUS, self.status_reply(board)[3:7])
                for board in self._channels
                if board not in self.offline and board not in self.no_bus_status
            )
        board = frame.board
        if board not in self._channels or board in self.offline:
            return b""  # nobody with that address on the bus: silence
        if self._misses(board):
            self.faults["missed"] += 1
            return b""
        if frame.cmd == codec.CMD_STATUS:
            self.status_reads[board] += 1
            return self.status_reply(board) * (2 if board in self.twins else 1)
        if frame.cmd == codec.CMD_UNLOCK:
            log.info("kerong unlock pulse", board=board, channel=frame.channel)
            self.unlocked.append((board, frame.channel))
            answer = b""
            variant = self.variant
            if variant.unlock_reply != "none":
                addr = board << 4 if variant.unlock_reply == "board" else frame.addr
                if variant.unlock_reply_after_s > 0:
                    self.later.append((variant.unlock_reply_after_s, board, addr))
                else:
                    answer = self.status_reply(board, addr)  # before the lock moves
            self._tell(self.on_pulse, board, frame.channel)
            self._unlock(board, frame.channel)
            return answer
        elif frame.cmd == codec.CMD_UNLOCK_ALL:
            log.info("kerong unlock-all pulse", board=board)
            self.unlocked.append((board, 0))
            self._tell(self.on_pulse, board, 0)
            for channel in range(1, codec.CHANNELS + 1):
                self._unlock(board, channel)
        return b""
