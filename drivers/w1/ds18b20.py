"""DS18B20 temperature sensors read from the Linux kernel's 1-wire files.

The kernel's ``w1_therm`` driver lists each sensor as a directory under the
1-wire devices directory (``/sys/bus/w1/devices/28-00000a1b2c3d/``); reading its
``w1_slave`` file starts a conversion (about 750 ms at 12 bits, so the read
blocks: call it with ``asyncio.to_thread``) and answers two lines, the
scratchpad's nine bytes on each::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

The first ends ``YES`` when the kernel found the CRC good, ``NO`` otherwise; the
second ends with the temperature in millidegrees Celsius. 85.000 C is the value
a DS18B20 holds from power-up until its first conversion (``POWER_ON_C``): this
module returns it like any other reading, :mod:`drivers.w1.trust` judges it.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, get_args

import structlog

POWER_ON_C: float = 85.0
"""What a DS18B20 reads before its first conversion (datasheet: power-up state)."""

MIN_C = -55.0
MAX_C = 125.0
"""The DS18B20's measuring range, degrees C (datasheet): a value outside is not a reading."""

SENSOR_ID_PATTERN = r"^28-[0-9a-f]{12}$"
"""A DS18B20 as the kernel names it: family code 28, then the 48-bit serial in lowercase hex."""

FaultReason = Literal["missing", "crc", "garbled", "unreadable"]

_FAULT_REASONS: tuple[str, ...] = get_args(FaultReason)
_SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)
_BYTES = r"((?:[0-9a-f]{2} ){9})"
_CRC_LINE = re.compile(_BYTES + r": crc=[0-9a-f]{2} (YES|NO)")
_TEMP_LINE = re.compile(_BYTES + r"t=(-?[0-9]+)")
_READ_LIMIT = 1024  # the kernel's file is 80 bytes; anything much longer is not it


log = structlog.get_logger(__name__)


