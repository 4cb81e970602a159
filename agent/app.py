"""The agent: builds every part from the config, starts them in order, stops them in reverse."""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path
from typing import Any

import structlog

from agent import __version__, systemd
from agent import log as log_setup
from agent.api.metrics import Metrics
from agent.api.server import LocalApi
from agent.cloud.channel import CommandChannel
from agent.cloud.key import ApiKey
from agent.cloud.uplink import Uplink
from agent.codes.service import PickupCodes
from agent.config import Config, ConfigError, GpioDoorWiring, KerongDoorWiring, load_config
from agent.config.reload import differences
from agent.config.warnings import warnings
from agent.field.verdict import verdict
from agent.hardware.bridge import Hardware
from agent.locker.cabinet import Cabinet
from agent.locker.commands import CabinetCommand
from agent.locker.door import Door
from agent.locker.errors import LockerError
from agent.locker.locker import Locker
from agent.storage.outbox import OUTBOX_FILE, Outbox
from agent.storage.store import STATE_FILE, StateStore
from agent.thermal import clock
from agent.thermal.records import RECORDS_FILE, Records
from agent.thermal.service import Thermal

log = structlog.get_logger(__name__)

STOP_DRAIN_S = 2.5  # of the 5 s a stop may take, for the commands in flight
POLL_STALL_S = 30.0  # a bus whose poll cycle stalls this long gets no watchdog pet
STARTUP_WAIT_S = 3.0  # how long the start-up snapshot waits for every board's first answer


def _door(wiring: KerongDoorWiring | GpioDoorWiring | None) -> Door | None:
    if wiring is None:
        return None
    if isinstance(wiring, KerongDoorWiring):
        board = f"bus {wiring.bus} board {wiring.board}"
        return Door(wired=f"{board} channel {wiring.channel}", answers=board)
    bus = f"bus {wiring.bus}"
    return Door(motorised=wiring.motorised, wired=bus, answers=bus)


def _served(config: Config) -> dict[tuple[str, int], tuple[int, ...]]:
    """(bus, board) -> the cabinets whose doors a lock board serves."""
    served: dict[tuple[str, int], set[int]] = {}
    for key, _, wiring in config.door_refs():
        if isinstance(wiring, KerongDoorWiring):
            served.setdefault((wiring.bus, wiring.board), set()).add(key)
    return {where: tuple(sorted(keys)) for where, keys in served.items()}


