"""Pickup codes as one part of the agent: the store, the readers, the housekeeping.

Built from the config (``[[readers]]``, ``[storage] dir``); ``provision`` takes the
command channel's ``codes`` messages; ``start`` / ``close`` as every part. Every
``HOUSEKEEPING_S`` the clock is asked whether it is right (off the loop: the answer
may take seconds), expired codes are pruned and states the disk refused are written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from agent.codes.held import HeldCodes
from agent.codes.message import parse_codes
from agent.codes.pickup import Pickup
from agent.config import Config, Side
from agent.locker.locker import Locker
from agent.storage.codes import CODES_FILE, CodeStore
from drivers.readers import KeyboardReader, Reader, SerialReader, SerialReaderConfig
from drivers.threads import in_daemon_thread

log = structlog.get_logger(__name__)

HOUSEKEEPING_S = 60.0
ClockEvidence = Callable[[], tuple[bool | None, str]]


def build_readers(config: Config, on_code: Callable[[str, str], None]) -> list[Reader]:
    """One driver per ``[[readers]]`` entry, nothing opened."""
    out: list[Reader] = []
    for entry in config.readers:
        if isinstance(entry, SerialReaderConfig):
            out.append(SerialReader(entry.name, entry.port, entry.baud, on_code))
        else:
            out.append(KeyboardReader(entry.name, entry.device, on_code))
    return out


class PickupCodes:
    """The codes the locker holds and the readers that present them.

    ``clock_evidence``: whether the wall clock is known right (``agent.thermal.clock
    .synchronized``; blocking, run in a thread).
    """

    def __init__(self, config: Config, locker: Locker, clock_evidence: ClockEvidence) -> None:
        self.store = CodeStore(config.storage.dir / CODES_FILE, locker.storage_replaced)
        doors: dict[int, tuple[Side, ...]] = {
            c.key: ("front", "rear") if c.rear is not None else ("front",) for c in config.cabinets
        }
        self.held = HeldCodes(self.store, doors)
        self.pickup = Pickup(locker, self.held)
        self.readers = build_readers(config, self.pickup.read)
        self._clock_evidence = clock_evidence
        self._task: asyncio.Task[None] | None = None
        if self.store.notice:
            locker.storage_replaced(self.store.notice)

    def provision(self, data: dict[str, Any]) -> dict[str, Any]:
        """A ``codes`` message (without ``id`` and ``type``); answers ``{"held", "put",
        "dropped"}``. Raises ``Invalid``, ``Conflict``, ``Unavailable``."""
        return self.held.provision(parse_codes(data))

    async def start(self) -> None:
        """Codes left opening by a dead run reported; readers opened; housekeeping runs."""
        self.pickup.start()
        for reader in self.readers:
            await reader.start()
        self._task = asyncio.create_task(self._housekeeping(), name="codes-housekeeping")

    async def close(self) -> None:
        """Readers closed, codes being judged cancelled, the store closed. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for reader in self.readers:
            await reader.close()
        await self.pickup.close()
        if unsaved := self.held.save_unsaved():
            log.error(
                "codes.unsaved_at_stop",
                count=unsaved,
                consequence="each is spent at the next start and told unsure",
            )
        self.store.close()

    def problems(self) -> list[str]:
        """Health lines for /healthz: readers not open, a store kept only in memory."""
        out = [line for reader in self.readers for line in reader.problems()]
        if self.store.in_memory and self.store.notice:
            out.append(self.store.notice)
        if unsaved := self.held.unsaved:
            out.append(
                f"{unsaved} pickup codes' ends not saved (the disk refuses): a restart"
                " now would spend them, told unsure"
            )
        return out

    def details(self) -> dict[str, Any]:
        """For /healthz beside the reasons: each reader, and the codes held by state."""
        return {
            "readers": [
                {
                    "name": r.name,
                    "open": r.connected,
                    "locked_out_s": round(self.pickup.locked_for(r.name)),
                    "codes": r.codes,
                    "dropped": r.dropped,
                }
                for r in self.readers
            ],
            "codes": self.held.counts(),
        }

    async def _housekeeping(self) -> None:
        while True:
            try:
                # A daemon thread: a probe hung on chronyc never holds the process at
                # its stop (to_thread's pool is joined at exit).
                known, _ = await in_daemon_thread(self._clock_evidence, "clock-probe")
                self.held.note_clock(known)
                self.held.save_unsaved()
                self.held.prune()
            except Exception:  # a bug here must not stop the readers
                log.exception("codes.housekeeping_failed")
            await asyncio.sleep(HOUSEKEEPING_S)
