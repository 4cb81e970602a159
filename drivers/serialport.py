"""The lean serial transport: the port's fd on the loop, os.read when readable, nothing else.

pyserial only opens and configures the port (baud, 8N1, raw, ``exclusive``); reads
and writes go straight to the file descriptor. pyserial-asyncio's transport reads
through ``Serial.read()``, which calls ``select`` before every read, and opens the
port in a thread pool: at the wire's pace that was most of a poll's CPU
(docs/benchmarks.md, issue 19). A ``socket://`` gateway gets asyncio's own socket
transport, which is as lean.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from collections.abc import Callable
from typing import Any

# One read takes what the kernel holds, up to this: a status reply is 9 bytes, a
# bus-wide sweep of 16 boards 144.
_READ_SIZE = 4096


class PortClosed(ConnectionError):
    """The port went away under the transport (unplugged, hung up, closed by the peer)."""


class SerialTransport(asyncio.WriteTransport):
    """An open pyserial port (``port``, non-blocking) driven by ``loop.add_reader``.

    Bytes read go to ``protocol.data_received``; ``write`` writes at once and
    buffers only what the kernel did not take (then ``add_writer``). A read error, a
    read of nothing (hang-up) or a write error closes the port and calls
    ``protocol.connection_lost(exc)`` once; ``close()`` and ``abort()`` call it with
    None.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, port: Any
    ) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._port = port
        self._fd: int = port.fileno()
        self._buffer = bytearray()
        self._closing = False
        self._lost = False
        loop.add_reader(self._fd, self._read_ready)
        loop.call_soon(protocol.connection_made, self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``serial``: the pyserial port object; anything else: ``default``."""
        return self._port if name == "serial" else default

    def is_closing(self) -> bool:
        """True once ``close()``/``abort()`` was called or the port went away."""
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` now; what the kernel does not take is sent when it can.
        Ignored once closing (as asyncio's transports do)."""
        if self._closing or not data:
            return
        if self._buffer:
            self._buffer += data
            return
        try:
            sent = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._fatal(exc)
            return
        if sent < len(data):
            self._buffer += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return len(self._buffer)

    def can_write_eof(self) -> bool:
        """A serial line has no end-of-file."""
        return False

    def close(self) -> None:
        """Close once the buffered bytes are out; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._buffer:
            self._lost = True  # connection_lost is on its way: abort() adds nothing
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        """Close now, dropping buffered bytes; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: a pty's other end closed, a USB adapter pulled
            self._fatal(exc)
            return
        if not data:
            # Readable yet nothing to read: the line hung up (pyserial says the same).
            self._fatal(PortClosed("the port reported readable but returned no data"))
            return
        self._protocol.data_received(data)

    def _write_ready(self) -> None:
        try:
            sent = os.write(self._fd, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        del self._buffer[:sent]
        if not self._buffer:
            self._loop.remove_writer(self._fd)
            if self._closing and not self._lost:
                self._lost = True
                self._loop.call_soon(self._finish, None)

    def _fatal(self, exc: Exception) -> None:
        self._force_close(exc)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost:
            return
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        if self._buffer:
            self._buffer.clear()
            self._loop.remove_writer(self._fd)
        self._lost = True
        self._loop.call_soon(self._finish, exc)

    def _finish(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._port.close()


def _open_serial(url: str, baud: int) -> Any:
    """The pyserial port for ``url``, open and non-blocking, exclusive where it can be."""
    import serial  # only a locker with a serial bus needs it loaded

    try:
        port = serial.serial_for_url(url, baudrate=baud, exclusive=True, timeout=0)
    except (TypeError, ValueError) as exc:
        if "exclusive" not in str(exc):
            raise
        port = serial.serial_for_url(url, baudrate=baud, timeout=0)
    return port


async def open_port(
    url: str, baud: int, factory: Callable[[], asyncio.Protocol]
) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """Open ``url`` (a device path, or a pyserial URL: ``socket://host:port`` goes
    through asyncio's socket transport) at ``baud`` bit/s with a protocol from
    ``factory``. Raises OSError / ``serial.SerialException`` when it cannot be
    opened, ValueError for a URL whose port has no file descriptor (``loop://``,
    ``rfc2217://``: not supported)."""
    loop = asyncio.get_running_loop()
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "socket":
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"a socket:// port needs a host and a port: {url!r}")
        return await loop.create_connection(factory, parsed.hostname, parsed.port)
    # Opening a tty takes microseconds (and `exclusive` never waits: it fails at once),
    # so it is done on the loop, not in a thread pool kept for it.
    port = _open_serial(url, baud)
    try:
        port.fileno()
    except Exception as exc:
        port.close()
        raise ValueError(f"port {url!r} has no file descriptor to read: not supported") from exc
    protocol = factory()
    try:
        transport = SerialTransport(loop, protocol, port)
    except BaseException:
        port.close()
        raise
    return transport, protocol
