"""Fixtures and helpers shared across the test tree (``from tests.conftest import ...``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from simulator.cloud import FakeCloud

CLOUD_KEY = "the-api-key"  # the api-key the `cloud` fixture accepts
AGENT = (sys.executable, "-m", "agent")  # ``locker-agent`` as a technician runs it


@pytest.fixture
async def cloud():
    """The fake SYNQ cloud on loopback, accepting ``CLOUD_KEY``."""
    fake = FakeCloud(CLOUD_KEY)
    await fake.start()
    yield fake
    await fake.close()


def run_agent(*args: object, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess:
    """``locker-agent ARGS...`` as a process, to its end; stdout and stderr as text."""
    return subprocess.run(
        [*AGENT, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def write_small_config(
    directory: Path,
    *,
    cloud: str = "http://127.0.0.1:9",
    secret: str = 'api_key = "k"',
    heartbeat_s: float = 60,
    api_port: int = 8080,
    token: str = "t",
    port: str = "/dev/null",
    cabinets: Mapping[int, int] = {0: 1},
    locker: str = "",
) -> Path:
    """``directory/agent.toml``: one KR-CU16 board 0 on bus ``rs485`` at ``port``, a
    cabinet per ``{key: channel}``, storage in ``directory``; ``secret`` is the
    ``[cloud]`` key line, ``locker`` the ``[locker]`` table's lines. Returns its path."""
    lines = [f"[locker]\n{locker}" if locker else ""]
    lines += [
        f'[cloud]\nurl = "{cloud}"\n{secret}\nheartbeat_s = {heartbeat_s}',
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{token}"',
        f'[storage]\ndir = "{directory}"',
        f'[[buses]]\nname = "rs485"\ndriver = "kerong-cu16"\nport = "{port}"\nboards = [0]',
    ]
    for key, channel in cabinets.items():
        wiring = f'{{ bus = "rs485", board = 0, channel = {channel} }}'
        lines.append(f"[[cabinets]]\nkey = {key}\nfront = {wiring}")
    path = directory / "agent.toml"
    path.write_text("\n\n".join(line for line in lines if line) + "\n")
    return path
