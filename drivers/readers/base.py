"""A reader kept open from ``start()`` to ``close()``: reopened after it vanishes, its health.

A USB scanner that is unplugged or re-enumerated comes back under the same
``/dev/serial/by-id`` or ``/dev/input/by-id`` name: the reader tries again with a
backoff (``reopen_min_s`` doubling to ``reopen_max_s``) until it opens; the backoff starts
again only after the device stayed open ``STABLE_S``, so one that opens and drops at once
(a failing hub, a bad cable) is not reopened twice a second for ever. Codes pass
``RateLimit`` before they reach ``on_code(name, code)``; what is dropped is counted,
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import structlog

from drivers.readers.limits import RateLimit

log = structlog.get_logger(__name__)

OnCode = Callable[[str, str], None]
GRACE_S = 5.0  # a reader down for less, having never failed to open, is no problem yet
STABLE_S = 30.0  # open this long, a drop starts the backoff again


class Reader:
    """The common part of every reader; a driver implements ``_session()``, which opens
    the device, feeds codes to ``_code`` until the device is lost, and returns or raises."""

    kind = "reader"

    def __init__(
        self,
        name: str,
        where: str,
        on_code: OnCode,
        *,
        rate: RateLimit | None = None,
        reopen_min_s: float = 0.5,
        reopen_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.where = where
        self._on_code = on_code
        self._rate = rate or RateLimit()
        self._reopen_min_s = reopen_min_s
        self._reopen_max_s = reopen_max_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.reason = "not started"
        self._down_since = clock()
        self._failed = False  # an open failed or the device went since it was last up
        self._up_since = 0.0
        self.failures = 0  # drops and failed opens in a row, the last stable session apart
        self.opened = 0  # times the device was opened
        self.codes = 0  # codes handed on
        self.limited = 0  # codes dropped by the rate limit

    @property
    def dropped(self) -> dict[str, int]:
        """Lines thrown away by why (``too_long``, ``garbled``, ``rate``)."""
        return {"rate": self.limited}

    async def start(self) -> None:
        """Returns at once; the device is opened (and reopened) in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"reader-{self.name}")

    async def close(self) -> None:
        """Stop reading and close the device. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False
        self.reason = "closed"

    def problems(self) -> list[str]:
        """Health lines, as a bus's: a reader not open (after a failure or ``GRACE_S``)."""
        if self._task is None or self.connected:
            return []
        down = self._clock() - self._down_since
        if not self._failed and down < GRACE_S:
            return []
        return [f"reader {self.name}: not open for {down:.0f} s ({self.reason})"]

    def _code(self, code: str) -> None:
        """A whole code read: on to the owner, unless past the rate."""
        if not self._rate.take(self._clock()):
            self.limited += 1
            return
        self.codes += 1
        try:
            self._on_code(self.name, code)
        except Exception:  # the owner's bug must not stop the reading
            log.exception("reader.on_code_failed", reader=self.name)

    def _up(self) -> None:
        self.connected = True
        self._up_since = self._clock()
        self.opened += 1
        self.reason = "open"
        log.info("reader.open", reader=self.name, kind=self.kind, where=self.where)

    def _down(self, reason: str) -> None:
        if self.connected:
            self._down_since = self._clock()
        self.connected = False
        self._failed = True
        self.reason = reason

    async def _session(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        rng = random.Random()
        while True:
            try:
                await self._session()
                reason = "device closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # OSError, SerialException, ImportError, ...
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            stable = self.connected and self._clock() - self._up_since >= STABLE_S
            self._down(reason)
            self.failures = 1 if stable else self.failures + 1
            delay = rng.uniform(
                self._reopen_min_s,
                min(self._reopen_max_s, self._reopen_min_s * 2 ** min(self.failures, 32)),
            )
            log.warning("reader.down", reader=self.name, reason=reason, retry_in=round(delay, 2))
            await asyncio.sleep(delay)
