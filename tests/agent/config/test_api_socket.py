"""``[api] socket``: where the technicians' socket is, named alike by the agent and the
CLI from the same file, and checked like every key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.config import load_config, parse_config
from tests.agent.config.test_config import base, only_problem
from tests.conftest import AGENT, write_small_config


def test_the_default_follows_the_storage(tmp_path: Path) -> None:
    data = base()
    # The service's storage: the unit's RuntimeDirectory.
    assert parse_config(data, tmp_path).api_socket == Path("/run/locker-agent/agent.sock")
    # Anywhere else (a laptop, the tests, the simulator): beside the storage.
    data["storage"] = {"dir": str(tmp_path / "state")}
    assert parse_config(data, tmp_path).api_socket == tmp_path / "state" / "agent.sock"


def test_the_key_wins_and_is_relative_to_the_config_file(tmp_path: Path) -> None:
    data = base()
    data["api"]["socket"] = "run/agent.sock"
    assert parse_config(data, tmp_path).api_socket == tmp_path / "run" / "agent.sock"
    data["api"]["socket"] = "/run/other/agent.sock"
    assert parse_config(data, tmp_path).api_socket == Path("/run/other/agent.sock")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "must name a file"),
        ("/run/locker-agent/", "must name a file"),
        ("/run/\x1b[2J.sock", "control characters"),
        ("/tmp", "is a directory"),
        ("/run/" + "s" * 65, "at most 64 bytes"),
        (8080, "api.socket"),
    ],
)
def test_a_bad_socket_is_named(value: object, expected: str) -> None:
    data = base()
    data["api"]["socket"] = value
    problem = only_problem(data)
    assert problem.startswith("api.socket") and expected in problem, problem


def test_check_config_and_the_schema_know_it(tmp_path: Path) -> None:
    path = write_small_config(tmp_path)
    done = subprocess.run(
        [*AGENT, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"technicians' socket {tmp_path / 'agent.sock'}" in done.stdout
    assert load_config(path).api_socket == tmp_path / "agent.sock"
    path.write_text(path.read_text().replace('token = "t"', 'token = "t"\nsocket = "/tmp"'))
    done = subprocess.run(
        [*AGENT, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 78 and "api.socket" in done.stderr
    schema = subprocess.run(
        [*AGENT, "config", "schema"], capture_output=True, text=True, timeout=60
    )
    assert "socket" in json.loads(schema.stdout)["$defs"]["ApiConfig"]["properties"]
