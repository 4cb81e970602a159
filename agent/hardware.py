"""The bridge between the locker and its drivers.

Translates driver events (a board's lock and item bits) into door and item
readings for the locker, and the locker's "release this door" into a driver
call. The only module of ``agent`` that knows driver classes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

import structlog

from agent.cabinet import Side
from agent.config import Config
from agent.locker import HardwareUnavailable
from drivers.kerong.bus import BoardStatus, BoardTimeout, BusUnavailable, KerongBus

log = structlog.get_logger(__name__)

Point = tuple[str, int, int]  # bus, board, channel


class SensorSink(Protocol):
    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None: ...

    def item_sensed(self, key: int, present: bool) -> None: ...


class Hardware:
    def __init__(self, config: Config, sink: SensorSink) -> None:
        self._sink = sink
        self._doors: dict[tuple[int, Side], Point] = {}
        self._points: dict[tuple[str, int], list[tuple[int, int, Side]]] = {}
        for cab in config.cabinets:
            for side, wiring in (("front", cab.front), ("rear", cab.rear)):
                if wiring is None:
                    continue
                self._doors[(cab.key, side)] = (wiring.bus, wiring.board, wiring.channel)
                self._points.setdefault((wiring.bus, wiring.board), []).append(
                    (wiring.channel, cab.key, side)
                )
        self._buses: dict[str, KerongBus] = {}
        self._heard: dict[str, set[int]] = {}  # boards that answered or were declared silent
        self._offline: dict[str, set[int]] = {}
        self._ready = asyncio.Event()
        for bus in config.buses:
            self._heard[bus.name] = set()
            self._offline[bus.name] = set()
            self._buses[bus.name] = KerongBus(
                bus.port,
                bus.boards,
                self._on_status_for(bus.name),
                baud=bus.baud,
                reply_timeout=bus.reply_timeout_s,
                poll_interval=bus.poll_interval_s,
                locked_bit=bus.locked_bit,
                name=bus.name,
            )
        self._expected = {bus.name: set(bus.boards) for bus in config.buses}

    async def start(self) -> None:
        for bus in self._buses.values():
            await bus.start()

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every board answered or was found silent; False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    async def release(self, key: int, side: Side) -> None:
        bus_name, board, channel = self._doors[(key, side)]
        try:
            await self._buses[bus_name].unlock(board, channel)
        except (BusUnavailable, BoardTimeout) as exc:
            raise HardwareUnavailable(f"bus {bus_name}: {exc or type(exc).__name__}") from None

    def problems(self) -> list[str]:
        out = []
        for name, bus in self._buses.items():
            if not bus.connected:
                out.append(f"bus {name}: port not open")
                continue
            out.extend(f"bus {name} board {b}: not answering" for b in sorted(self._offline[name]))
        return out

    def _on_status_for(self, bus_name: str) -> Callable[[int, BoardStatus | None], None]:
        def on_status(board: int, status: BoardStatus | None) -> None:
            self._board_status(bus_name, board, status)

        return on_status

    def _board_status(self, bus_name: str, board: int, status: BoardStatus | None) -> None:
        offline = self._offline[bus_name]
        if status is None and board not in offline:
            offline.add(board)
            log.warning("board.offline", bus=bus_name, board=board)
        elif status is not None and board in offline:
            offline.discard(board)
            log.info("board.online", bus=bus_name, board=board)
        for channel, key, side in self._points.get((bus_name, board), ()):
            is_open = None if status is None else not status.closed[channel - 1]
            self._sink.door_sensed(key, side, is_open)
            if status is not None and side == "front":
                self._sink.item_sensed(key, status.items[channel - 1])
        self._heard[bus_name].add(board)
        if all(self._heard[n] >= boards for n, boards in self._expected.items()):
            self._ready.set()
