"""``doctor``'s lines for the pickup-code readers: present, openable by the service user,
not held by another process (a serial reader is opened once, nothing read from it).

A serial scanner needs the group ``dialout`` (its ``/dev/ttyACM*`` or ``/dev/ttyUSB*``);
a scanner that types (evdev) needs ``input`` and the optional ``evdev`` module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import serial

from agent.config import Config
from agent.field import access, busscan, probes
from drivers.readers import SerialReaderConfig

Level = str
Found = tuple[Level, str, str]  # (ok / FAIL / warn / skip, what, says)
INPUT_BY_ID = Path("/dev/input/by-id")


def reader_lines(config: Config, cannot: Callable[[Path, int], str | None]) -> Iterator[Found]:
    """One or more lines per ``[[readers]]`` entry; ``cannot(path, mode)`` names the
    service user when it may not open ``path`` so (``access.service_cannot``)."""
    for i, reader in enumerate(config.readers):
        what = f"reader {reader.name}"
        if isinstance(reader, SerialReaderConfig):
            yield from _serial(i, what, reader, cannot)
        else:
            yield from _keyboard(i, what, reader.device, cannot)


def _serial(
    i: int, what: str, reader: SerialReaderConfig, cannot: Callable[[Path, int], str | None]
) -> Iterator[Found]:
    port = reader.port
    if "://" in port:
        yield "skip", what, f"{port}: only device paths are checked"
        return
    if not os.path.exists(port):
        found = ", ".join(probes.by_id()) or "none plugged in"
        yield (
            "FAIL",
            what,
            (
                f"readers[{i}].port {port} does not exist: ls -l /dev/serial/by-id/ lists the"
                f" serial devices plugged in (now: {found})"
            ),
        )
        return
    refused = cannot(Path(port), os.R_OK | os.W_OK)  # the service user's, not ours
    if refused:
        yield "FAIL", what, f"{refused} may not open {port}: sudo usermod -aG dialout {refused}"
    try:
        busscan.open_port(port, reader.baud).close()
    except (serial.SerialException, OSError) as err:
        held = probes.holders(port)
        if any(probes.is_agent(pid) for pid, _ in held):
            yield "ok", what, f"{port} is open in the running agent (status says how)"
        elif held:
            yield "FAIL", what, f"{port} is held by another process: {probes.named(held)}"
        else:
            yield "FAIL", what, f"cannot open {port}: {err}"
        return
    if not refused:  # opened by doctor itself; "ok" would contradict the FAIL above
        yield "ok", what, f"{port} opens at {reader.baud} baud, held by no other process"


def _keyboard(
    i: int, what: str, device: str, cannot: Callable[[Path, int], str | None]
) -> Iterator[Found]:
    if not os.path.exists(device):
        found = (
            ", ".join(sorted(p.name for p in INPUT_BY_ID.glob("*"))) if INPUT_BY_ID.is_dir() else ""
        )
        yield (
            "FAIL",
            what,
            (
                f"readers[{i}].device {device} does not exist: ls -l /dev/input/by-id/ lists the"
                f" keyboards plugged in (now: {found or 'none'})"
            ),
        )
        return
    refused = cannot(Path(device), os.R_OK)
    if refused:
        yield "FAIL", what, f"{refused} may not read {device}: sudo usermod -aG input {refused}"
    if not access.importable("evdev"):
        yield "FAIL", what, "the evdev module is missing: pip install 'locker-agent[scanner]'"
        return
    if not refused:
        yield "ok", what, f"{device} is there and readable; the agent grabs it while it runs"
