"""What the service can reach, checked before it runs (agent/field/access.py), through
check-config and run; and ``locker-agent doctor`` against the board emulator on a pty
and a fake cloud on loopback."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import structlog

from agent import cli
from agent.config import load_config
from agent.field import access
from tests.conftest import (
    AGENT,
    EXAMPLES,
    EXAMPLES_DIR,
    PLACEHOLDER_KEY,
    agent_running,
    as_installed,
    run_agent,
    write_small_config,
)

NOBODY = pwd.getpwnam("nobody")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def shared_dir():
    """A directory every user may search (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="locker-agent-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    structlog.reset_defaults()  # cli.main() configures logging for this process


def secret(path: Path, text: str, mode: int, gid: int = 0) -> Path:
    path.write_text(text + "\n")
    os.chown(path, 0, gid)
    path.chmod(mode)
    return path


def key_file_config(directory: Path, key_file: Path, config_mode: int = 0o644) -> Path:
    path = write_small_config(
        directory, cloud="https://cloud.invalid", secret=f'api_key_file = "{key_file}"'
    )
    path.chmod(config_mode)
    return path


# ----------------------------------------------------------------- access, by modes


@needs_root
def test_may_reads_modes_owners_groups_and_the_directories_on_the_way(shared_dir):
    nobody = access.account("nobody")
    assert nobody is not None and NOBODY.pw_gid in nobody.gids
    root_only = secret(shared_dir / "a", "x", 0o600)
    group = secret(shared_dir / "b", "x", 0o640, gid=NOBODY.pw_gid)
    everyone = secret(shared_dir / "c", "x", 0o644)
    assert not access.may(root_only, nobody, os.R_OK)
    assert access.may(group, nobody, os.R_OK)
    assert not access.may(group, nobody, os.R_OK | os.W_OK)
    assert access.may(everyone, nobody, os.R_OK)
    shared_dir.chmod(0o700)
    assert not access.may(everyone, nobody, os.R_OK)
    assert access.account("no-such-user-here") is None


@needs_root
def test_a_secret_only_root_reads_is_named_for_the_service_user(shared_dir):
    key = secret(shared_dir / "api.key", "k", 0o600)
    path = key_file_config(shared_dir, key)
    config = load_config(path)
    lines = access.unreadable_by_service(config, path, user="nobody")
    assert lines == [
        f"cloud.api_key_file: the service user nobody cannot read {key} (the service fails"
        f" with 'Permission denied'): sudo chown root:nobody {key} && sudo chmod 640 {key}"
    ]
    secret(key, "k", 0o640, gid=NOBODY.pw_gid)
    assert access.unreadable_by_service(config, path, user="nobody") == []
    # No such user here (a laptop): nothing can be told.
    assert access.unreadable_by_service(config, path, user="no-such-user-here") == []


@needs_root
def test_check_config_fails_78_naming_the_key_the_service_cannot_read(
    shared_dir, monkeypatch, capsys
):
    key = secret(shared_dir / "api.key", "k", 0o600)
    path = key_file_config(shared_dir, key, config_mode=0o640)
    monkeypatch.setattr(access, "SERVICE_USER", "nobody")
    assert cli.main(["check-config", str(path)]) == 78
    err = capsys.readouterr().err.splitlines()
    assert f"{path}: the config file: the service user nobody cannot read {path}" in err[0]
    assert err[1].startswith(f"{path}: cloud.api_key_file: the service user nobody cannot read")
    assert len(err) == 2


def test_check_config_without_the_service_user_says_nothing_of_it(tmp_path):
    key = secret(tmp_path / "api.key", "k", 0o600)
    result = subprocess.run(
        [*AGENT, "check-config", str(key_file_config(tmp_path, key))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if access.account(access.SERVICE_USER) is not None:
        pytest.skip("this machine has the service user")
    assert result.returncode == 0, result.stderr
    assert "service user" not in result.stderr


# ---------------------------------------------------------- the pin factory's module


@pytest.fixture
def no_lgpio(monkeypatch):
    """lgpio missing, whether or not this machine has it."""
    monkeypatch.setitem(access.FACTORY_MODULES, "lgpio", ("lgpio_missing_for_this_test", "lgpio"))


@pytest.fixture
def lgpio_example(tmp_path):
    """touchless-gpio.toml as installed, its cloud set: nothing left to fill in."""
    example = EXAMPLES_DIR / "touchless-gpio.toml"
    return as_installed(example, tmp_path / "etc", url="https://cloud.lockers.test")


def test_off_a_locker_a_missing_lgpio_is_a_warning(no_lgpio, lgpio_example, monkeypatch, capsys):
    monkeypatch.setattr(access, "has_gpio", lambda: False)
    assert cli.main(["check-config", str(lgpio_example)]) == 0
    err = capsys.readouterr().err
    assert (
        f'{lgpio_example}: warning: buses[0].pin_factory: "lgpio" needs the Python module'
        " lgpio_missing_for_this_test, not installed here; this machine has no GPIO"
    ) in err


def test_on_a_locker_a_missing_lgpio_is_exit_78(no_lgpio, lgpio_example, monkeypatch, capsys):
    monkeypatch.setattr(access, "has_gpio", lambda: True)
    assert cli.main(["check-config", str(lgpio_example)]) == 78
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f'{lgpio_example}: buses[0].pin_factory: "lgpio" needs the Python module'
        " lgpio_missing_for_this_test, which is not installed: sudo "
    )


def test_run_with_a_missing_lgpio_is_exit_78_before_anything_starts(
    no_lgpio, lgpio_example, tmp_path, capsys
):
    path = lgpio_example
    path.write_text(path.read_text().replace("/var/lib/locker-agent", str(tmp_path)))
    assert cli.main(["run", "--config", str(path)]) == 78
    assert "buses[0].pin_factory" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.sqlite3"))  # nothing was opened


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_as_installed_names_what_is_left_then_passes(example, tmp_path):
    """Copied beside install.sh's api.key (still its placeholder) and api.token, an
    example fails check-config (78) naming the cloud's address and the key file, and
    nothing else; with both filled in it passes (the lgpio buses are warnings off a
    locker, never errors), as the README's steps promise."""
    path = as_installed(example, tmp_path, key=PLACEHOLDER_KEY)
    result = run_agent("check-config", path, timeout=30)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.splitlines()
    left = [line.removeprefix(f"{path}: ").split(":")[0] for line in lines]
    config = load_config(path)
    port = getattr(config.buses[0], "port", "")
    placeholder_port = "REPLACE" in port or "192.0.2." in port  # a documentation address
    readers = [
        f"readers[{i}].port"
        for i, r in enumerate(config.readers)
        if "REPLACE" in getattr(r, "port", "")
    ]
    assert (
        left
        == ["cloud.url", "cloud.api_key_file"] + (["buses[0].port"] * placeholder_port) + readers
    )
    assert f"{tmp_path / 'api.key'} still holds the placeholder" in lines[1]
    assert PLACEHOLDER_KEY not in result.stderr
    path = as_installed(example, tmp_path, url="https://cloud.lockers.test")
    if placeholder_port or readers:
        text = path.read_text().replace("REPLACE", "A10K9999")
        path.write_text(text.replace("socket://192.0.2.10", "socket://10.20.0.10"))
    result = run_agent("check-config", path, timeout=30)
    assert result.returncode == 0, (example, result.stderr)


def test_the_field_examples_show_what_they_promise(tmp_path):
    bank = load_config(as_installed(EXAMPLES_DIR / "kerong-48-with-rear-bus.toml", tmp_path / "a"))
    assert [(b.name, b.boards, b.supply) for b in bank.buses] == [
        ("front", [0, 1, 2], "24v"),
        ("rear", [0], "24v"),
    ]
    assert len(bank.cabinets) == 48
    rear = [c for c in bank.cabinets if c.rear is not None]
    assert [(c.key, c.rear.bus, c.rear.channel) for c in rear] == [
        (k, "rear", k + 1) for k in range(16)
    ]
    pi5 = load_config(as_installed(EXAMPLES_DIR / "pi5-touchless-rgb.toml", tmp_path / "b"))
    assert [b.pin_factory for b in pi5.buses] == ["lgpio"]
    assert all(c.front.motorised and c.front.beam and c.indicator for c in pi5.cabinets)


def test_the_pi_extra_brings_lgpio():
    import tomllib

    pyproject = tomllib.loads((EXAMPLES_DIR.parent / "pyproject.toml").read_text())
    assert any(r.startswith("lgpio") for r in pyproject["project"]["optional-dependencies"]["pi"])


# ------------------------------------------------------------------------- doctor

CLOUD_KEY = "the-cloud-key-7Hq2"


@pytest.fixture
async def locker(tmp_path):
    """Boards 0 and 1 on a pty, the fake cloud, and a timedatectl that answers $CLOCK."""
    from simulator.cloud import FakeCloud
    from simulator.kerong_board import KerongBoardEmulator

    boards, cloud = KerongBoardEmulator([0, 1]), FakeCloud(CLOUD_KEY)
    await boards.start()
    await cloud.start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "timedatectl").write_text('#!/bin/sh\necho "$CLOCK"\n')
    (bin_dir / "timedatectl").chmod(0o755)
    yield boards, cloud, bin_dir
    await cloud.close()
    await boards.close()


def doctor_config(tmp_path, port, cloud_url, key=CLOUD_KEY, boards="[0, 1]"):
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[cloud]
url = "{cloud_url}"
api_key = "{key}"
[api]
token = "t"
[storage]
dir = "{tmp_path}"
[[buses]]
name = "rs485"
port = "{port}"
boards = {boards}
[[cabinets]]
key = 0
front = {{ bus = "rs485", board = 0, channel = 1 }}
"""
    )
    path.chmod(0o640)
    return path


async def run_doctor(bin_dir, *args, clock="yes"):
    import asyncio

    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CLOCK": clock}
    proc = await asyncio.create_subprocess_exec(
        *AGENT,
        "doctor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert not err, err.decode()
    return proc.returncode, out.decode().splitlines()


def levels(lines, level):
    return [line for line in lines if line.startswith(f"{level} ")]


@needs_root
async def test_doctor_on_a_healthy_locker(locker, tmp_path):
    boards, cloud, bin_dir = locker
    path = doctor_config(tmp_path, boards.port, cloud.url)
    code, lines = await run_doctor(bin_dir, "--config", str(path))
    assert code == 0, "\n".join(lines)
    assert levels(lines, "FAIL") == []
    warned = levels(lines, "warn")
    (config,) = [line for line in lines if line.startswith("ok   config: ")]
    assert config == f"ok   config: {path} is valid (1 cabinet; 1 warning below)"
    assert [line for line in warned if line.startswith("warn config: ")]
    assert f"ok   bus rs485: {boards.port} opens at 19200 baud, held by no other process" in lines
    assert "ok   bus rs485 board 0: answers (16/16 locks closed)" in lines
    assert "ok   bus rs485 board 1: answers (16/16 locks closed)" in lines
    assert (
        f"ok   cloud: {cloud.url}: resolves to 127.0.0.1, connects, accepts the api-key"
        in "\n".join(lines)
    )
    assert "ok   clock: synchronised (NTP)" in lines
    assert [line for line in lines if line.startswith("ok   storage: ")]
    assert lines[-1] == "doctor: all well"
    assert cloud.received == []  # the probe reported nothing
    assert CLOUD_KEY not in "\n".join(lines)


async def test_doctor_names_a_port_that_does_not_exist(locker, tmp_path):
    _, cloud, bin_dir = locker
    missing = tmp_path / "ttyUSB7"
    code, lines = await run_doctor(bin_dir, str(doctor_config(tmp_path, missing, cloud.url)))
    assert code == 1
    assert (
        f"FAIL bus rs485: {missing} does not exist: ls -l /dev/serial/by-id/ lists the"
        " adapters plugged in (now: none plugged in)"
    ) in lines
    assert not [line for line in lines if "board 0" in line]
    assert [line for line in lines if line.startswith("ok   cloud: ")]  # the rest goes on


async def test_doctor_on_a_wrong_baud_points_to_bus_scan(locker, tmp_path):
    boards, cloud, bin_dir = locker
    boards.baud = 9600
    code, lines = await run_doctor(bin_dir, str(doctor_config(tmp_path, boards.port, cloud.url)))
    assert code == 1
    assert (
        "FAIL bus rs485 board 0: no answer at 19200 baud: check its address switch (0), power"
        f" and A/B wiring; locker-agent bus scan --port {boards.port} finds boards at any baud"
    ) in lines


async def test_doctor_fails_a_placeholder_key_and_the_cloud_refuses_it(locker, tmp_path):
    boards, cloud, bin_dir = locker
    path = doctor_config(tmp_path, boards.port, cloud.url, key=PLACEHOLDER_KEY)
    code, lines = await run_doctor(bin_dir, str(path))
    assert code == 1
    assert any(
        line.startswith("FAIL config: cloud.api_key: still the example's placeholder: set the")
        for line in lines
    ), lines
    (refused,) = [line for line in lines if line.startswith("FAIL cloud: ")]
    assert "refuses the api-key (HTTP 401)" in refused
    assert PLACEHOLDER_KEY not in "\n".join(lines)
    assert cloud.received == []


async def test_doctor_names_the_process_holding_the_port(locker, tmp_path):
    import serial

    boards, cloud, bin_dir = locker
    with serial.Serial(boards.port, 19200, exclusive=True):
        code, lines = await run_doctor(
            bin_dir, str(doctor_config(tmp_path, boards.port, cloud.url))
        )
    assert code == 1
    (held,) = [line for line in lines if line.startswith("FAIL bus rs485: ")]
    assert f"{boards.port} is held by another process: pid {os.getpid()} (" in held


async def test_doctor_finds_two_boards_on_one_address(locker, tmp_path):
    boards, cloud, bin_dir = locker
    boards.bank.twins.add(1)
    code, lines = await run_doctor(bin_dir, str(doctor_config(tmp_path, boards.port, cloud.url)))
    assert code == 1
    assert (
        "FAIL bus rs485 board 1: 2 boards answer at address 1: give each its own address"
    ) in lines


async def test_doctor_warns_of_a_clock_not_synchronised(locker, tmp_path):
    boards, cloud, bin_dir = locker
    path = doctor_config(tmp_path, boards.port, cloud.url)
    _, lines = await run_doctor(bin_dir, str(path), clock="no")
    (clock,) = [line for line in lines if " clock: " in line]
    assert clock.startswith("warn clock: not synchronised")


async def test_doctor_on_an_unreachable_cloud_and_an_invalid_config(locker, tmp_path):
    from simulator.run import free_port

    boards, _, bin_dir = locker
    url = f"http://127.0.0.1:{free_port()}"
    code, lines = await run_doctor(bin_dir, str(doctor_config(tmp_path, boards.port, url)))
    assert code == 1
    (cloud,) = [line for line in lines if line.startswith("FAIL cloud: ")]
    assert "cannot connect to 127.0.0.1" in cloud and "Connection refused" in cloud
    assert cloud.endswith(": nothing listens there (is the URL's port right?)")  # not a route
    path = tmp_path / "agent.toml"
    path.write_text(path.read_text().replace("channel = 1", "channel = 17"))
    code, lines = await run_doctor(bin_dir, str(path))
    assert code == 1
    assert lines == [
        f"FAIL config: {path}: cabinets[0].front.channel: must be between 1 and 16 (got 17)",
        "doctor: FAIL lines above say what to do",
    ]


async def test_doctor_beside_the_running_agent_asks_it_on_its_socket(locker, tmp_path):
    """The agent holds the port: doctor asks it as status does, on its Unix socket (never
    on the TCP port), and passes on what it says of the bus: all boards, then a silent one."""
    from simulator.run import free_port

    boards, cloud, bin_dir = locker
    path = doctor_config(tmp_path, boards.port, cloud.url)
    api_port = free_port()
    path.write_text(
        path.read_text().replace('token = "t"', f'token = "t"\nlisten = "127.0.0.1:{api_port}"')
    )
    async with agent_running("run", "--config", path) as agent:
        await cloud.wait_for(lambda c: c == {"key": 0, "front_status": "closed"}, timeout=15)
        _, lines = await run_doctor(bin_dir, str(path))
        boards.set_offline(1)
        await cloud.wait_for(lambda b: b["event"]["type"] == "board_offline", timeout=15)
        _, silent = await run_doctor(bin_dir, str(path))
    sock = tmp_path / "agent.sock"
    assert f"ok   agent: running, ready (asked on its socket {sock})" in lines
    assert (
        f"warn bus rs485: {boards.port} is in use by the running agent (pid {agent.pid}):"
        " board checks skipped (sudo systemctl stop locker-agent to read them here): what it"
        " hears, below"
    ) in lines
    assert "ok   bus rs485: the running agent hears every board (its health: HTTP 200)" in lines
    (agent_line,) = [line for line in silent if line.startswith(("ok   agent", "warn agent"))]
    assert agent_line.startswith("warn agent: running, degraded (HTTP 503, asked on its socket")
    (said,) = [line for line in silent if line.startswith("FAIL bus rs485: the running agent")]
    assert said.startswith("FAIL bus rs485: the running agent says: bus rs485 board 1")


def test_doctor_names_the_group_the_service_user_lacks(tmp_path, monkeypatch):
    from agent.field import doctor

    config = load_config(doctor_config(tmp_path, "/dev/ttyUSB0", "https://cloud.invalid"))
    monkeypatch.setattr(access, "SERVICE_USER", "nobody")
    lines = [str(line) for line in doctor.check_account(config)]
    assert lines == ["FAIL service user: nobody is not in dialout: sudo usermod -aG dialout nobody"]
    monkeypatch.setattr(access, "SERVICE_USER", "root")
    root_in_dialout = access.gid_of("dialout") in access.account("root").gids
    lines = [str(line) for line in doctor.check_account(config)]
    assert (lines[0].startswith("ok ")) == root_in_dialout
