"""Commands to cabinets: admitted or refused at once, run once per id, one at a time
per cabinet, and opens of one door that pile up carried out once.

``Dispatch`` is the commands' half of :class:`~agent.locker.locker.Locker` (the
other half is the sensors' sink). ``submit`` -> ``command`` (the command log) ->
``execute`` -> ``Actions`` -> the hardware, whose lock takes its pulse gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.config import Side
from agent.locker.actions import Actions, door_of
from agent.locker.cabinet import Cabinet
from agent.locker.commands import CabinetCommand
from agent.locker.errors import Busy, Conflict, LockerError, NotFound, Unavailable
from agent.locker.idempotency import INTERRUPTED, CommandLog
from agent.locker.indicator import Indicators
from agent.locker.intake import Intake
from agent.storage.store import StateStore, StoreError

log = structlog.get_logger(__name__)
JOIN_STOP_S = 1.0  # at a stop, how long a joined open waits for the open it shares
RESAVE_S = 5.0  # while a disable is held only in memory, how often the disk is asked again


@dataclass
class _Open:
    """An open in progress: its outcome, and the last arrival on its cabinet that
    joined it (a later open joins only when nothing came between)."""

    outcome: asyncio.Future[None]
    last: int


class Dispatch:
    """The commands' entry of a locker; its state is set up by ``Locker.__init__``."""

    cabinets: dict[int, Cabinet]
    actions: Actions
    indicators: Indicators
    intake: Intake
    on_command: Callable[[str, str], None] | None
    _store: StateStore
    _commands: CommandLog
    _stopping: bool
    _running: set[asyncio.Task[dict[str, Any]]]
    _opening: dict[tuple[int, Side], _Open]
    _arrivals: dict[int, int]  # commands that reached ``execute``, by cabinet: opens join in a row
    _unsaved: set[int]  # cabinets disabled in memory whose setting the disk refused
    _resave: asyncio.TimerHandle | None

    def get(self, key: int) -> Cabinet:
        """The cabinet with the cloud's ``key``; ``NotFound`` when there is none."""
        try:
            return self.cabinets[key]
        except KeyError:
            raise NotFound(f"no cabinet with key {key}") from None

    def submit(
        self, key: int, cmd: CabinetCommand, command_id: str | None = None
    ) -> asyncio.Task[dict[str, Any]]:
        """Take a command now or refuse it now; the task runs ``command`` to its answer.

        Raises ``NotFound``, ``Busy`` (too many commands waiting) and ``Unavailable``
        (stopping) before anything waits. The task outlives its caller: await it
        through ``asyncio.shield``.
        """
        self.get(key)
        if self._stopping:
            raise Unavailable("the agent is stopping: send the command again once it is back")
        release = self.intake.admit(key)
        task = asyncio.create_task(self.command(key, cmd, command_id), name=f"command-{key}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: release())
        return task

    def problems(self) -> list[str]:
        """Health lines for /healthz: each disable held only in memory."""
        return [
            f"cabinet {key}: disabled, but not saved (the disk refuses): a restart now would"
            " enable it"
            for key in sorted(self._unsaved)
        ]

    def stop_taking(self) -> None:
        """A stop begins: ``submit`` refuses new commands from now on."""
        self._stopping = True

    async def drain(self, timeout_s: float) -> None:
        """Let the commands in flight finish for ``timeout_s`` seconds, then stop them.

        Each is answered with what it did (``Conflict`` when it acted, else
        ``Unavailable``), never left without an answer.
        """
        self._stopping = True
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)
        late = set(self._running)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def command(
        self, key: int, cmd: CabinetCommand, command_id: str | None = None
    ) -> dict[str, Any]:
        """Run a command once per id; answers the cabinet object as it was when it
        finished. Raises the domain errors of ``execute``, and ``Conflict`` (its outcome
        unknown) when a stop ends it: every edge answers that, never a cancellation."""

        async def act() -> dict[str, Any]:
            return (await self.execute(key, cmd)).as_cloud()

        fingerprint = f"{key}:{cmd.model_dump_json()}"
        try:
            # Every command but a disable needs its intent on disk before it acts (a
            # resent id must never act twice: an old enable after a food-time disable);
            # a disable on a full disk must still hold (food past its time).
            moves = cmd.command != "disable"
            try:
                answer = await self._commands.run(command_id, act, fingerprint, durable=moves)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                # ``drain`` stopped it, with no word of what it did: never "send again".
                raise Conflict(f"the agent stopped it: {INTERRUPTED}", acted=True) from None
        except LockerError as err:
            if self.on_command is not None:
                self.on_command(cmd.command, type(err).__name__)
            raise
        if self.on_command is not None:
            self.on_command(cmd.command, "ok")
        return answer

    def knows_command(self, command_id: str) -> bool:
        """Whether a command with this (namespaced) id ran or runs (see ``CommandLog``)."""
        return self._commands.knows(command_id)

    async def execute(self, key: int, cmd: CabinetCommand) -> Cabinet:
        """Carry out one command; opens of one door that pile up are carried out once.

        Raises ``NotFound``, ``Conflict``, ``Unavailable``, ``Busy``, ``Jammed``,
        ``Obstructed``.
        """
        cabinet = self.get(key)
        side: Side = "rear" if cmd.rearload else "front"
        arrival = self._arrivals[key] = self._arrivals.get(key, 0) + 1
        if cmd.command != "open":
            await self._execute(cabinet, side, cmd)
            return cabinet
        # A second open of a door already being opened needs no second pulse: it
        # joins the first and shares its outcome, unless another command for the
        # cabinet came between them (open, close, open must end open). The first runs
        # in its caller, so commands keep their order on the cabinet's lock.
        where = (key, side)
        joined = self._opening.get(where)
        if joined is not None and joined.last == arrival - 1:
            joined.last = arrival
            log.info("command.joined", key=key, command=cmd.command, side=side)
            await self._join(joined.outcome)
            return cabinet
        mine = _Open(asyncio.get_running_loop().create_future(), arrival)
        mine.outcome.add_done_callback(_retrieved)
        self._opening[where] = mine
        try:
            await self._execute(cabinet, side, cmd)
        except LockerError as err:
            mine.outcome.set_exception(err)
            raise
        except BaseException:  # cancelled (a stop): it may have pulsed, never twice
            mine.outcome.set_exception(
                Conflict(f"the open it joined was interrupted: {INTERRUPTED}", acted=True)
            )
            raise
        else:
            mine.outcome.set_result(None)
        finally:
            if self._opening.get(where) is mine:
                del self._opening[where]
        return cabinet

    async def _join(self, outcome: asyncio.Future[None]) -> None:
        """Share an open's outcome; a stop cancels that open too, and its answer (what
        it did) is this one's."""
        try:
            await asyncio.shield(outcome)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            await asyncio.wait([outcome], timeout=JOIN_STOP_S)
            if not outcome.done() or outcome.cancelled():
                raise Conflict(
                    f"the agent stopped during the open: {INTERRUPTED}", acted=True
                ) from None
            if (err := outcome.exception()) is not None:
                raise err from None

    async def _execute(self, cabinet: Cabinet, side: Side, cmd: CabinetCommand) -> None:
        key = cabinet.key
        log.info(
            "command",
            key=key,
            command=cmd.command,
            side=side,
            delay=cmd.delay,
            acted_by=cmd.acted_by,
            order_id=cmd.order_id,
            reason=cmd.reason,
        )
        acted: int | None = None  # actuations before it began; None while it waits
        try:
            async with cabinet.lock:
                acted = self.actions.acted(key)
                try:
                    await self._carry_out(cabinet, side, cmd)
                except (Unavailable, Busy) as exc:
                    if self.actions.acted(key) == acted:
                        raise  # it did not act: a moment, a retry may
                    # It acted, then could not go on: never a second try by a retry.
                    raise Conflict(
                        f"{exc}, after the command had acted: {INTERRUPTED}", acted=True
                    ) from None
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Stopped by the agent's stop: the caller hears what it did.
            if acted is not None and self.actions.acted(key) != acted:
                raise Conflict(
                    f"the agent stopped while the command ran, after it had acted: {INTERRUPTED}",
                    acted=True,
                ) from None
            raise Unavailable("the agent stopped before the command acted: send it again") from None

    async def _carry_out(self, cabinet: Cabinet, side: Side, cmd: CabinetCommand) -> None:
        key = cabinet.key
        if (refusal := cabinet.thermal_refusal(cmd.command)) is not None:
            raise Conflict(refusal)  # a latched safety shut-off (ADR 0011)
        if cmd.command == "open":
            if not cabinet.enabled:
                raise Conflict(f"cabinet {key} is disabled")
            await self.actions.open(cabinet, side)
        elif cmd.command == "close" and cmd.delay:
            door_of(cabinet, side)
            self.actions.close_later(cabinet, side, cmd.delay, explicit=True)
        elif cmd.command == "close":
            await self.actions.shut(cabinet, side)
        elif cmd.command in ("enable", "disable"):
            try:
                self._settle(cabinet, enabled=cmd.command == "enable")
            finally:  # a disable holds even unsaved (see _settle)
                if not cabinet.enabled:  # a technician at work: no door moves by itself
                    for each, _ in cabinet.doors():
                        self.actions.cancel_close(cabinet, each)
                self.indicators.refresh(key)
        elif cmd.command == "resize":
            self._settle(cabinet, size=cmd.size)
        elif cmd.command == "set_thermal_mode":
            if cmd.thermal_mode not in cabinet.thermal_modes:
                needs = "heater" if cmd.thermal_mode == "heat" else "cooler or compressor"
                why = f"no {needs}" if len(cabinet.thermal_modes) > 1 else "no thermal unit"
                raise Conflict(
                    f"cabinet {key} cannot {cmd.thermal_mode}: it has {why}"
                    f" (it can: {', '.join(sorted(cabinet.thermal_modes))})"
                )
            self._settle(cabinet, thermal_mode=cmd.thermal_mode)
            cabinet.thermal_set += 1  # a new mode re-arms the controller (a latch refuses it)

    async def open_all(
        self, side: Side = "front", reason: str | None = None
    ) -> list[tuple[int, Cabinet | LockerError]]:
        """Open every enabled cabinet's door (technicians); the hardware staggers the
        pulses. Answers (key, cabinet or the domain error) per cabinet."""
        keys = [c.key for c in self.cabinets.values() if c.enabled and c.door(side) is not None]
        cmd = CabinetCommand(command="open", rearload=side == "rear", reason=reason)
        out: list[tuple[int, Cabinet | LockerError]] = []
        tasks: dict[int, asyncio.Task[dict[str, Any]]] = {}
        for key in keys:
            try:
                tasks[key] = self.submit(key, cmd)
            except LockerError as err:  # that cabinet is busy: its own answer
                out.append((key, err))
        results = await asyncio.gather(*map(asyncio.shield, tasks.values()), return_exceptions=True)
        for key, result in zip(tasks, results, strict=True):
            if isinstance(result, LockerError):
                out.append((key, result))
            elif isinstance(result, dict):
                out.append((key, self.cabinets[key]))
            else:
                raise result  # a bug or a cancellation: not one cabinet's answer
        return sorted(out, key=lambda pair: keys.index(pair[0]))

    def _settle(self, cabinet: Cabinet, **change: Any) -> None:
        """Change a cabinet setting: on disk first, so a restart keeps it.

        Raises ``Unavailable`` when the disk refuses. A disable is the safe way: it
        holds at once even then (a full disk must not keep an over-limit cabinet
        open to customers), and the answer says it is not saved.
        """
        try:
            self._store.save_settings(cabinet.key, **(cabinet.settings() | change))
        except StoreError as exc:
            if change == {"enabled": False}:
                log.warning("settings.disable_held_unsaved", key=cabinet.key, error=str(exc))
                cabinet.enabled = False
                self._unsaved.add(cabinet.key)
                self._resave_later()
                raise Unavailable(
                    f"disabled, but not saved ({exc}): a restart would forget it until the"
                    " disk takes it (it is saved then, unasked)"
                ) from None
            log.error("settings.unsaved", key=cabinet.key, error=str(exc), change=change)
            raise Unavailable(f"cannot save the setting: {exc}") from None
        for name, value in change.items():
            setattr(cabinet, name, value)
        self._unsaved.discard(cabinet.key)  # its whole setting is on disk now

    def _resave_later(self) -> None:
        if self._resave is None:
            self._resave = asyncio.get_running_loop().call_later(RESAVE_S, self._resaved)

    def _resaved(self) -> None:
        """Ask the disk again for each disable held only in memory; again later if it
        still refuses."""
        self._resave = None
        for key in sorted(self._unsaved):
            try:
                self._store.save_settings(key, **self.cabinets[key].settings())
            except Exception as exc:  # StoreError, or a bug: asked again all the same
                if not isinstance(exc, StoreError):
                    log.exception("settings.resave_failed", key=key)
                self._resave_later()
                return
            self._unsaved.discard(key)
            log.info("settings.saved_late", key=key)


def _retrieved(outcome: asyncio.Future[None]) -> None:
    """Every caller raises an open's error; none left over is a "never retrieved"."""
    if not outcome.cancelled():
        outcome.exception()
