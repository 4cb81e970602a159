"""The simulator at a person's terminal: the log in a file, warnings on the screen, and
where to look kept in sight.

A person who typed ``make simulate`` needs the page's address, the API's token and the
storage folder; the agent's info lines (every door, every POST, every poll) would scroll
them away in seconds. So when stderr is a terminal (or ``--log-file PATH`` is given),
everything logged goes to a file, in structlog's readable lines at ``--log-level``;
the terminal gets the warnings and errors only (readable, in colour), and the banner's
last lines (:meth:`simulator.run.Simulation.where`) are printed again whenever the
lines below them would push them off the top of the screen. Off a terminal (a pipe, a
test, systemd) nothing changes: the CLI's logging to stderr, JSON (ADR 0022).
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from agent import log

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MARGIN_ROWS = 2  # the row the cursor waits on and one to spare: shown again a little early


def rows_of(text: str, columns: int) -> int:
    """How many screen rows the complete lines of ``text`` take on a terminal
    ``columns`` wide (colour codes take none; a long line wraps)."""
    lines = text.split("\n")[:-1]
    width = max(1, columns)
    return sum(max(1, math.ceil(len(_ANSI.sub("", line)) / width)) for line in lines)


class Screen:
    """A person's terminal: counts the rows the log writes below the lines last shown
    by :meth:`shown`, and writes those lines again before they would scroll out of
    sight. :attr:`stream` is the log's way to the terminal (``log.configure(console=)``).

    ``size``: the terminal's (columns, rows) now (default: asked of ``err``'s terminal,
    80 x 24 when it cannot say). Thread-safe: the log writes from any thread.
    """

    def __init__(self, err: TextIO, size: Callable[[], tuple[int, int]] | None = None) -> None:
        self._err = err
        self._size = size or self._terminal_size
        self._lock = threading.Lock()
        self._kept: list[str] = []
        self._since = 0  # rows written below the kept lines
        self.stream = _Counting(self)
        self.repeated = 0  # how many times the kept lines were written again

    def shown(self, lines: Sequence[str]) -> None:
        """``lines`` were just printed (the banner's last lines): keep them in sight."""
        with self._lock:
            self._kept = list(lines)
            self._since = 0

    def _wrote(self, text: str) -> None:
        with self._lock:
            columns, rows = self._size()
            self._since += rows_of(text, columns)
            if not self._kept:
                return
            block = "\n".join(self._kept) + "\n"
            if self._since + rows_of(block, columns) > rows - MARGIN_ROWS:
                self._err.write(block)
                self._err.flush()
                self._since = 0
                self.repeated += 1

    def _terminal_size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self._err.fileno())
        except (OSError, ValueError):
            return 80, 24
        return size.columns or 80, size.lines or 24


class _Counting:
    """The terminal's stream as the log writes it: passed through, then counted."""

    def __init__(self, screen: Screen) -> None:
        self._screen = screen

    def write(self, text: str) -> int:
        written = self._screen._err.write(text)
        self._screen._wrote(text)
        return written

    def flush(self) -> None:
        self._screen._err.flush()

    def isatty(self) -> bool:
        return self._screen._err.isatty()

    def fileno(self) -> int:
        return self._screen._err.fileno()


@dataclass
class LogFile:
    """Where a simulator run logs: ``path`` (kept after the run), and the ``screen``
    that shows the warnings when stderr is a person's terminal (else None)."""

    path: Path
    screen: Screen | None


def log_to_file(option: str | None, level: str = "info") -> LogFile | None:
    """Send the run's log to a file, as :mod:`simulator.console` says, or leave the
    CLI's set-up alone (None): ``option`` is ``--log-file`` (None: a new file in the
    temporary directory when stderr is a terminal, else none; ``-``: none).

    ``level``: the file's (a stdlib level name). Raises OSError when the file cannot
    be opened for appending.
    """
    err = sys.stderr
    if option == "-" or (option is None and not err.isatty()):
        return None
    if option is None:
        fd, name = tempfile.mkstemp(prefix="locker-agent-simulate-", suffix=".log")
        stream = os.fdopen(fd, "w", encoding="utf-8")
        path = Path(name)
    else:
        path = Path(option)
        stream = path.open("a", encoding="utf-8")
    screen = Screen(err) if err.isatty() else None
    log.configure(
        json=False,
        level=level,
        stream=stream,
        console=screen.stream if screen is not None else err,
        console_level="warning",
    )
    return LogFile(path, screen)
