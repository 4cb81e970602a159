"""A scanner or keypad in serial mode: one code a line, on any pyserial URL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.readers.base import OnCode, Reader
from drivers.readers.lines import LineReader
from drivers.serialport import open_port

ConnectFn = Callable[
    [Callable[[], asyncio.Protocol]],
    Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]],
]
OPEN_TIMEOUT_S = 10.0


class _LinesProtocol(asyncio.Protocol):
    """Bytes in, codes out; a bad line never closes the port."""

    def __init__(self, reader: SerialReader) -> None:
        self._reader = reader
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        for code in self._reader.lines.feed(data):
            self._reader._code(code)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class SerialReader(Reader):
    """Reads codes from ``port`` (a pyserial URL) at ``baud``; ``connect`` replaces the
    serial open (tests: fake transports). Other arguments: see ``Reader``."""

    kind = "serial"

    def __init__(
        self,
        name: str,
        port: str,
        baud: int,
        on_code: OnCode,
        *,
        connect: ConnectFn | None = None,
        lines: LineReader | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, port, on_code, **kw)
        self._baud = baud
        self._connect = connect or self._open_serial
        self.lines = lines or LineReader()

    @property
    def dropped(self) -> dict[str, int]:
        """Lines thrown away by why (``too_long``, ``garbled``, ``rate``)."""
        return {**self.lines.dropped, "rate": self.limited}

    async def _session(self) -> None:
        self.lines.reset()
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            transport, protocol = await self._connect(lambda: _LinesProtocol(self))
        assert isinstance(protocol, _LinesProtocol)
        try:
            self._up()
            error = await asyncio.shield(protocol.lost)
        finally:
            transport.close()
        if error is not None:
            raise error

    async def _open_serial(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        # The lean transport the Kerong link uses: exclusive where the OS can, so a
        # second agent or a getty on the port cannot split the lines.
        return await open_port(self.where, self._baud, factory)
