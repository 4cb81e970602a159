"""A virtual code scanner: a pseudo-terminal the agent's serial reader opens, as it would
a QR scanner in serial mode, and on which the simulator types codes (one a line, CR LF)."""

from __future__ import annotations

import os
import tty

import structlog

log = structlog.get_logger(__name__)


class VirtualScanner:
    """A scanner on a pty: ``path`` for the config's ``[[readers]] port``, ``scan(code)``.

    The simulator keeps the slave end open too, so the agent may close and reopen it.
    """

    def __init__(self, name: str = "scanner") -> None:
        self.name = name
        self._master: int | None = None
        self._slave: int | None = None
        self.path = ""
        self.scanned = 0

    def start(self) -> None:
        """Open the pty. Idempotent."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        log.info("virtual scanner started", name=self.name, port=self.path)

    def scan(self, code: str) -> None:
        """Type ``code`` and Enter, as a scanner does (ValueError for a line break in it,
        RuntimeError before ``start``)."""
        if self._master is None:
            raise RuntimeError("the virtual scanner is not started")
        if "\r" in code or "\n" in code:
            raise ValueError("a code is one line")
        data = memoryview(code.encode() + b"\r\n")
        while data:
            data = data[os.write(self._master, data) :]
        self.scanned += 1

    def close(self) -> None:
        """Close both ends. Idempotent."""
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
