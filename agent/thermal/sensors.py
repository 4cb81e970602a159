"""What ``locker-agent doctor`` says of the thermal sensors: the 1-wire bus on, each
configured DS18B20 present and answering with a good CRC, and whether the service may
start a bulk conversion (the kernel's ``therm_bulk_read``, root's 0644 in a ``/sys``
the unit makes read-only: the udev rule and the unit's ``ReadWritePaths=`` from
``systemd/install.sh``), with what to do when not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.config import Config
from drivers.w1 import POWER_ON_C, SensorFault, read_all

UNIT = "locker-agent"
RULE = "/etc/udev/rules.d/61-locker-agent-w1.rules"
ServiceCannot = Callable[[Path, int], str | None]

_WHAT_TO_DO = {
    "missing": "not listed by the kernel: check its three wires and the 4.7 kohm pull-up",
    "crc": "CRC errors: a long or noisy line; check the 4.7 kohm pull-up and the joints",
    "garbled": "the kernel's file is not a DS18B20 reading: is the w1_therm module loaded?",
    "unreadable": "its file cannot be read",
}


def sensor_lines(
    config: Config,
    service_cannot: ServiceCannot | None = None,
    sandbox: Callable[[], list[str] | None] | None = None,
) -> Iterator[tuple[str, str]]:
    """``(level, says)`` per sensor finding, each sensor read once as the agent does.

    ``ok`` once for every sensor that answers, ``FAIL`` for each one that does not,
    ``warn`` for the 85 C power-on value; then the bulk conversion (``bulk_lines``,
    with ``service_cannot`` and ``sandbox``); nothing without thermal units.
    """
    units = [(c.key, c.thermal) for c in config.cabinets if c.thermal is not None]
    if not units:
        return
    w1_dir = config.thermal.w1_dir
    if not w1_dir.is_dir():
        yield (
            "FAIL",
            f"no {w1_dir}: the 1-wire bus is off; add dtoverlay=w1-gpio to"
            " /boot/firmware/config.txt and reboot",
        )
        return
    listed = sorted(p.name for p in w1_dir.glob("28-*"))
    if not listed:
        yield (
            "FAIL",
            f"{w1_dir} lists no DS18B20 (28-...): check the sensors' power, data line and"
            " 4.7 kohm pull-up, and that the w1_therm module is loaded",
        )
        return
    answered: list[float] = []
    readings = read_all(w1_dir, [unit.sensor for _, unit in units])
    for key, unit in units:
        reading = readings[unit.sensor]
        if isinstance(reading, SensorFault):
            says = _WHAT_TO_DO.get(reading.reason, reading.reason)
            if reading.reason == "missing":
                says += f" (the kernel lists: {', '.join(listed) or 'none'})"
            yield "FAIL", f"cabinet {key} sensor {unit.sensor}: {says}"
        elif reading == POWER_ON_C:
            yield "warn", f"cabinet {key} sensor {unit.sensor}: 85.0 C, its power-on value"
        else:
            answered.append(reading)
    if answered:
        yield (
            "ok",
            f"{len(answered)} of {len(units)} sensors answer"
            f" ({min(answered):.1f} C to {max(answered):.1f} C)",
        )
    yield from bulk_lines(w1_dir, len(units), service_cannot, sandbox or unit_write_paths)


def bulk_lines(
    w1_dir: Path,
    sensors: int,
    service_cannot: ServiceCannot | None,
    sandbox: Callable[[], list[str] | None],
) -> Iterator[tuple[str, str]]:
    """``(level, says)`` per 1-wire master: may the service start a bulk conversion there?

    Says which of the two it lacks: the file's group (the udev rule), or the unit's
    write access (``ReadWritePaths=``, as ``sandbox()`` lists it; None: cannot tell).
    """
    slow = f"{sensors} sensors convert one by one, ~{0.75 * sensors:.0f} s a round"
    masters = sorted(w1_dir.glob("w1_bus_master*"))
    triggers = [m / "therm_bulk_read" for m in masters if (m / "therm_bulk_read").exists()]
    if masters and not triggers:
        yield "warn", f"the kernel offers no therm_bulk_read (Linux 5.10 or newer): {slow}"
    paths = sandbox() if triggers else None
    for trigger in triggers:
        master = trigger.parent.name
        missing = []
        user = service_cannot(trigger, os.W_OK) if service_cannot is not None else None
        if user is not None:
            missing.append(
                f"{user} may not write {trigger} (root's): the udev rule {RULE}"
                " (systemd/install.sh), then: sudo udevadm trigger --subsystem-match=w1"
                " --action=add"
            )
        real = Path(os.path.realpath(trigger.parent))
        if paths is not None and not any(_covers(p, real) for p in paths):
            missing.append(
                f"the unit keeps /sys read-only and has no ReadWritePaths=-{real}: the unit"
                " of systemd/install.sh has it, or systemctl edit locker-agent"
            )
        if missing:
            yield (
                "warn",
                f"bulk conversion on {master} refused to the service ({slow}): "
                + ("; ".join(missing)),
            )
        elif paths is None:
            yield "skip", f"bulk conversion on {master}: systemctl cannot tell the unit's paths"
        else:
            yield "ok", f"bulk conversion on {master}: the service may start it"


def _covers(path: str, real: Path) -> bool:
    listed = Path(path.lstrip("-+"))
    return real == listed or real.is_relative_to(listed)


def unit_write_paths() -> list[str] | None:
    """The ``ReadWritePaths=`` of the installed unit, None when systemctl cannot tell."""
    if shutil.which("systemctl") is None:
        return None
    try:
        done = subprocess.run(
            ["systemctl", "show", "-p", "ReadWritePaths", "--value", UNIT],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.split() if done.returncode == 0 else None
