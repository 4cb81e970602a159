"""Lock board and bus health as the cloud hears it: level-triggered and rate-limited.

The buses decide when a board is silent (with hysteresis: a run of missed polls)
and tell the locker; this module decides what the cloud is told, and when:

- ``board_offline`` / ``board_online`` for one board; while its whole bus is
  silent, ``bus_offline`` / ``bus_online`` instead (one event, not one per board),
  so the cloud can tell a dead bus from a dead link (the uplink would be silent);
- a board's silence is told ``settle_s`` late, so a bus going quiet board by
  board is one ``bus_offline``;
- at most one event per board (or bus) every ``min_interval_s``: a flapping
  board sends its first change at once, then the state it is in when the
  interval ends, if that differs from what the cloud was told (never a flood);
- level-triggered: what the cloud was told is compared with what is, so no
  change in between can be lost or told twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.locker.journal import BoardSeen, BusSeen, Journal


@dataclass(slots=True)
class _Told:
    online: bool = True  # what the cloud believes: every board answers until told otherwise
    at: float | None = None  # clock() of the last event


class Health:
    """Board and bus health events for the journal, rate-limited.

    Seconds: ``min_interval_s`` between two events of one board or bus;
    ``settle_s`` after a bus answers again before its boards are judged one by one.
    ``clock``: monotonic. ``boards``: (bus, board) -> the cabinet keys it serves, so
    an event carries its own cabinets.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        min_interval_s: float = 60.0,
        settle_s: float = 3.0,
        clock: Callable[[], float],
        boards: Mapping[tuple[str, int], tuple[int, ...]] | None = None,
    ) -> None:
        self._journal = journal
        self._served = dict(boards or {})  # (bus, board) -> the cabinets it serves
        self.min_interval_s = min_interval_s
        self._settle_s = settle_s
        self._clock = clock
        self._boards: dict[tuple[str, int], bool] = {}  # what is: answering or not
        self._buses: dict[str, bool] = {}
        self._told: dict[tuple[str, int] | str, _Told] = {}
        self._timers: dict[tuple[str, int] | str, asyncio.TimerHandle] = {}
        self._started = False

    def start(self) -> None:
        """The start-up snapshot is queued: tell the cloud what is silent now."""
        self._started = True
        self._reconcile_all()

    def close(self) -> None:
        """Cancel the deferred checks."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def board(self, bus: str, board: int, online: bool) -> None:
        """A bus says a board answers again, or went silent. Silence is told after
        ``settle_s``: when the whole bus is going quiet, one bus event says it."""
        self._boards[(bus, board)] = online
        if online:
            self._reconcile((bus, board))
        else:
            self._defer((bus, board), self._settle_s)

    def bus(self, bus: str, online: bool) -> None:
        """A bus says every one of its boards went silent (or its port is closed), or
        that one answers again."""
        self._buses[bus] = online
        self._reconcile(bus)
        if online:  # boards still silent on a living bus are told one by one, soon
            for key in [k for k in self._boards if k[0] == bus]:
                self._defer(key, self._settle_s)

    def _reconcile_all(self) -> None:
        for bus in list(self._buses):
            self._reconcile(bus)
        for key in list(self._boards):
            self._reconcile(key)

    def _reconcile(self, key: tuple[str, int] | str) -> None:
        if not self._started:
            return
        if isinstance(key, tuple):
            if not self._buses.get(key[0], True):
                return  # the bus event speaks for its boards
            actual = self._boards.get(key, True)
        else:
            actual = self._buses.get(key, True)
        told = self._told.setdefault(key, _Told())
        if told.online == actual:
            return
        now = self._clock()
        if told.at is not None and now - told.at < self.min_interval_s:
            self._defer(key, told.at + self.min_interval_s - now)
            return
        told.online, told.at = actual, now
        if isinstance(key, tuple):
            self._journal.publish(BoardSeen(key[0], key[1], actual, self._served.get(key, ())))
        else:
            on_bus = sorted(b for bus, b in self._served if bus == key)
            keys = sorted({k for (bus, _), ks in self._served.items() if bus == key for k in ks})
            self._journal.publish(BusSeen(key, actual, tuple(on_bus), tuple(keys)))

    def _defer(self, key: tuple[str, int] | str, delay_s: float) -> None:
        if key in self._timers:
            return
        with contextlib.suppress(RuntimeError):  # no loop: the next change reconciles
            self._timers[key] = asyncio.get_running_loop().call_later(delay_s, self._due, key)

    def _due(self, key: tuple[str, int] | str) -> None:
        del self._timers[key]
        self._reconcile(key)
