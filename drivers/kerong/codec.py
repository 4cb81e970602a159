"""Kerong KR-CU16 frames: encoding, decoding and a resynchronising frame parser.

Pure functions and one small class; no I/O. See ``shared/protocols/kerong-cu16.md``.
Every frame is ``STX ADDR CMD ... ETX SUM`` where SUM is the low byte of the sum of
every byte before it.
"""

from __future__ import annotations

from dataclasses import dataclass

STX = 0x02
ETX = 0x03

CMD_STATUS = 0x30
CMD_UNLOCK = 0x31
CMD_BUS_STATUS = 0x32
CMD_UNLOCK_ALL = 0x33
REPLY_STATUS = 0x35
REPLY_BUS_STATUS = 0x36

BUS_ADDR = 0xF0
CHANNELS = 16
MAX_BOARD = 15

# Total frame length by command byte; anything else is not a frame.
FRAME_LENGTH = {
    CMD_STATUS: 5,
    CMD_UNLOCK: 5,
    CMD_BUS_STATUS: 5,
    CMD_UNLOCK_ALL: 5,
    REPLY_STATUS: 9,
    REPLY_BUS_STATUS: 9,
}
MAX_BUFFER = 1024


class CodecError(ValueError):
    """A frame or an argument that the protocol cannot express."""


def checksum(data: bytes | bytearray) -> int:
    """SUM: the low byte of the sum of ``data`` (0-255)."""
    return sum(data) & 0xFF


def _check_board(board: int) -> None:
    if not 0 <= board <= MAX_BOARD:
        raise CodecError(f"board {board} out of range 0-{MAX_BOARD}")


def _check_channel(channel: int) -> None:
    if not 1 <= channel <= CHANNELS:
        raise CodecError(f"channel {channel} out of range 1-{CHANNELS}")


def encode(addr: int, cmd: int, data: bytes = b"") -> bytes:
    """One frame, ``STX ADDR CMD data ETX SUM``, from its address and command bytes."""
    body = bytes((STX, addr, cmd)) + data + bytes((ETX,))
    return body + bytes((checksum(body),))


def status_request(board: int) -> bytes:
    """The 5-byte status request for ``board`` (0 to ``MAX_BOARD``); raises CodecError."""
    _check_board(board)
    return encode(board << 4, CMD_STATUS)


def unlock_request(board: int, channel: int) -> bytes:
    """The 5-byte unlock of one lock: ``board`` 0 to ``MAX_BOARD``, ``channel`` 1 to
    ``CHANNELS``. Raises CodecError (a ValueError) outside those."""
    _check_board(board)
    _check_channel(channel)
    return encode((board << 4) | (channel - 1), CMD_UNLOCK)


def unlock_all_request(board: int) -> bytes:
    """The 5-byte unlock of every lock of ``board`` (0 to ``MAX_BOARD``); raises CodecError."""
    _check_board(board)
    return encode(board << 4, CMD_UNLOCK_ALL)


def wire_cycle_s(boards: int, baud: int) -> float:
    """Seconds one status read of each of ``boards`` boards takes on the wire at ``baud``
    bit/s: a 5-byte request and a 9-byte reply each, 10 bits a byte (8N1), so 7.3 ms a
    board at 19200 (``shared/protocols/kerong-cu16.md``). A poll loop cannot go round
    faster on a real line, and no reply can come sooner than one read's worth."""
    read_bytes = FRAME_LENGTH[CMD_STATUS] + FRAME_LENGTH[REPLY_STATUS]
    return boards * read_bytes * 10 / baud


def bus_status_request() -> bytes:
    """The 5-byte status request to the bus address (every board: for a bus scan)."""
    return encode(BUS_ADDR, CMD_BUS_STATUS)


def _bits(low: int, high: int) -> tuple[bool, ...]:
    word = low | (high << 8)
    return tuple(bool(word >> i & 1) for i in range(CHANNELS))


def _byte_pair(bits: tuple[bool, ...]) -> bytes:
    word = sum(1 << i for i, bit in enumerate(bits) if bit)
    return bytes((word & 0xFF, word >> 8))


@dataclass(frozen=True, slots=True)
class Frame:
    """One valid frame: its address and command bytes, the data between them, and the
    ``raw`` bytes as received (STX to SUM)."""

    addr: int
    cmd: int
    data: bytes
    raw: bytes

    @property
    def board(self) -> int:
        """The board address: the high nibble of ADDR (0-15)."""
        return self.addr >> 4

    @property
    def channel(self) -> int:
        """The lock channel of an unlock: the low nibble of ADDR plus one (1-16)."""
        return (self.addr & 0x0F) + 1


@dataclass(frozen=True, slots=True)
class StatusReply:
    """A board's status as sent on the wire: raw lock bits and item sensor bits.

    ``lock_bits[i]`` is the raw bit of channel ``i + 1``; what it means (closed or
    open) depends on the board model, so the bus applies the polarity setting.
    """

    board: int
    lock_bits: tuple[bool, ...]
    items: tuple[bool, ...]


def status_reply(board: int, lock_bits: tuple[bool, ...], items: tuple[bool, ...]) -> bytes:
    """Encode a status reply (what a board sends; used by the emulator)."""
    _check_board(board)
    if len(lock_bits) != CHANNELS or len(items) != CHANNELS:
        raise CodecError("a status reply carries exactly 16 lock and 16 item bits")
    return encode(board << 4, REPLY_STATUS, _byte_pair(lock_bits) + _byte_pair(items))


def decode_status(frame: Frame) -> StatusReply:
    """A status (or bus status) reply as 16 lock bits and 16 item bits; raises
    CodecError for a frame of another command."""
    if frame.cmd not in (REPLY_STATUS, REPLY_BUS_STATUS):
        raise CodecError(f"not a status reply: command 0x{frame.cmd:02X}")
    l1, l2, s1, s2 = frame.data
    return StatusReply(frame.board, _bits(l1, l2), _bits(s1, s2))


class FrameParser:
    """Extracts frames from a byte stream.

    Too few bytes: wait for more. Anything that is not a valid frame at the
    buffer's head (wrong start byte, unknown command, missing ETX, bad SUM):
    drop one byte and search for the next STX. The buffer is capped so a
    babbling line cannot grow memory.
    """

    def __init__(self, max_buffer: int = MAX_BUFFER) -> None:
        self._buf = bytearray()
        self._max = max_buffer
        self.dropped = 0  # bytes discarded while resynchronising

    def feed(self, data: bytes) -> list[Frame]:
        """Take more bytes; the complete valid frames found, in order (never raises)."""
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while buf:
            if buf[0] != STX:
                start = buf.find(STX)
                skip = len(buf) if start < 0 else start
                del buf[:skip]
                self.dropped += skip
                continue
            if len(buf) < 3:
                break
            length = FRAME_LENGTH.get(buf[2])
            if length is None:
                self._drop_one()
                continue
            if len(buf) < length:
                break
            if buf[length - 2] != ETX or checksum(buf[: length - 1]) != buf[length - 1]:
                self._drop_one()
                continue
            raw = bytes(buf[:length])
            del buf[:length]
            frames.append(Frame(raw[1], raw[2], raw[3 : length - 2], raw))
        if len(buf) > self._max:
            excess = len(buf) - self._max
            del buf[:excess]
            self.dropped += excess
        return frames

    def _drop_one(self) -> None:
        del self._buf[:1]
        self.dropped += 1

    def reset(self) -> None:
        """Forget the bytes kept (a new connection)."""
        self._buf.clear()
