"""The unit file: restarts that do not loop on a config error, and a sandbox rated 3.0
or lower by systemd itself that still lets the agent reach its hardware and the cloud."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from agent.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "locker-agent.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(path: Path = UNIT) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, by key, in order (keys repeat: DeviceAllow=)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(key: str) -> str:
    values = directives()[key]
    assert len(values) == 1, f"{key} is set {len(values)} times"
    return values[0]


def test_a_config_error_is_not_restarted_and_a_crash_is():
    assert one("Type") == "notify"
    assert one("Restart") == "on-failure"
    assert one("RestartPreventExitStatus") == "78"
    # RestartPreventExitStatus= does not cover ExecStartPre= (systemd issue 11868):
    # a failing pre-check would loop. `run` itself exits 78 on a config problem.
    assert "ExecStartPre" not in directives()
    assert one("ExecStart").split()[1:] == ["run", "--config", "/etc/locker-agent/agent.toml"]
    assert int(one("StartLimitBurst")) >= 3
    assert int(one("StartLimitIntervalSec")) > int(one("StartLimitBurst")) * int(one("RestartSec"))


def test_the_watchdog_and_the_file_limit():
    assert 10 <= int(one("WatchdogSec")) <= 120
    assert int(one("LimitNOFILE")) >= 4096


def test_the_devices_the_agent_needs_are_allowed_by_class():
    unit = directives()
    assert one("DevicePolicy") == "closed"
    allowed = unit["DeviceAllow"]
    for device in ("char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-gpiochip"):
        assert f"{device} rw" in allowed, device
    # A path names one chip and one adapter, and PrivateDevices= hides /dev/tty*.
    assert not [a for a in allowed if a.startswith("/dev/")]
    assert unit.get("PrivateDevices", ["no"]) == ["no"]
    assert unit.get("PrivateNetwork", ["no"]) == ["no"]
    families = one("RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    assert one("User") == "locker-agent"
    assert one("StateDirectory") == "locker-agent"


@needs_analyze
def test_systemd_rates_the_sandbox_3_0_or_lower():
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 3.0, result.stdout


@needs_analyze
def test_systemd_verifies_the_unit(tmp_path):
    # verify wants ExecStart's program to exist: point it at a stand-in.
    program = tmp_path / "opt" / "locker-agent" / "bin" / "locker-agent"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    unit = tmp_path / "locker-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/locker-agent/bin/locker-agent", str(program)))
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr and "ignoring" not in result.stderr, result.stderr


def test_the_technicians_socket_is_in_the_units_runtime_directory(tmp_path):
    """The config's default socket, with the unit's StateDirectory as the storage, is in
    its RuntimeDirectory: made by systemd at start, the service's, 0750."""
    assert one("RuntimeDirectory") == "locker-agent"
    assert one("RuntimeDirectoryMode") == "0750"
    data = tomllib.loads((ROOT / "systemd" / "agent.toml").read_text())
    data["cloud"] = {"url": "https://lockers.example.com", "api_key": "k"}
    data["api"] = {"listen": "127.0.0.1:8080", "token": "t"}
    config = parse_config(data, tmp_path)
    assert config.storage.dir == Path("/var/lib") / one("StateDirectory")
    assert config.api_socket == Path("/run") / one("RuntimeDirectory") / "agent.sock"
