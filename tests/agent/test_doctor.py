"""What the service can reach, checked before it runs (agent/access.py), through
check-config and run; and ``locker-agent doctor`` against the board emulator on a pty
and a fake cloud on loopback."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import structlog

from agent import access, cli
from agent.config import load_config

AGENT = [sys.executable, "-m", "agent"]
EXAMPLES = Path(__file__).resolve().parents[2] / "config"
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
    path = directory / "agent.toml"
    path.write_text(
        f"""
[cloud]
url = "https://cloud.invalid"
api_key_file = "{key_file}"
[api]
token = "t"
[storage]
dir = "{directory}"
[[buses]]
name = "rs485"
port = "/dev/null"
boards = [0]
[[cabinets]]
key = 0
front = {{ bus = "rs485", board = 0, channel = 1 }}
"""
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


LGPIO_EXAMPLE = EXAMPLES / "touchless-gpio.toml"


@pytest.fixture
def no_lgpio(monkeypatch):
    """lgpio missing, whether or not this machine has it."""
    monkeypatch.setitem(access.FACTORY_MODULES, "lgpio", ("lgpio_missing_for_this_test", "lgpio"))


def test_off_a_locker_a_missing_lgpio_is_a_warning(no_lgpio, monkeypatch, capsys):
    monkeypatch.setattr(access, "has_gpio", lambda: False)
    assert cli.main(["check-config", str(LGPIO_EXAMPLE)]) == 0
    err = capsys.readouterr().err
    assert (
        f'{LGPIO_EXAMPLE}: warning: buses[0].pin_factory: "lgpio" needs the Python module'
        " lgpio_missing_for_this_test, not installed here; this machine has no GPIO"
    ) in err


def test_on_a_locker_a_missing_lgpio_is_exit_78(no_lgpio, monkeypatch, capsys):
    monkeypatch.setattr(access, "has_gpio", lambda: True)
    assert cli.main(["check-config", str(LGPIO_EXAMPLE)]) == 78
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f'{LGPIO_EXAMPLE}: buses[0].pin_factory: "lgpio" needs the Python module'
        " lgpio_missing_for_this_test, which is not installed: sudo "
    )


def test_run_with_a_missing_lgpio_is_exit_78_before_anything_starts(no_lgpio, tmp_path, capsys):
    text = LGPIO_EXAMPLE.read_text().replace("/var/lib/locker-agent", str(tmp_path))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    assert cli.main(["run", "--config", str(path)]) == 78
    assert "buses[0].pin_factory" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.sqlite3"))  # nothing was opened


def test_every_example_passes_check_config_here():
    """The examples' lgpio buses are warnings off a locker, never errors."""
    for path in sorted(EXAMPLES.glob("*.toml")):
        result = subprocess.run(
            [*AGENT, "check-config", str(path)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, (path, result.stderr)


def test_the_pi_extra_brings_lgpio():
    import tomllib

    pyproject = tomllib.loads((EXAMPLES.parent / "pyproject.toml").read_text())
    assert any(r.startswith("lgpio") for r in pyproject["project"]["optional-dependencies"]["pi"])
