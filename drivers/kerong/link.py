"""The serial port of one Kerong bus, kept open: bytes to frames, reopened after a loss."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import cast

import structlog

from drivers.kerong import codec
from drivers.serialport import open_port

log = structlog.get_logger(__name__)

ConnectFn = Callable[
    [Callable[[], asyncio.Protocol]],
    Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]],
]

# A TCP gateway that is switched off can hang a connect for minutes.
_OPEN_TIMEOUT_S = 10.0
# How long close() waits for the transport to report that the port is closed.
_CLOSE_WAIT_S = 1.0


class BusUnavailable(Exception):
    """The port is not open (not yet, unplugged, being reopened, or the bus is closed)."""


class _KerongProtocol(asyncio.Protocol):
    """Bytes in, frames out. Never closes the connection because of bad bytes."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._parser = codec.FrameParser()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.heard = False  # at least one valid frame arrived on this connection

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._parser.feed(data)
            for frame in frames:
                self.heard = True
                self._link._frame_received(self, frame)
        except Exception:
            # An exception here would make some transports close the connection.
            log.exception("kerong.receive_error", bus=self._link.name)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self._link._connection_lost(self, exc)

    @property
    def dropped(self) -> int:
        return self._parser.dropped


class Link:
    """Keeps the port of one bus open from ``run()`` until ``close()``.

    ``port`` is a pyserial URL, opened with ``exclusive`` (or by ``connect``, when
    given); it is reopened after a loss with jittered backoff between
    ``reconnect_min_s`` and ``reconnect_max_s``. ``up`` is set while it is open. It
    tells its owner, on the loop: ``on_frame(frame)`` for every valid frame of the
    current connection; ``on_open()`` once a port is open, before ``up`` is set;
    ``on_lost(error)`` when a connection goes, to fail the request waiting; and
    ``on_down()`` when the boards can no longer be known (a port failed to open, or
    went while the link was not closing).
    """

    def __init__(
        self,
        port: str,
        baud: int,
        *,
        name: str,
        connect: ConnectFn | None,
        reconnect_min_s: float,
        reconnect_max_s: float,
        silent_reopen_s: float,
        on_frame: Callable[[codec.Frame], None],
        on_open: Callable[[], None],
        on_lost: Callable[[Exception], None],
        on_down: Callable[[], None],
    ) -> None:
        self.name = name
        self._port = port
        self._baud = baud
        self._connect: ConnectFn = connect or self._open_serial
        self._rng = random.Random()
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        # Liveness: every board silent and no frame for this long while the port
        # looks open (a hung TCP gateway, a wedged USB adapter): reopen the port.
        self._silent_reopen_s = silent_reopen_s
        self._last_frame = 0.0
        self._on_frame = on_frame
        self._on_open = on_open
        self._on_lost = on_lost
        self._on_down = on_down
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _KerongProtocol | None = None
        self._closing: _KerongProtocol | None = None  # the connection close() ended
        self._closed = False
        self.up = asyncio.Event()  # set while the port is open (only the link sets it)
        # Why the port is not open: the last open's error (an OSError's errno says: no
        # such file, permission, held by another process) or the connection's loss.
        self.open_error: Exception | None = None

    @property
    def port(self) -> str:
        """The port this link opens (a path or a pyserial URL)."""
        return self._port

    @property
    def transport(self) -> asyncio.WriteTransport | None:
        """The open port's transport; None while it is not open."""
        return self._transport

    @property
    def bad_bytes(self) -> int:
        """Bytes dropped as garbage by the frame parser on the current connection."""
        return self._protocol.dropped if self._protocol is not None else 0

    async def run(self) -> None:
        """Keep the port open until close(): open, wait until lost, back off, reopen."""
        failures = 0
        while True:
            try:
                log.debug("kerong.opening", bus=self.name, port=self._port)
                async with asyncio.timeout(_OPEN_TIMEOUT_S):
                    transport, protocol = await self._connect(lambda: _KerongProtocol(self))
                if not isinstance(protocol, _KerongProtocol):
                    transport.close()
                    raise TypeError(f"connect returned a foreign protocol {protocol!r}")
                if protocol.lost.done():
                    raise BusUnavailable(f"closed while opening: {protocol.lost.result()!r}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # OSError, SerialException, termios.error, ...
                failures += 1
                self.open_error = exc
                delay = self._backoff(failures)
                log.warning(
                    "kerong.open_failed",
                    bus=self.name,
                    port=self._port,
                    error=repr(exc),
                    retry_in=round(delay, 3),
                )
                self._on_down()
                await asyncio.sleep(delay)
                continue
            self._protocol = protocol
            self._transport = cast(asyncio.WriteTransport, transport)
            self.open_error = None
            self._on_open()
            self._last_frame = asyncio.get_running_loop().time()
            self.up.set()
            log.info("kerong.connected", bus=self.name, port=self._port)
            # Shielded: close() cancels this task but still wants to await `lost`.
            await asyncio.shield(protocol.lost)  # _connection_lost has cleaned up
            # Start the backoff over only if the link was proven good by a frame.
            failures = 1 if protocol.heard else failures + 1
            await asyncio.sleep(self._backoff(failures))

    def close(self) -> None:
        """Close the port for good (the owner cancels ``run()``); ``wait_closed()``
        waits for it."""
        self._closed = True
        self._closing, transport = self._protocol, self._transport
        self._transport = None
        self.up.clear()
        if transport is not None:
            transport.close()

    async def wait_closed(self) -> None:
        """Wait (briefly) until the port ``close()`` closed is really closed, so it can
        be reopened."""
        if self._closing is not None:
            await asyncio.wait([self._closing.lost], timeout=_CLOSE_WAIT_S)
        self._protocol = None

    def check_liveness(self, now: float, *, boards_silent: bool) -> None:
        """Reopen a port that looks open while every board is silent (``boards_silent``)
        and no frame came for ``silent_reopen_s``."""
        transport = self._transport
        if (
            transport is not None
            and boards_silent
            and now - self._last_frame > self._silent_reopen_s
        ):
            log.warning("kerong.silent_link_reopen", bus=self.name, silent_s=self._silent_reopen_s)
            transport.abort()  # connection_lost follows; run() reopens with backoff

    def _frame_received(self, protocol: _KerongProtocol, frame: codec.Frame) -> None:
        if protocol is not self._protocol:
            return
        self._last_frame = asyncio.get_running_loop().time()
        self._on_frame(frame)

    def _connection_lost(self, protocol: _KerongProtocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self._transport = None
        self.up.clear()
        self.open_error = exc or BusUnavailable("the connection was lost")
        self._on_lost(BusUnavailable(f"bus {self.name}: connection lost"))
        if self._closed:
            return
        log.warning("kerong.connection_lost", bus=self.name, error=repr(exc))
        self._on_down()

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter, between reconnect_min_s and _max_s."""
        ceiling = min(self._reconnect_max_s, self._reconnect_min_s * 2 ** min(failures, 32))
        return self._rng.uniform(self._reconnect_min_s, ceiling)

    async def _open_serial(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        # The lean transport (drivers/serialport.py): the fd on the loop, exclusive
        # (a second agent or a login getty on the same UART would garble every frame).
        return await open_port(self._port, self._baud, factory)
