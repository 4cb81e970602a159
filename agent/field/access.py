"""What the service can reach on this machine, checked before it runs.

- The service runs as the user ``locker-agent`` (``SERVICE_USER``), so a secret file
  that only root may read (``chmod 600``, owner root) passes ``check-config`` run as
  root and then fails the service with "Permission denied". ``unreadable_by_service``
  tells, by the files' modes and the user's groups, which files it cannot read.
- A GPIO bus's ``pin_factory`` names a Python module (``lgpio`` on a Raspberry Pi 5)
  that the dry build of ``check-config`` never imports (it uses mock pins), so a
  missing module used to pass the check and fail ``run``. ``pin_factory_lines`` says
  so, naming ``buses[i].pin_factory``.

Mode bits only: ACLs and capabilities are not read (install.sh sets none).
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config, GpioBusConfig

SERVICE_USER = "locker-agent"
"""The user the unit runs the agent as (``systemd/locker-agent.service``)."""

FACTORY_MODULES = {"lgpio": ("lgpio", "lgpio"), "rpigpio": ("RPi.GPIO", "RPi.GPIO")}
"""``pin_factory`` -> (the module it needs beyond gpiozero, the package pip installs)."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the kernel checks file access: ``uid`` and every group id (``gids``)."""

    name: str
    uid: int
    gids: frozenset[int]


def account(name: str) -> Account | None:
    """The user ``name`` with its primary and supplementary groups; None when there is
    no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def may(path: Path, who: Account, want: int) -> bool:
    """Whether ``who`` may ``want`` (``os.R_OK``, ``os.W_OK``, or both) ``path``, by mode bits.

    Every directory on the way must be searchable; symlinks are followed. Raises
    ``OSError`` when a component cannot be looked at.
    """
    target = Path(os.path.realpath(path))
    for directory in reversed(target.parents):
        if not _allowed(directory.stat(), who, os.X_OK):
            return False
    return _allowed(target.stat(), who, want)


def _allowed(st: os.stat_result, who: Account, want: int) -> bool:
    if who.uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == who.uid:
        bits = (mode >> 6) & 7
    elif st.st_gid in who.gids:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def service_cannot(path: Path, want: int) -> str | None:
    """The service user's name when it may not ``want`` (``os.R_OK``...) ``path``; None
    when it may, or when this cannot be told (not root, no such user, no such path)."""
    who = account(SERVICE_USER)
    if who is None or os.geteuid() != 0:
        return None
    try:
        return None if may(path, who, want) else who.name
    except OSError:
        return None


def secret_files(config: Config, config_path: Path) -> list[tuple[str, Path]]:
    """``[(what, path)]`` of every file the service reads a secret from.

    The config file itself (``what``: ``"the config file"``), then
    ``cloud.api_key_file`` and ``api.token_file`` when secrets are kept in files.
    """
    files = [("the config file", Path(config_path).absolute())]
    for key, path in (
        ("cloud.api_key_file", config.cloud.api_key_file),
        ("api.token_file", config.api.token_file),
    ):
        if path is not None:
            files.append((key, path))
    return files


def fix_hint(path: Path, user: str = SERVICE_USER) -> str:
    """The commands that give ``path`` the modes install.sh gives secrets."""
    return f"sudo chown root:{user} {path} && sudo chmod 640 {path}"


def unreadable_by_service(config: Config, config_path: Path, user: str | None = None) -> list[str]:
    """``what: the service user ... cannot read PATH: fix`` lines, one per file of
    ``secret_files`` the service user (``user``, default ``SERVICE_USER``) cannot read.

    Empty when it can read them all, and when this cannot be told: not running as
    root (other users' files may not be looked at) or no such user on this machine
    (a laptop checking a file for a locker).
    """
    name = user or SERVICE_USER
    who = account(name)
    if who is None or os.geteuid() != 0:
        return []
    lines = []
    for what, path in secret_files(config, config_path):
        try:
            readable = may(path, who, os.R_OK)
        except OSError:
            continue  # a missing file is a problem of its own, reported at load
        if not readable:
            lines.append(
                f"{what}: the service user {name} cannot read {path}"
                f" (the service fails with 'Permission denied'): {fix_hint(path, name)}"
            )
    return lines


def group_exists(name: str) -> bool:
    """Whether the group ``name`` exists on this machine."""
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def gid_of(group: str) -> int:
    """The id of ``group``; KeyError when there is no such group."""
    return grp.getgrnam(group).gr_gid


def has_gpio(dev: Path = Path("/dev")) -> bool:
    """Whether this machine has a GPIO chip (``/dev/gpiochip*``): a locker, not a laptop."""
    return any(dev.glob("gpiochip*"))


def importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (RPi.GPIO refuses to be
    imported off a Raspberry Pi)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pin_factory_lines(config: Config, *, on_gpio_machine: bool) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` for GPIO buses whose ``pin_factory`` module is missing.

    On a machine with GPIO (``on_gpio_machine``: the locker, or ``run``, which imports
    the module) each is a problem, ``buses[i].pin_factory: ...`` with the pip command
    for this environment; elsewhere (a laptop checking a file) a warning, because the
    module may well be on the locker.
    """
    problems: list[str] = []
    warnings: list[str] = []
    pip = Path(sys.prefix) / "bin" / "pip"
    for i, bus in enumerate(config.buses):
        if not isinstance(bus, GpioBusConfig):
            continue
        module, package = FACTORY_MODULES.get(bus.pin_factory, ("", ""))
        if not module or importable(module):
            continue
        needs = f'buses[{i}].pin_factory: "{bus.pin_factory}" needs the Python module {module}'
        if on_gpio_machine:
            problems.append(
                f"{needs}, which is not installed: sudo {pip} install {package}"
                " (install.sh adds it on a Raspberry Pi: the extra locker-agent[pi])"
            )
        else:
            warnings.append(
                f"{needs}, not installed here; this machine has no GPIO, so only the locker"
                " can tell (install.sh adds it there on a Raspberry Pi)"
            )
    return problems, warnings


def mode_problem(path: Path, user: str = SERVICE_USER) -> str | None:
    """What is wrong with the owner or mode of secret file ``path`` (None: nothing):
    readable or writable by every user, or writable by its group."""
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return f"{path} is open to every user (mode {mode:o}): {fix_hint(path, user)}"
    if mode & stat.S_IWGRP:
        return f"{path} is writable by its group (mode {mode:o}): {fix_hint(path, user)}"
    if st.st_uid != 0:
        return f"{path} is not owned by root: {fix_hint(path, user)}"
    return None
