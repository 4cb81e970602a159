"""Debounced inputs: door and end switches, item sensors.

Threads: gpiozero calls input callbacks on its own thread; they only hand the raw
level to the loop with ``call_soon_threadsafe``. Debouncing is ours (``Debouncer``,
pure, driven by ``loop.time()``): see ``drivers.gpio.debounce``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from gpiozero import DigitalInputDevice
from gpiozero.exc import DeviceClosed

from drivers.gpio.debounce import Debouncer

log = structlog.get_logger(__name__)


class GpioInput:
    """A debounced input. ``value`` is True when active (after polarity).

    Create it from the event loop (``RuntimeError`` otherwise): gpiozero's callbacks
    come on its own thread and are handed to this loop; ``on_change(value)`` runs on
    the loop. A level counts once it held ``debounce_s`` seconds. ``invert``: the
    input is active when gpiozero says inactive (a pulled-up pin that is active high:
    gpiozero ties a pull-up to "low is active").
    """

    def __init__(
        self,
        device: DigitalInputDevice,
        name: str,
        debounce_s: float,
        on_change: Callable[[bool], None] | None,
        *,
        invert: bool = False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._device = device
        self.name = name
        self._on_change = on_change
        self._invert = invert
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        # Callbacks first, then the initial read: an edge in between arrives as a
        # feed of the level already read, which changes nothing.
        device.when_activated = self._activated
        device.when_deactivated = self._deactivated
        initial = self._read()
        self._debouncer = Debouncer(debounce_s, initial)
        self._events = {True: asyncio.Event(), False: asyncio.Event()}
        self._events[initial].set()

    @property
    def value(self) -> bool:
        """The debounced level: True when active."""
        return self._debouncer.value

    async def wait_for(self, value: bool) -> None:
        """Return once the debounced value is ``value`` (at once if it is)."""
        await self._events[bool(value)].wait()

    def close(self) -> None:
        """Stop reporting and release the pin. Idempotent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(DeviceClosed):
            self._device.when_activated = None
            self._device.when_deactivated = None
        self._device.close()

    # gpiozero's thread -------------------------------------------------------

    def _read(self) -> bool:
        return bool(self._device.is_active) != self._invert

    def _activated(self) -> None:
        self._from_thread(not self._invert)

    def _deactivated(self) -> None:
        self._from_thread(self._invert)

    def _from_thread(self, raw: bool) -> None:
        now = self._loop.time()  # time.monotonic(): fine from any thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._feed, raw, now)

    # the loop ----------------------------------------------------------------

    def _feed(self, raw: bool, now: float) -> None:
        if self._closed:
            return
        self._debouncer.feed(raw, now)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._debouncer.due()
        if due is not None:
            self._timer = self._loop.call_at(due, self._settle)

    def _settle(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        # Read the line once more: an edge lost or coalesced by the pin library
        # must not leave us settled on a level that is no longer there.
        with contextlib.suppress(DeviceClosed):
            self._debouncer.feed(self._read(), now)
        value = self._debouncer.poll(now)
        if value is None:
            self._schedule()  # restarted, or the timer fired a hair early
            return
        self._events[value].set()
        self._events[not value].clear()
        log.debug("gpio.input_changed", input=self.name, value=value)
        if self._on_change is not None:
            try:
                self._on_change(value)
            except Exception:
                log.exception("gpio.callback_error", input=self.name)
