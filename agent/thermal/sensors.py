"""What ``locker-agent doctor`` says of the thermal sensors: the 1-wire bus on, each
configured DS18B20 present and answering with a good CRC, with what to do when not.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.config import Config
from drivers.w1 import POWER_ON_C, SensorFault, read_all

_WHAT_TO_DO = {
    "missing": "not listed by the kernel: check its three wires and the 4.7 kohm pull-up",
    "crc": "CRC errors: a long or noisy line; check the 4.7 kohm pull-up and the joints",
    "garbled": "the kernel's file is not a DS18B20 reading: is the w1_therm module loaded?",
    "unreadable": "its file cannot be read",
}


def sensor_lines(config: Config) -> Iterator[tuple[str, str]]:
    """``(level, says)`` per sensor finding, each sensor read once as the agent does.

    ``ok`` once for every sensor that answers, ``FAIL`` for each one that does not,
    ``warn`` for the 85 C power-on value; nothing without thermal units.
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
