"""sd_notify over the Unix datagram socket systemd gives us; nothing when not under systemd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

STATUS_EVERY_S = 5.0  # how often STATUS= is brought up to date


def notify(message: str) -> bool:
    """Send one datagram (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


class Watchdog:
    """Keeps systemd's ``STATUS=`` current and pets its watchdog while nothing is stuck.

    ``status()`` is the line for ``systemctl status``; ``stuck()`` names a part that
    stopped turning, or None (a hung loop or a wedged poll task must get the agent
    restarted; a silent board must not: a restart mends neither)."""

    def __init__(
        self,
        status: Callable[[], str],
        stuck: Callable[[], str | None],
    ) -> None:
        self._status = status
        self._stuck = stuck
        self._shown = "starting"
        self._task: asyncio.Task[None] | None = None

    def ready(self) -> None:
        """``READY=1`` with the first status line, then keep both fed from the loop."""
        self._shown = self._status()
        notify(f"READY=1\nSTATUS={self._shown}")
        self._task = asyncio.create_task(self._feed(), name="systemd-watchdog")

    async def close(self) -> None:
        """``STOPPING=1``; no more pets."""
        notify("STOPPING=1")
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _feed(self) -> None:
        interval_s = watchdog_interval()
        while True:
            await asyncio.sleep(min(interval_s or STATUS_EVERY_S, STATUS_EVERY_S))
            status = self._status()
            if status != self._shown:
                self._shown = status
                notify(f"STATUS={status}")
            if interval_s is None:
                continue
            if (stuck := self._stuck()) is None:
                notify("WATCHDOG=1")
            else:
                log.error("agent.watchdog_withheld", reason=stuck)