class SensorFault(Exception):
    """A sensor that gave no temperature, and why.

    ``reason``: ``"missing"`` (no ``<id>/w1_slave``: not on the bus, or unplugged),
    ``"crc"`` (the kernel's CRC check said ``NO``), ``"garbled"`` (not the kernel's
    two lines, no ``t=``, or an impossible scratchpad or temperature),
    ``"unreadable"`` (any other ``OSError``). ``detail``: free text for the log.
    Raises ``ValueError`` for any other reason.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in _FAULT_REASONS:
            raise ValueError(f"a sensor fault is one of {_FAULT_REASONS}, not {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_w1_slave(text: str) -> float:
    """The temperature in degrees C (``t=`` / 1000) of a ``w1_slave`` file's text.

    Raises ``SensorFault("crc")`` when the first line ends ``NO``, and
    ``SensorFault("garbled")`` when the text is not the kernel's two lines, the
    scratchpad is all zeros (a sensor lost in mid-read: its CRC is a "good" 00),
    or the temperature lies outside the DS18B20's range (-55 to 125 C).
    """
    lines = text.splitlines()
    if len(lines) != 2:
        raise SensorFault("garbled", f"{len(lines)} lines, not 2")
    crc_line = _CRC_LINE.fullmatch(lines[0].strip())
    if crc_line is None:
        raise SensorFault("garbled", f"first line {lines[0][:60]!r}")
    if crc_line[2] == "NO":
        raise SensorFault("crc", lines[0].strip())
    temp_line = _TEMP_LINE.fullmatch(lines[1].strip())
    if temp_line is None:
        raise SensorFault("garbled", f"second line {lines[1][:60]!r}")
    if temp_line[1] != crc_line[1]:
        raise SensorFault("garbled", "the two lines show different scratchpads")
    if set(crc_line[1].split()) == {"00"}:
        raise SensorFault("garbled", "an all-zero scratchpad: the sensor was lost in mid-read")
    celsius = int(temp_line[2]) / 1000
    if not MIN_C <= celsius <= MAX_C:
        raise SensorFault("garbled", f"{celsius} C is outside the DS18B20's range")
    return celsius


def check_sensor_id(sensor: str) -> str:
    """``sensor`` unchanged when it matches ``SENSOR_ID_PATTERN``.

    Raises ``ValueError`` otherwise, saying what the id should look like (and the
    lowercase spelling when only the case is wrong).
    """
    if _SENSOR_ID_RE.fullmatch(sensor):
        return sensor
    if _SENSOR_ID_RE.fullmatch(sensor.lower()):
        raise ValueError(f"write it in lowercase, as the kernel lists it: {sensor.lower()!r}")
    if re.fullmatch(r"[0-9a-fA-F]{2}-[0-9a-fA-F]{12}", sensor):
        raise ValueError(
            f"family {sensor[:2]} is not a DS18B20 (family 28); "
            "see the directories under /sys/bus/w1/devices"
        )
    raise ValueError(
        "a DS18B20 id is '28-' and 12 lowercase hex digits, as listed under "
        "/sys/bus/w1/devices (e.g. '28-00000a1b2c3d')"
    )


def read_ds18b20(w1_dir: Path, sensor: str) -> float:
    """Read ``<w1_dir>/<sensor>/w1_slave`` once: degrees C. Blocking (up to ~1 s).

    Raises ``SensorFault`` (see its reasons; a missing file or directory is
    ``"missing"``), and ``ValueError`` when ``sensor`` is not a DS18B20 id (so no
    configured name can reach outside ``w1_dir``).
    """
    check_sensor_id(sensor)
    path = Path(w1_dir) / sensor / "w1_slave"
    try:
        with path.open("rb") as file:
            data = file.read(_READ_LIMIT)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SensorFault("missing", str(path)) from exc
    except OSError as exc:
        # ENODEV/ENXIO: the kernel dropped the device between listing and reading it.
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise SensorFault("missing", f"{path}: {exc.strerror}") from exc
        raise SensorFault("unreadable", f"{path}: {exc.strerror or exc}") from exc
    if len(data) >= _READ_LIMIT:
        raise SensorFault("garbled", f"{path}: longer than {_READ_LIMIT} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SensorFault("garbled", f"{path}: not ASCII") from exc
    return parse_w1_slave(text)


_BULK_HINTS = {
    errno.EROFS: "/sys is read-only to the service: the unit's ReadWritePaths= must name"
    " the master (systemd/locker-agent.service)",
    errno.EACCES: "the file is root's: the udev rule 61-locker-agent-w1.rules"
    " (systemd/install.sh) gives it to the group locker-agent",
    errno.EPERM: "the file is root's: the udev rule 61-locker-agent-w1.rules"
    " (systemd/install.sh) gives it to the group locker-agent",
}
_refused: set[str] = set()  # masters whose refusal was said (once a process, not a round)


def start_conversions(w1_dir: Path) -> bool:
    """Ask every 1-wire bus master to convert on all its sensors at once (the kernel's
    ``w1_bus_master*/therm_bulk_read``, Linux 5.10+): each ``w1_slave`` read after it
    returns at once instead of converting for ~0.75 s, so 16 sensors take about 0.8 s
    instead of 12. Blocking; True when a master took it, False when none can (older
    kernels, or a test directory): reads then convert one by one, as before. A refusal
    is logged once per master with what to do (a read-only /sys, or root's file)."""
    started = False
    for trigger in sorted(Path(w1_dir).glob("w1_bus_master*/therm_bulk_read")):
        try:
            trigger.write_text("trigger\n")
        except OSError as exc:  # read-only /sys, or not root: one by one, and said
            if str(trigger) not in _refused:
                _refused.add(str(trigger))
                hint = _BULK_HINTS.get(exc.errno or 0, "")
                log.warning("w1.bulk_refused", master=trigger.parent.name, error=str(exc), fix=hint)
            continue
        started = True
    return started


def read_all(w1_dir: Path, sensors: Iterable[str]) -> dict[str, float | SensorFault]:
    """Every sensor's reading (degrees C) or the fault it raised, after one bulk
    conversion where the kernel offers it. Blocking: use ``asyncio.to_thread``."""
    start_conversions(w1_dir)
    out: dict[str, float | SensorFault] = {}
    for sensor in sensors:
        try:
            out[sensor] = read_ds18b20(w1_dir, sensor)
        except SensorFault as fault:
            out[sensor] = fault
        except ValueError as exc:  # not a DS18B20 id: the config would have said
            out[sensor] = SensorFault("unreadable", str(exc))
    return out
