"""Bytes from a serial reader to codes: one a line, ended by CR, LF or both.

Pure. A line longer than ``max_line`` characters is dropped whole, up to its end
(the bytes kept meanwhile are bounded by ``max_line``); a line that is not UTF-8 or
holds control characters is dropped as garbled; an empty line (the LF of a CRLF)
is nothing. Leading and trailing spaces are trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LINE = 128  # characters: an open_code is 48


@dataclass(slots=True)
class LineReader:
    """Feed it bytes, get whole codes; ``dropped`` counts lines thrown away, by why."""

    max_line: int = MAX_LINE
    dropped: dict[str, int] = field(default_factory=lambda: {"too_long": 0, "garbled": 0})
    _buffer: bytearray = field(default_factory=bytearray)
    _overflow: bool = False

    def feed(self, data: bytes) -> list[str]:
        """The codes completed by ``data``, in order."""
        out: list[str] = []
        for byte in data:
            if byte in (0x0A, 0x0D):
                self._end(out)
            elif self._overflow:
                continue
            elif len(self._buffer) >= 4 * self.max_line:  # UTF-8: 4 bytes a character at most
                self._overflow = True
                self._buffer.clear()
            else:
                self._buffer.append(byte)
        return out

    def reset(self) -> None:
        """Forget a partial line (the port was reopened)."""
        self._buffer.clear()
        self._overflow = False

    def _end(self, out: list[str]) -> None:
        raw, overflow = bytes(self._buffer), self._overflow
        self.reset()
        if overflow:
            self.dropped["too_long"] += 1
            return
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.dropped["garbled"] += 1
            return
        if not text:
            return
        if len(text) > self.max_line:
            self.dropped["too_long"] += 1
        elif any(ord(c) < 32 or ord(c) == 127 for c in text):
            self.dropped["garbled"] += 1
        else:
            out.append(text)
