"""Logging: every line of the process through one path, masked, rendered once.

structlog's loggers and every stdlib logger (aiohttp's, asyncio's, the root) end in
one handler on the root logger, whose ``structlog.stdlib.ProcessorFormatter`` renders
JSON lines for journald (readable colour on a terminal). On that path, before any
line is written:

- keys that name a secret (``token``, ``api_key``, ``authorization``, ...) are masked,
  and so is anything that looks like one in any string of the line (``Bearer ...``,
  ``secret_token=...``, ``api-key: ...``, ``token=...``), tracebacks included;
- aiohttp's own lines keep the exception's type only: its parse errors carry the raw
  request line (LESSONS.md), token and all;
- a flood of identical warnings or errors (asyncio's accept errors when descriptors
  run out) is cut to the first ``burst`` per ``window_s``, then one ``log.suppressed``
  line with the count.

``configure()`` sets this up once at start-up; ``install_loop_handler(loop)`` routes
asyncio's exception handler through the same path with structured fields.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, TextIO

import structlog

from agent.redact import redact


def _quiet_aiohttp(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """aiohttp's lines keep the exception's type, never its text: a parse error's
    message is the raw request line ("Error handling request from PEER")."""
    record = event.get("_record")
    if record is not None and record.name.startswith("aiohttp"):
        exc_info = event.pop("exc_info", None)
        if isinstance(exc_info, tuple) and exc_info[0] is not None:
            event["error"] = exc_info[0].__name__
    return event


class RepeatLimiter:
    """Lets through ``burst`` records of each kind per ``window_s`` seconds; counts the rest.

    ``clock``: monotonic. At most ``max_kinds`` kinds are tracked (the oldest is
    forgotten, its count reported). Thread-safe.
    """

    def __init__(
        self,
        burst: int = 5,
        window_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 256,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._max_kinds = max_kinds
        # kind -> [window start, seen in the window]
        self._kinds: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, kind: Hashable) -> tuple[bool, list[tuple[Hashable, int]]]:
        """(whether a record of ``kind`` passes now, the suppressed counts of every
        window that has ended: ``[(kind, count), ...]`` to report first)."""
        now = self._clock()
        with self._lock:
            due = self._expire(now)
            entry = self._kinds.get(kind)
            if entry is None:
                if len(self._kinds) >= self._max_kinds:
                    old_kind, (_, old_seen) = self._kinds.popitem(last=False)
                    if old_seen > self.burst:
                        due.append((old_kind, int(old_seen) - self.burst))
                entry = self._kinds[kind] = [now, 0]
            entry[1] += 1
            return entry[1] <= self.burst, due

    def drain(self) -> list[tuple[Hashable, int]]:
        """Every count suppressed so far, windows ended or not (at close)."""
        with self._lock:
            due = [(k, int(seen) - self.burst) for k, (_, seen) in self._kinds.items()]
            self._kinds.clear()
        return [(k, n) for k, n in due if n > 0]

    def _expire(self, now: float) -> list[tuple[Hashable, int]]:
        due = []
        for kind, (start, seen) in list(self._kinds.items()):
            if now - start >= self.window_s:
                del self._kinds[kind]
                if seen > self.burst:
                    due.append((kind, int(seen) - self.burst))
        return due


_SUBJECT = ("key", "side", "alarm", "bus", "board")


def _kind(record: logging.LogRecord) -> Hashable:
    """What makes two records the same kind, for the repeat limit.

    Logger, level, event (or the message template), the asyncio message, the
    exception type, and what it is about (``key``, ``side``, ``alarm``, ``bus``,
    ``board``): sixteen cabinets raising an alarm at once are sixteen lines, one
    cabinet raising it every second is limited.
    """
    msg = record.msg
    exc: Any = record.exc_info[0] if record.exc_info else None
    if isinstance(msg, dict):
        subject = tuple(str(msg[f]) for f in _SUBJECT if f in msg)
        event = (str(msg.get("event")), str(msg.get("message", "")), *subject)
        raw = msg.get("exc_info")
        if isinstance(raw, BaseException):
            exc = type(raw)
        elif raw is True:
            exc = sys.exc_info()[0]
    else:
        event = (str(msg), "")
    return (record.name, record.levelno, event, getattr(exc, "__name__", None))


# stdlib level -> syslog priority (sd-daemon(3)): err 3, warning 4, info 6, debug 7.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _Handler(logging.Handler):
    """Writes formatted lines to ``stream`` (``sys.stderr`` as it is at each write
    when None), warnings and errors through a ``RepeatLimiter``."""

    def __init__(self, stream: TextIO | None, limiter: RepeatLimiter) -> None:
        super().__init__()
        self._stream = stream
        self.limiter = limiter
        # Under systemd, stderr goes to journald, which reads a "<N>" prefix as the
        # line's priority (SyslogLevelPrefix=yes): `journalctl -p warning` then works.
        self._journald = stream is None and bool(os.environ.get("JOURNAL_STREAM"))

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        if record.levelno < logging.WARNING:
            return super().handle(record)
        admitted, due = self.limiter.admit(_kind(record))
        self._summarise(due)
        return super().handle(record) if admitted else False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self._journald:
                line = f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
            stream = self._stream or sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except Exception as exc:  # never logging's own report: it prints the raw record
            stream = self._stream or sys.stderr
            stream.write(f'{{"event": "log.unwritable", "error": "{type(exc).__name__}"}}\n')

    def flush_suppressed(self) -> None:
        """Report every count suppressed so far."""
        self._summarise(self.limiter.drain())

    def close(self) -> None:
        self.flush_suppressed()
        super().close()

    def _summarise(self, due: list[tuple[Hashable, int]]) -> None:
        for kind, count in due:
            name, level, (event, message, *subject), error = kind  # type: ignore[misc]
            record = logging.LogRecord(__name__, level, "", 0, "log.suppressed", (), None)
            record.suppressed = count
            record.window_s = self.limiter.window_s
            record.of = {"logger": name, "event": event, "message": message, "error": error}
            if subject:
                record.of["about"] = subject
            super().handle(record)


_handler: _Handler | None = None
_console: _Handler | None = None  # configure(console=...): a person's terminal beside a file
_loop_log = structlog.get_logger("asyncio")


def configure(
    *,
    json: bool | None = None,
    level: str = "info",
    stream: TextIO | None = None,
    burst: int = 5,
    window_s: float = 60.0,
    console: TextIO | None = None,
    console_level: str = "warning",
) -> None:
    """Route every logger in the process through one masked, rate-limited renderer.

    ``json=None``: JSON unless the stream is a tty. ``level``: a stdlib level name
    (KeyError otherwise), set on the root logger. ``stream``: default
    ``sys.stderr`` (looked up at each write). ``burst`` identical warnings or errors
    per ``window_s`` seconds pass, the rest are counted into one
    ``log.suppressed`` line. ``console``: a second stream (a person's terminal while
    ``stream`` is a file) given the lines at ``console_level`` and above, rendered for
    reading, masked the same way. Calling it again replaces the previous set-up.
    """
    global _handler
    out = stream or sys.stderr
    if json is None:
        json = not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _quiet_aiohttp],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become strings here, so redact masks them too.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = _Handler(stream, RepeatLimiter(burst, window_s))
    handler.setFormatter(formatter)

    root = logging.getLogger()
    _remove_console()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    _handler = handler
    if console is not None:
        _add_console(console, console_level, formatter, RepeatLimiter(burst, window_s))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def _add_console(
    stream: TextIO,
    level: str,
    formatter: structlog.stdlib.ProcessorFormatter,
    limiter: RepeatLimiter,
) -> None:
    """The second sink of ``configure(console=...)``: ``formatter``'s chain (masking
    included) ending in structlog's console renderer instead of its own."""
    global _console
    readable = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=formatter.foreign_pre_chain,
        processors=[
            *formatter.processors[:-1],
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
        ],
    )
    _console = _Handler(stream, limiter)
    _console.setLevel(logging.getLevelNamesMapping()[level.upper()])
    _console.setFormatter(readable)
    logging.getLogger().addHandler(_console)


def _remove_console() -> None:
    global _console
    if _console is not None:
        logging.getLogger().removeHandler(_console)
        _console.close()
        _console = None


def reset() -> None:
    """Undo ``configure()``: its handler leaves the root logger (pending
    ``log.suppressed`` lines written first) and structlog is back to its defaults."""
    global _handler
    _remove_console()
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
        _handler = None
    structlog.reset_defaults()


def flush_suppressed() -> None:
    """Write the ``log.suppressed`` lines still pending (at shutdown, or in a test)."""
    for handler in (_handler, _console):
        if handler is not None:
            handler.flush_suppressed()


def install_loop_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop``'s exception handler log through the same masked, limited path.

    One structured ``asyncio.error`` line: ``message``, the exception, the
    context's other items as strings.
    """
    loop.set_exception_handler(_on_loop_error)


def _on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    fields = {
        key: repr(value)[:300]
        for key, value in context.items()
        if key not in ("message", "exception")
    }
    _loop_log.error(
        "asyncio.error",
        message=str(context.get("message", "unhandled exception in the event loop")),
        exc_info=exc if isinstance(exc, BaseException) else False,
        **fields,
    )