class Agent:
    """``gpio_factory``: a gpiozero pin factory to use instead of the configured one
    (the simulator drives mock pins from outside)."""

    def __init__(self, config: Config, *, gpio_factory: Any | None = None) -> None:
        self.config = config
        storage = config.storage
        self.outbox = Outbox(
            storage.dir / OUTBOX_FILE,
            max_rows=storage.outbox_max_rows,
            max_bytes=storage.outbox_max_mb * 1024 * 1024,
        )
        cabinets = []
        for c in config.cabinets:
            front = _door(c.front)
            assert front is not None
            cabinet = Cabinet(c.key, c.size, front=front, rear=_door(c.rear))
            if c.thermal is not None:
                cabinet.thermal_modes = c.thermal.modes()
            cabinets.append(cabinet)
        self.store = StateStore(storage.dir / STATE_FILE)
        locker = config.locker
        self.locker = Locker(
            cabinets,
            self.outbox,
            self.store,
            confirm_s=locker.confirm_s,
            jam_retry_s=locker.jam_retry_s,
            timer_s=locker.timer_s,
            left_open_s=locker.left_open_s,
            announce_s=locker.announce_s,
            health_interval_s=locker.health_interval_s,
            boards=_served(config),
        )
        for cabinet in self.locker.cabinets.values():  # saved, but the hardware is gone
            if cabinet.thermal_mode not in cabinet.thermal_modes:
                log.warning(
                    "thermal.saved_mode_dropped", key=cabinet.key, mode=cabinet.thermal_mode
                )
                cabinet.thermal_mode = "ambient"
        for notice in (self.outbox.notice, self.store.notice):
            if notice:  # a damaged file found at start
                self.locker.storage_replaced(notice)
        self.outbox.on_replaced = self.locker.storage_replaced
        self.hardware = Hardware(config, self.locker, gpio_factory=gpio_factory)
        self.codes = PickupCodes(config, self.locker, clock.synchronized)
        self.thermal = self._thermal(config)
        self.metrics = Metrics()
        self.locker.journal.observe(self.metrics.observe)
        self.locker.on_command = self.metrics.command
        self.codes.pickup.on_outcome = self.metrics.pickup
        ca_file = config.cloud.ca_file
        cloud_tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        # One key for both links: a key file fixed while the cloud refuses is used by both.
        self.api_key = ApiKey(config.cloud.api_key, config.cloud.api_key_file)
        self.uplink = Uplink(
            config.cloud.url,
            self.api_key,
            self.outbox,
            self.locker.snapshot,
            heartbeat_s=config.cloud.heartbeat_s,
            timeout_s=config.cloud.timeout_s,
            on_link=self.locker.set_link,
            ssl_context=cloud_tls,
            on_answer=self.metrics.uplink,
        )
        self.api = LocalApi(
            self.locker,
            config.api.token,
            self.problems,
            config.api.host,
            config.api.port,
            details=self._details,
            allowed_hosts=config.api.allowed_hosts,
            max_connections=config.api.max_connections,
            head_timeout_s=config.api.head_timeout_s,
            body_timeout_s=config.api.body_timeout_s,
            metrics=self.metrics.render,
            thermal=self.thermal,
            socket=config.api_socket,  # the technicians' commands: peer credentials, no token
        )
        self.channel = (
            CommandChannel(
                config.cloud.commands_url,
                self.api_key,
                self.locker,
                ssl_context=cloud_tls,
                codes=self.codes.provision,
            )
            if config.cloud.commands_url
            else None
        )
        self.links = {"uplink": self.uplink.health}  # for /metrics
        if self.channel is not None:
            self.links["commands"] = self.channel.health
        self._watchdog = systemd.Watchdog(self.status_line, self._stuck)
        self.metrics.bind(self)

    def _thermal(self, config: Config) -> Thermal | None:
        """Thermal control, when a cabinet has a thermal unit."""
        wirings = {c.key: c.thermal for c in config.cabinets if c.thermal is not None}
        if not wirings:
            return None
        records = Records(
            config.storage.dir / RECORDS_FILE,
            retention_days=config.thermal.retention_days,
            on_replaced=self.locker.storage_replaced,  # the cloud hears it, /healthz says it
        )
        if records.notice:  # damaged at start: food clocks lost, said loudly
            self.locker.storage_replaced(records.notice)

        async def disable(key: int, reason: str) -> None:
            try:
                await self.locker.execute(key, CabinetCommand(command="disable", reason=reason))
            except LockerError as err:
                if self.locker.cabinets[key].enabled:
                    log.error("thermal.disable_failed", key=key, error=str(err))
                else:  # held in memory, the disk refusing it: /healthz says so
                    log.warning("thermal.disabled_unsaved", key=key, error=str(err))

        return Thermal(
            config.thermal,
            self.locker.cabinets,
            wirings,
            self.hardware.thermal,
            records,
            self.locker.journal.publish,
            disable=disable,
        )

    def problems(self) -> list[str]:
        """Every part's health lines, for /healthz (empty: healthy)."""
        channel = self.channel.problems() if self.channel else []
        store = [self.store.notice] if self.store.in_memory and self.store.notice else []
        thermal = self.thermal.problems() if self.thermal else []
        ended = [why] if (why := self._ended()) else []
        return (
            ended
            + self.hardware.problems()
            + self.codes.problems()
            + thermal
            + self.uplink.problems()
            + channel
            + self.outbox.problems()
            + self.locker.journal.problems()
            + self.locker.problems()
            + store
        )

    def _details(self) -> dict[str, Any]:
        """Figures for /healthz beside the reasons: the version, active alarms, the outbox,
        and storage notices."""
        notices = [n for n in (self.outbox.notice, self.store.notice) if n]
        alarms = [
            {"key": c.key, "type": alarm, "side": side}
            for c in self.locker.cabinets.values()
            for alarm, side in sorted(c.alarms)
        ]
        return {
            "version": __version__,
            "alarms": alarms,
            "outbox": self.outbox.stats(),
            "notices": notices,
            "pickup": self.codes.details(),
        }

    async def start(self) -> None:
        """Start every part in order; READY=1 once the start-up snapshot is queued.

        Raises OSError when the API address is taken (``SocketUnavailable`` for the
        technicians' socket).
        """
        log.info("agent.starting", version=__version__, cabinets=len(self.locker.cabinets))
        for warning in warnings(self.config):
            log.warning("config.warning", warning=warning)
        await self.api.start()
        await self.hardware.start()
        self.locker.attach(self.hardware)
        if not await self.hardware.wait_ready(STARTUP_WAIT_S):
            log.warning("agent.boards_not_ready", problems=self.hardware.problems())
        self.locker.report_startup()
        await self.codes.start()
        if self.thermal is not None:
            await self.thermal.start()
        await self.uplink.start()
        if self.channel is not None:
            await self.channel.start()
        self.api.ready = True
        self._watchdog.ready()
        log.info("agent.ready")

    async def close(self) -> None:
        """Stop every part in reverse order: outputs off, outbox and store closed."""
        await self._watchdog.close()
        self.api.ready = False
        # New commands are refused; those in flight finish or are answered with what
        # they did, before the edges that carry the answers close.
        await self.locker.drain(STOP_DRAIN_S)
        await self.codes.close()
        if self.channel is not None:
            await self.channel.close()
        await self.api.close()
        if self.thermal is not None:  # it disables cabinets through the locker: first
            await self.thermal.close()
        await self.locker.close()
        await self.hardware.close()
        await self.uplink.close()
        self.outbox.close()
        self.store.close()
        log.info("agent.stopped")

    def reload(self, path: str) -> bool:
        """SIGHUP: read ``path`` again; apply the live timings, name what needs a
        restart (``agent.config.reload``); an invalid file is refused. True when valid."""
        try:
            new = load_config(path)
        except ConfigError as err:
            problems = err.problems
        else:  # what check-config and run refuse (a placeholder left) is refused here too
            problems = verdict(new, Path(path), on_gpio_machine=True).problem_lines()
        if problems:
            for problem in problems:
                log.error("config.reload_refused", file=path, problem=problem)
            return False
        live, frozen = differences(self.config, new)
        timings = new.locker
        self.locker.actions.retime(
            confirm_s=timings.confirm_s,
            jam_retry_s=timings.jam_retry_s,
            timer_s=timings.timer_s,
            announce_s=timings.announce_s,
        )
        self.locker.supervisor.left_open_s = timings.left_open_s
        self.locker.health.min_interval_s = timings.health_interval_s
        self.hardware.gap.gap_s = timings.min_pulse_gap_s
        self.uplink.heartbeat_s = new.cloud.heartbeat_s
        log.info("config.reloaded", file=path, changed=live)
        if frozen:
            log.warning("config.restart_needed", file=path, keys=frozen)
        heartbeat = {"heartbeat_s": new.cloud.heartbeat_s}
        self.config = self.config.model_copy(
            update={"locker": timings, "cloud": self.config.cloud.model_copy(update=heartbeat)}
        )
        return True

    def status_line(self) -> str:
        """One line for ``systemctl status``: boards, cabinets, outbox, cloud, or what is wrong.

        ``"3/3 boards, 48 cabinets, outbox 0, cloud ok"``, or ``"board 2 silent"``,
        ``"cloud unreachable 4 min"``, ``"command channel unstable: dropped 4 times ..."``.
        """
        answering, total = self.hardware.boards()
        parts = [f"{answering}/{total} boards"] if total else []
        parts.append(f"{len(self.locker.cabinets)} cabinets")
        parts.append(f"outbox {self.outbox.stats()['pending']}")
        parts.extend(self.hardware.port_problems())  # its path and why, as /healthz says
        problem = self.uplink.problems()
        parts.append(f"cloud: {problem[0]}" if problem else "cloud ok")
        if channel := self.channel.problems() if self.channel else []:
            parts.append(channel[0])
        if self.locker.journal.waiting:
            parts.append(f"{self.locker.journal.waiting} changes waiting for the disk")
        for lines in (self.locker.problems(), self.thermal.problems() if self.thermal else []):
            if lines:  # a disable held only in memory; the thermal units
                parts.append(lines[0] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""))
        return ", ".join(parts)

    def _stuck(self) -> str | None:
        """What stopped turning, for the watchdog; None while every loop turns: each
        bus polls, the thermal loop completes rounds, the cloud's loops run.

        A silent board or an unplugged adapter does not count: a restart mends
        neither, and the bus reconnects by itself.
        """
        if not self.hardware.polling(stall_s=POLL_STALL_S):
            return "a bus stopped polling"
        if self.thermal is not None and (why := self.thermal.stalled()):
            return why
        return self._ended()

    def _ended(self) -> str | None:
        """A loop of the cloud link that ended for good (a bug escaped it)."""
        channel = self.channel.ended() if self.channel is not None else None
        return self.uplink.ended() or channel


async def run(config: Config, stop: asyncio.Event | None = None, path: str | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then stop cleanly; with ``path``, SIGHUP
    reads that file again (``agent.config.reload``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    log_setup.install_loop_handler(loop)  # asyncio's errors: masked, rate-limited
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(config)
    if path is not None:
        loop.add_signal_handler(signal.SIGHUP, agent.reload, path)
    try:
        await agent.start()
        await stop.wait()
    finally:
        await agent.close()
