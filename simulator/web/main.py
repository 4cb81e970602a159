"""``locker-agent simulate`` without a scenario: the simulation and its web view until stopped."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.console import LogFile
from simulator.food import SPEED
from simulator.run import LockerKind, Simulation
from simulator.web.disk import SmallDisk
from simulator.web.server import WebView

AUTO_SHUT_S = 5.0  # a simulated person shuts a door this long after it opened


def fitted_to(disk_mb: int) -> Callable[[dict[str, Any]], None]:
    """A config ``adjust`` for storage on a ``disk_mb`` MB disk: an outbox bound that fits
    it (a quarter), as a technician would set it (doctor fails one that cannot fit)."""

    def fit(data: dict[str, Any]) -> None:
        data.setdefault("storage", {})["outbox_max_mb"] = max(1, disk_mb // 4)

    return fit


async def simulate(
    *,
    locker: LockerKind = "kerong",
    api_port: int = 8080,
    cloud_port: int = 8004,
    web_port: int = 8000,
    config_data: dict[str, Any] | None = None,
    small_disk_mb: int | None = None,
    thermal_speed: float = SPEED,
    log_file: LogFile | None = None,
) -> None:
    """Run the simulation (``config_data``: a technician's locker instead of ``locker``)
    and its web view until SIGINT/SIGTERM. ``small_disk_mb``: the agent's storage on a
    tmpfs that small (as root), so fate can fill it. ``thermal_speed``: simulated
    seconds of the cabinets' heat per real second. ``log_file``: where the run logs (the
    banner names it; its screen keeps the banner's last lines in sight). OSError when a
    port is taken; the agent's ConfigError for a config it refuses."""
    disk, why_not = None, None
    if small_disk_mb:
        disk = SmallDisk(Path(tempfile.mkdtemp(prefix="locker-agent-disk-")), small_disk_mb)
        why_not = disk.mount()
    small = disk is not None and disk.mounted
    sim = Simulation(
        locker=locker,
        api_port=api_port,
        cloud_port=cloud_port,
        auto_shut_after_s=AUTO_SHUT_S,
        config_data=config_data,
        storage_dir=disk.path if small and disk is not None else None,
        thermal_speed=thermal_speed,
        adjust=fitted_to(small_disk_mb) if small and small_disk_mb else None,
    )
    view = WebView(sim, port=web_port, disk=disk, disk_why_not=why_not)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
        await view.start()
        notes = [f"  small disk   none: {why_not}"] if why_not is not None else []
        path = log_file.path if log_file is not None else None
        print(sim.banner(view.url, path, notes), flush=True)
        if log_file is not None and log_file.screen is not None:
            header = (
                f"locker-agent simulator ({sim.locker} locker), still running (Ctrl-C stops it):"
            )
            log_file.screen.shown([header, *sim.where(view.url, path)])
        await stop.wait()
    finally:
        await view.close()
        await sim.close()
        if disk is not None:
            disk.unmount()
            shutil.rmtree(disk.path, ignore_errors=True)
