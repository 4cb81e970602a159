"""Request heads checked before aiohttp parses them, and answers written by hand.

``HeadScanner`` follows one connection's bytes: every head line must be
well-formed HTTP/1.1 (an origin-form target of URI characters, token header
names, visible values, CRLF endings, bounded sizes), a body is sized by
``Content-Length`` (no chunked bodies) and sent as is (no ``Content-Encoding``).
A line that fails raises ``HeadError`` before any byte of it reaches aiohttp, so
aiohttp can neither log nor echo a raw line that may carry the token.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

MAX_LINE = 8190  # bytes in the request line or one header line (aiohttp's own limit)
MAX_HEADERS = 100  # header lines in one head

_TCHAR = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
# Methods llhttp (aiohttp's parser) takes, but CONNECT: its target is no path. Any
# other method would make aiohttp answer with the raw request line.
_METHODS = (
    b"GET HEAD POST PUT DELETE OPTIONS TRACE PATCH QUERY COPY LOCK MKCOL MOVE PROPFIND "
    b"PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PURGE MKCALENDAR LINK UNLINK SOURCE"
).split()
_REQUEST_LINE = re.compile(
    rb"(" + _TCHAR + rb"+) /[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]* HTTP/1\.[01]\r\n"
)
_HEADER_LINE = re.compile(rb"(" + _TCHAR + rb"+):[\t\x20-\x7e\x80-\xff]*\r\n")


# Headers a request may give once: a second would be answered by aiohttp in plain
# text, or leave which credential counts to chance.
_ONCE = frozenset({b"content-type", b"authorization", b"origin", b"idempotency-key"})


class HeadError(Exception):
    """A request head the agent refuses before aiohttp parses it."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response that closes the connection: ``body`` as JSON."""
    payload = json.dumps(body).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class HeadScanner:
    """Follows one connection's byte stream: head lines (checked), then the body of
    the size the head declared, then the next head."""

    def __init__(self) -> None:
        self.in_body = False
        self._partial = bytearray()  # an incomplete head line, held back
        self._lines = 0  # lines of the current head so far
        self._length: int | None = None
        self._hosts = 0
        self._once: set[bytes] = set()  # headers of _ONCE seen in this head
        self._http11 = True
        self._remaining = 0  # body bytes still to come

    def feed(self, data: bytes) -> tuple[bytes, int, bool]:
        """(the bytes to pass on, heads completed, whether a body ended). Raises
        ``HeadError`` at the first line that fails; nothing of that line passes."""
        out = bytearray()
        heads = 0
        body_ended = False
        pos = 0
        while pos < len(data):
            if self.in_body:
                take = min(self._remaining, len(data) - pos)
                out += data[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self.in_body = False
                    body_ended = True
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                self._partial += data[pos:]
                if len(self._partial) > MAX_LINE:
                    raise HeadError(400, "INVALID_REQUEST", f"a head line over {MAX_LINE} bytes")
                break
            line = bytes(self._partial) + data[pos : end + 1]
            self._partial.clear()
            pos = end + 1
            if len(line) > MAX_LINE:
                raise HeadError(400, "INVALID_REQUEST", f"a head line over {MAX_LINE} bytes")
            if self._line(line):
                out += line
                heads += 1
                if self._remaining:
                    self.in_body = True
            elif self._lines or line != b"\r\n":  # a stray CRLF before a head is skipped
                out += line
        return bytes(out), heads, body_ended

    def _line(self, line: bytes) -> bool:
        """Check one complete line; True when it ends a head."""
        if self._lines == 0:
            if line == b"\r\n":
                return False
            match = _REQUEST_LINE.fullmatch(line)
            if match is None:
                raise HeadError(400, "INVALID_REQUEST", "malformed request line")
            if match.group(1) not in _METHODS:
                raise HeadError(501, "NOT_IMPLEMENTED", "unknown method")
            self._lines = 1
            self._http11 = line.endswith(b"1.1\r\n")
            return False
        if line == b"\r\n":
            if self._http11 and not self._hosts:
                raise HeadError(400, "INVALID_REQUEST", "a request names exactly one Host")
            self._remaining = self._length or 0
            self._lines, self._length, self._hosts = 0, None, 0
            self._once.clear()
            return True
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise HeadError(400, "INVALID_REQUEST", f"malformed header line {self._lines}")
        self._lines += 1
        if self._lines > MAX_HEADERS + 1:
            raise HeadError(400, "INVALID_REQUEST", f"more than {MAX_HEADERS} header lines")
        name = match.group(1).lower()
        if name == b"content-length":
            value = line.split(b":", 1)[1].strip()
            if self._length is not None or not value.isdigit() or len(value) > 12:
                raise HeadError(400, "INVALID_REQUEST", "bad or repeated Content-Length")
            self._length = int(value)
        elif name == b"transfer-encoding":
            raise HeadError(411, "LENGTH_REQUIRED", "send the body with a Content-Length")
        elif name == b"content-encoding" and line.split(b":", 1)[1].strip().lower() != b"identity":
            # A body is 16 KiB of JSON: nothing to compress, no bomb to inflate.
            raise HeadError(415, "UNSUPPORTED_MEDIA_TYPE", "send the body without Content-Encoding")
        elif name == b"expect" and line.split(b":", 1)[1].strip().lower() != b"100-continue":
            # aiohttp would answer 417 itself, past the handler that counts answers.
            raise HeadError(417, "EXPECTATION_FAILED", "only Expect: 100-continue is served")
        elif name == b"host":
            self._hosts += 1
            if self._hosts > 1:
                raise HeadError(400, "INVALID_REQUEST", "a request names exactly one Host")
        elif name in _ONCE:  # two of them: which one counts is ambiguous, so neither
            if name in self._once:
                raise HeadError(400, "INVALID_REQUEST", f"{name.decode()} given twice")
            self._once.add(name)
        return False
