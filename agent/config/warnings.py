"""Warnings: a config that is valid and starts, but that a careful technician would not ship.

``check-config`` prints them (``warning: key.path: ...``) and still exits 0; ``run``
logs them at start (a placeholder left from an example is a problem instead:
``agent/config/placeholders.py``). They name the key and say what to do, never a secret:

- a plain ``http://`` or ``ws://`` cloud URL: the api-key, which opens every door
  the cloud knows, and every door state cross the network in clear;
- a secret file that every user of the controller may read (it should be
  ``root:locker-agent`` mode 0640);
- a thermal output on the 1-wire data pin, or a thermal cabinet on GPIO with no item
  sensor (its food clock could never run);
- a documentation host or address (``lockers.example.com``, ``192.0.2.10``): reaches
  nothing (``placeholders.documentation_hosts``).
"""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urlsplit

from agent.config.placeholders import documentation_hosts
from agent.config.schema import Config
from agent.thermal.bands import FOOD_CODES
from drivers.gpio.config import GpioDoorWiring


def warnings(config: Config) -> list[str]:
    """One ``key.path: what is wrong and what to do`` line per warning."""
    out: list[str] = []
    for key, url, secure in (
        ("cloud.url", config.cloud.url, "https"),
        ("cloud.commands_url", config.cloud.commands_url, "wss"),
    ):
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.scheme != secure:
            out.append(
                f"{key}: plain {parts.scheme}://: the api-key and every door state cross the"
                f" network unencrypted; use {secure}://"
            )
    for key, file in (
        ("cloud.api_key", config.cloud.api_key_file),
        ("api.token", config.api.token_file),
    ):
        if file is not None and (problem := _readable_by_others(file)):
            out.append(f"{key}_file: {problem}")
    return out + _thermal(config) + documentation_hosts(config)


W1_DEFAULT_PIN = 4  # dtoverlay=w1-gpio's data pin unless the overlay says gpiopin=


def _thermal(config: Config) -> list[str]:
    """A thermal output on the 1-wire pin; a food clock with no way to tell occupancy."""
    units = [(i, c) for i, c in enumerate(config.cabinets) if c.thermal is not None]
    if not units:
        return []
    out = []
    pins = [(f"cabinets[{i}].thermal.{n}", getattr(c.thermal, n)) for i, c in units
            for n in ("heater", "cooler")]  # fmt: skip
    pins += [
        (f"thermal.compressors[{i}].pin", c.pin) for i, c in enumerate(config.thermal.compressors)
    ]
    for key, pin in pins:
        if pin is not None and pin.number == W1_DEFAULT_PIN:
            out.append(
                f"{key}: GPIO{W1_DEFAULT_PIN} is the 1-wire sensors' data pin (dtoverlay=w1-gpio):"
                " driving it loses every sensor; use another pin, or move the overlay's gpiopin="
            )
    thermal = config.thermal
    code = FOOD_CODES[thermal.food_code]
    lines, strict = thermal.alarm_lines(), code.lines
    looser = []
    if lines.hot_min_c < strict.hot_min_c:
        looser.append(f"hot food at {lines.hot_min_c:g} C")
    if lines.chill_max_c > strict.chill_max_c:
        looser.append(f"chilled food at {lines.chill_max_c:g} C")
    if lines.frozen_max_c > strict.frozen_max_c:
        looser.append(f"frozen food at {lines.frozen_max_c:g} C")
    if thermal.time_limit_s() > code.time_limit_s:
        looser.append(f"{thermal.time_limit_s() / 3600:g} h out of temperature")
    if looser:
        out.append(
            f"thermal: {', '.join(looser)} is less strict than the {thermal.food_code} food"
            " code: only with a food safety officer's written procedure"
        )
    if thermal.converge_s >= thermal.sensor_stuck_s:
        out.append(
            "thermal.converge_s: not shorter than sensor_stuck_s: a dead compressor may be"
            " taken for a stuck sensor (ADR 0007)"
        )
    if not thermal.assume_occupied:
        for i, cabinet in units:
            if cabinet.item is None and isinstance(cabinet.front, GpioDoorWiring):
                out.append(
                    f"cabinets[{i}].thermal: no item sensor, so time out of temperature is"
                    " never counted; add item = {...}, or [thermal] assume_occupied = true"
                )
    return out


def _readable_by_others(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # unreadable files are errors of their own, reported at load
    if mode & stat.S_IROTH:
        return (
            f"{path} is readable by every user of this controller: chmod 640 and"
            " chown root:locker-agent"
        )
    return None
