"""What is a problem in a loaded config, decided once for ``check-config``, ``doctor`` and ``run``.

A problem stops the locker: ``check-config`` exits 78 with one line each, ``run``
refuses to start (78, the unit does not restart it), ``doctor`` says FAIL. A warning
is printed (``check-config``), logged (``run``) or said ``warn`` (``doctor``), and
the config still starts. ``judge`` adds the dry build of the drivers
(``agent/hardware/dry.py``) for the commands that do not build them for real
(``check-config``, ``doctor``); ``Verdict.headline`` is the one line that calls a
config valid, and only a config without a problem (ADR 0020).

``port_lines`` looks at each serial port without opening it (a path that is not
there, that the service user may not open, or that another process holds): always a
warning, since the adapter may be plugged in after the check.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Config, KerongBusConfig
from agent.config.placeholders import (
    example_host,
    is_placeholder,
    placeholders,
)
from agent.config.warnings import warnings
from agent.field import access, probes
from agent.hardware.dry import build_dry
from agent.hardware.ports import ADVICE, HELD, NO_SUCH_FILE, PERMISSION


@dataclass(frozen=True, slots=True)
class Verdict:
    """``problems`` and ``warnings``: ``(what, line)`` pairs; ``what`` is the part
    (``config``, ``secrets``, ``gpio``) doctor files the line under."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def problem_lines(self) -> list[str]:
        """The problems' lines alone, as ``check-config`` and ``run`` print them."""
        return [line for _, line in self.problems]

    def warning_lines(self) -> list[str]:
        """The warnings' lines alone."""
        return [line for _, line in self.warnings]

    @property
    def valid(self) -> bool:
        """Whether the config may start: it has no problem (warnings allowed)."""
        return not self.problems

    def headline(self, path: Path, config: Config) -> str:
        """``PATH is valid (48 cabinets)`` only without a problem; else how many
        problems stop it. The first line ``doctor`` prints about the config."""
        if self.valid:
            count = len(config.cabinets)
            notes = f"; {_count(len(self.warnings), 'warning')} below" if self.warnings else ""
            return f"{path} is valid ({_count(count, 'cabinet')}{notes})"
        return (
            f"{path} is not valid here: {_count(len(self.problems), 'problem')}, each below:"
            " run refuses to start on this machine until they are fixed"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def judge(config: Config, path: Path, *, on_gpio_machine: bool) -> Verdict:
    """``verdict`` with the dry build's problems first (what a driver would refuse at
    ``run``): what ``check-config`` and ``doctor`` say of ``config``.

    A dry build that raises is one problem (``cannot build the drivers (Error)``), never
    a traceback. Runs its own event loop: not for a caller inside one (``run``'s reload
    asks ``verdict``).
    """
    try:
        built = asyncio.run(build_dry(config))
    except Exception as err:  # a bug must still end as a problem line, not a traceback
        built = [f"cannot build the drivers ({type(err).__name__})"]
    found = verdict(config, path, on_gpio_machine=on_gpio_machine)
    return Verdict([("config", line) for line in built] + found.problems, found.warnings)


def verdict(config: Config, path: Path, *, on_gpio_machine: bool) -> Verdict:
    """The problems and warnings of ``config`` (loaded from ``path``).

    Problems: each placeholder left (``agent/config/placeholders.py``), a secret file
    the service user cannot read, a pin factory's module missing on a machine with
    GPIO (``on_gpio_machine``; ``run`` always is, it imports the module).
    """
    factory_problems, factory_warnings = access.pin_factory_lines(
        config, on_gpio_machine=on_gpio_machine
    )
    problems = [("config", line) for line in placeholders(config)]
    problems += [("secrets", line) for line in access.unreadable_by_service(config, path)]
    problems += [("gpio", line) for line in factory_problems]
    found = [("config", line) for line in warnings(config)]
    found += [("gpio", line) for line in factory_warnings]
    return Verdict(problems, found)


def say_problems(path: str | Path, problems: Iterable[str]) -> None:
    """Each problem as one line on stderr, ``PATH: key.path: what is wrong``: how
    ``check-config``, ``run`` and the technician's commands say them."""
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)


def is_left(value: str) -> bool:
    """Whether ``value`` is still a placeholder (an example's mark: a problem) or a
    documentation host such as ``lockers.example.com`` (a warning): never a host, port
    or path for ``doctor`` to probe."""
    return is_placeholder(value) or example_host(value) is not None


def port_lines(config: Config) -> list[str]:
    """``buses[i].port: PATH: REASON: what to do`` for each local serial port that
    cannot be opened now; URLs (``socket://``) and placeholders are left out."""
    out = []
    for i, bus in enumerate(config.buses):
        if not isinstance(bus, KerongBusConfig) or "://" in bus.port or is_left(bus.port):
            continue
        if (why := port_reason(bus.port)) is not None:
            out.append(f"buses[{i}].port: {bus.port}: {why}")
    return out


def port_reason(port: str) -> str | None:
    """Why the service could not open ``port`` now (no open is tried), or None."""
    if not os.path.exists(port):
        return f"{NO_SUCH_FILE}: {ADVICE[NO_SUCH_FILE]} (now: {probes.plugged_now()})"
    if access.service_cannot(Path(port), os.R_OK | os.W_OK):
        return f"{PERMISSION} to the service user: {ADVICE[PERMISSION]}"
    # The service holding its own port is as it should be.
    others = [(pid, cmd) for pid, cmd in probes.holders(port) if not probes.is_agent(pid)]
    if others:
        return f"{HELD}: {probes.named(others)}: stop it before the agent starts"
    return None
