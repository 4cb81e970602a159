"""``locker-agent doctor``: what a technician checks on a locker, one line each.

Each line is ``ok``, ``FAIL``, ``warn`` or ``skip``, what was checked, and what to do:
the config (valid, its problems and warnings as ``check-config`` and ``run`` judge them:
``agent/field/verdict.py``),
the secret files' owners and modes, the service user and its groups, each serial
port (present, openable, not held by another process) and each board on it (one
status read with the driver's codec), the pin factory's module, the thermal sensors
(``agent/thermal/sensors.py``), the pickup-code readers (``readers.py``), the cloud (resolves,
connects, accepts the api-key: see ``agent.field.probes``), the clock (NTP) and the storage
dir's disk. Exit 1 when a line is FAIL, else 0.

Run it with sudo: as root it can tell what the service user may read and open. The
running agent is asked as the technician's commands ask it, on its Unix socket with its
credentials checked first (``agent/field/channel.py``; never the TCP port, which anybody
may bind while the agent is down): the ``agent`` line says whether it runs and how it
is, and a port it holds is not opened (its health tells how it hears the boards). No
agent there: the line says so, and the boards are read directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import serial

from agent.api.peers import unix_address
from agent.config import Config, ConfigError, KerongBusConfig, load_config
from agent.field import access, busscan, probes
from agent.field.channel import AgentUnreachable
from agent.field.readers import reader_lines
from agent.field.running import Health, agent_line, as_the_agent_hears, ask_agent
from agent.field.technician import DEFAULT_CONFIG
from agent.field.verdict import is_left, judge
from agent.hardware.ports import HELD, PERMISSION, reason
from agent.thermal.sensors import sensor_lines

STATE_DIR = Path("/var/lib/locker-agent")
"""The only place the unit lets the service write (its StateDirectory)."""


@dataclass(frozen=True, slots=True)
class Line:
    """One finding: ``level`` (ok, FAIL, warn, skip), ``what`` was checked, ``says``."""

    level: str
    what: str
    says: str

    def __str__(self) -> str:
        return f"{self.level:<4} {self.what}: {self.says}"


# One constructor per level: ok(what, says) and so on. skip: this machine cannot tell.
ok, fail, warn, skip = (partial(Line, level) for level in ("ok", "FAIL", "warn", "skip"))


def doctor(path: Path) -> Iterator[Line]:
    """Every check of the config at ``path``, in order; stops after the config's lines
    when it is invalid (nothing else can be told then)."""
    try:
        config = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            yield fail("config", f"{path}: {problem}")
        return
    # What check-config exits 78 on and run refuses: one function decides, the first
    # line included (never "valid" above the problems).
    found = judge(config, path, on_gpio_machine=True)
    yield (ok if found.valid else fail)("config", found.headline(path, config))
    yield from (fail(what, line) for what, line in found.problems)
    yield from (warn(what, line) for what, line in found.warnings)
    yield from check_account(config)
    yield from check_secrets(config, path)
    health = ask_agent(config.api_socket)
    yield Line(*agent_line(health))
    for i, bus in enumerate(config.buses):
        if isinstance(bus, KerongBusConfig):
            yield from check_bus(i, bus, health, config.api_socket)
    found = sensor_lines(config, access.service_cannot)
    yield from (Line(level, "thermal", says) for level, says in found)
    yield from (Line(*found) for found in reader_lines(config, access.service_cannot))
    yield check_cloud(config)
    yield check_clock()
    yield from check_disk(config)


def check_account(config: Config) -> Iterator[Line]:
    """The service user exists and is in the groups its devices need."""
    who = access.account(access.SERVICE_USER)
    if who is None:
        yield warn("service user", f"no user {access.SERVICE_USER}: run systemd/install.sh")
        return
    needs = set()
    for bus in config.buses:
        if isinstance(bus, KerongBusConfig):
            if "://" not in bus.port:
                needs.add("dialout")
        elif bus.pin_factory != "mock":
            needs.add("gpio")
    missing = [g for g in sorted(needs) if not access.group_exists(g)]
    outside = [g for g in sorted(needs) if g not in missing and access.gid_of(g) not in who.gids]
    for group in missing:
        yield fail("service user", f"no group {group}: run systemd/install.sh")
    for group in outside:
        yield fail(
            "service user", f"{who.name} is not in {group}: sudo usermod -aG {group} {who.name}"
        )
    if not missing and not outside:
        yield ok("service user", f"{who.name}, in {', '.join(sorted(needs)) or 'no group needed'}")


def check_secrets(config: Config, path: Path) -> Iterator[Line]:
    """Each file holding a secret: owner and mode (whether the service user may read
    it is the verdict's)."""
    inline = config.cloud.api_key_file is None or config.api.token_file is None
    for what, file in access.secret_files(config, path):
        if file == path.absolute() and not inline:
            continue  # the config holds no secret itself
        try:
            problem = access.mode_problem(file)
        except OSError as err:
            yield fail("secrets", f"{what}: {file}: {err.strerror}")
            continue
        if problem is not None:
            yield fail("secrets", f"{what}: {problem}")
        else:
            yield ok("secrets", f"{what} {file}: root-owned, not open to other users")


def check_bus(
    index: int,
    bus: KerongBusConfig,
    health: Health | AgentUnreachable,
    agent_socket: Path | None = None,
) -> Iterator[Line]:
    """The bus's port, then each of its boards (as the running agent hears them, by its
    ``health``, when it holds the port). A gateway is not reached while someone serves
    ``agent_socket`` (the agent, not asked: a permission refused, a slow answer)."""
    what = f"bus {bus.name}"
    port = bus.port
    if is_left(port):
        yield skip(what, f"buses[{index}].port is still the example's placeholder (above)")
        return
    if "://" in port:  # socket://: the config takes no other URL
        if isinstance(health, Health):
            # A gateway has no exclusive lock: polls of ours would share the line with
            # the running agent's, and one that takes a single client may drop the
            # agent's connection for ours. What the agent hears instead.
            yield Line(*as_the_agent_hears(what, health))
            return
        if agent_socket is not None and _served(agent_socket):
            yield skip(
                what,
                f"not reached: the agent may be using it (not asked: {health});"
                " sudo locker-agent doctor says what it hears",
            )
            return
        yield from _check_gateway(what, port)
    elif not os.path.exists(port):
        yield fail(what, f"{port} does not exist: {_plugged()}")
        return
    elif user := access.service_cannot(Path(port), os.R_OK | os.W_OK):
        yield fail(what, f"{user} may not open {port}: sudo usermod -aG dialout {user}")
    try:
        ser = busscan.open_port(port, bus.baud)
    except serial.SerialException as err:
        line = _open_failure(what, port, err)
        yield line
        if "running agent" in line.says:
            yield Line(*as_the_agent_hears(what, health))
        return
    with ser:
        yield ok(what, f"{port} opens at {bus.baud} baud, held by no other process")
        for board in bus.boards:
            yield _check_board(what, bus, ser, board)


def _served(path: Path) -> bool:
    """Whether a process may serve the Unix socket at ``path``: only no socket, or one
    nobody serves (left by an agent that stopped), says none does."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1.0)
        try:
            with unix_address(path) as address:  # a path past AF_UNIX's 108 bytes too
                probe.connect(address)
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
            return False
        except OSError:  # refused to us, slow: it may be the agent
            return True
    return True


def _check_gateway(what: str, port: str) -> Iterator[Line]:
    parts = urlsplit(port)
    try:
        socket.create_connection((parts.hostname, parts.port or 0), timeout=5).close()
    except OSError as err:
        yield fail(what, f"cannot reach the gateway {parts.netloc}: {err}: is it on and wired?")


def _plugged() -> str:
    return f"ls -l /dev/serial/by-id/ lists the adapters plugged in (now: {probes.plugged_now()})"


def _open_failure(what: str, port: str, err: serial.SerialException) -> Line:
    why = reason(err)  # the agent's own words for it (agent/hardware/ports.py)
    if why == HELD:
        held = probes.holders(port)
        if (agent := probes.agent_holding(port)) is not None:
            return warn(
                what,
                f"{port} is in use by the running agent (pid {agent}): board checks"
                " skipped (sudo systemctl stop locker-agent to read them here): what it"
                " hears, below",
            )
        who = probes.named(held) if held else "a process"
        return fail(what, f"{port} is held by another process: {who}: stop it")
    if why == PERMISSION:
        return fail(
            what,
            f"permission denied opening {port}: is the service user in dialout?"
            " (and run doctor with sudo)",
        )
    return fail(what, f"cannot open {port}: {err}")


def _check_board(what: str, bus: KerongBusConfig, ser: serial.SerialBase, board: int) -> Line:
    result = busscan.probe(ser, board, timeout_s=bus.reply_timeout_s)
    if not result.answered:  # one more try: a reply lost to noise is not a dead board
        result = busscan.probe(ser, board, timeout_s=bus.reply_timeout_s)
    where = f"{what} board {board}"
    if result.replies > 1:
        return fail(
            where,
            f"{result.replies} boards answer at address {board}: give each its own address",
        )
    if result.status is None:
        garbled = "; garbled bytes came back" if result.garbled else ""
        return fail(
            where,
            f"no answer at {bus.baud} baud{garbled}: check its address switch ({board}), power"
            f" and A/B wiring; locker-agent bus scan --port {bus.port} finds boards at any baud",
        )
    closed = sum(bit == bool(bus.locked_bit) for bit in result.status.lock_bits)
    return ok(where, f"answers ({closed}/16 locks closed)")


def check_cloud(config: Config) -> Line:
    """The cloud resolves, connects and accepts the api-key (nothing is reported); a
    placeholder address is not asked: it is a problem to fill in (the config's lines)."""
    if is_left(config.cloud.url):
        return skip(
            "cloud",
            f"{config.cloud.url} not asked: cloud.url is still the example's (above): set the"
            " cloud's address, then doctor asks it",
        )
    answer = probes.probe_cloud(config.cloud, timeout_s=min(config.cloud.timeout_s, 10))
    url, status = config.cloud.url, answer.status or 0
    if answer.ok:
        return ok(
            "cloud",
            f"{url}: resolves to {answer.detail}, connects, accepts the api-key"
            f" (HTTP {status} to an empty body: nothing was reported)",
        )
    if status >= 500:
        return warn("cloud", f"{url}: {answer.detail} (HTTP {status}): retry later")
    if status in (401, 403):
        hint = "set the locker's api-key in cloud.api_key (or the file of api_key_file)"
    elif 300 <= status < 400:
        hint = "set cloud.url to where it points (the agent does not follow redirects)"
    else:
        hint = {
            "resolve": "check DNS (resolvectl status) and the network",
            "connect": (
                "nothing listens there (is the URL's port right?)"
                if "refused" in answer.detail.lower()
                else "a firewall, a proxy, or no route to it"
            ),
            "tls": "is the clock right? a private CA goes in cloud.ca_file",
            "http": "check cloud.url",
        }[answer.step]
    code = f" (HTTP {status})" if status else ""
    return fail("cloud", f"{url}: {answer.detail}{code}: {hint}")


def check_clock() -> Line:
    """NTP synchronised, when timedatectl can tell."""
    synced = probes.ntp_synchronised()
    if synced is None:
        return skip("clock", "timedatectl cannot tell whether the clock is synchronised")
    if synced:
        return ok("clock", "synchronised (NTP)")
    return warn(
        "clock",
        "not synchronised: a Pi has no clock of its own, and TLS fails while it is far"
        " off: timedatectl timesync-status; UDP 123 must reach an NTP server",
    )


def check_disk(config: Config) -> Iterator[Line]:
    """The storage dir: inside the service's sandbox, writable, with room for the outbox."""
    storage = config.storage
    directory = storage.dir
    if not directory.is_relative_to(STATE_DIR):
        yield warn(
            "storage",
            f"{directory} is outside {STATE_DIR}, the one place the service may write:"
            " systemctl edit locker-agent, then [Service] ReadWritePaths=" + str(directory),
        )
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if user := access.service_cannot(directory, os.W_OK | os.X_OK):
        yield fail("storage", f"{directory} is not writable by {user}")
    free_mb = shutil.disk_usage(existing).free // 2**20
    need_mb = storage.outbox_max_mb * 2  # the outbox, its WAL and the state store
    says = f"{free_mb} MB free for {directory} (the outbox may take {storage.outbox_max_mb} MB)"
    if free_mb < storage.outbox_max_mb:
        yield fail("storage", f"{says}: free space, or lower storage.outbox_max_mb")
    elif free_mb < need_mb:
        yield warn("storage", f"{says}: little room left")
    else:
        yield ok("storage", says)


def main(args: argparse.Namespace) -> int:
    """Print each line as it is found; exit 1 when one is FAIL, else 0.

    ``args.config_file`` (``--config``) or ``args.file`` names the config, default
    ``DEFAULT_CONFIG``.
    """
    path = Path(args.config_file or args.file or DEFAULT_CONFIG)
    failed = False
    for line in doctor(path):
        print(line, flush=True)
        failed = failed or line.level == "FAIL"
    print("doctor: FAIL lines above say what to do" if failed else "doctor: all well")
    return 1 if failed else 0
