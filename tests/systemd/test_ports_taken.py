"""A port already taken is one line naming the option to change, never a traceback."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.conftest import AGENT, write_small_config


@pytest.fixture
def taken():
    """A port on 127.0.0.1 that something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def write_config(tmp_path, api_port):
    return write_small_config(tmp_path, api_port=api_port)


def test_run_names_api_listen_in_one_line(tmp_path, taken):
    path = write_config(tmp_path, taken)
    result = subprocess.run(
        [*AGENT, "run", "--config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "agent.failed" in line]
    assert len(failed) == 1, result.stderr
    assert f"api.listen: cannot listen on 127.0.0.1:{taken}: the address is in use" in failed[0]
    assert "change api.listen" in failed[0]


@pytest.mark.parametrize("option", ["--api-port", "--cloud-port"])
def test_simulate_names_the_port_option_in_one_line(taken, option):
    other = "--cloud-port" if option == "--api-port" else "--api-port"
    result = subprocess.run(
        [*AGENT, "simulate", option, str(taken), other, "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"locker-agent simulate: {option} {taken}: in use by another program (another"
        f" simulator or agent?): pick another port ({option} 0 takes any free one)"
    ]


def test_simulate_refuses_one_port_for_both(taken):
    result = subprocess.run(
        [*AGENT, "simulate", "--api-port", "8123", "--cloud-port", "8123"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "--cloud-port 8123: the same as --api-port" in result.stderr
