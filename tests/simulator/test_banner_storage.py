"""The simulator says where its storage lives and gives ready ``--config`` lines: the
technician's commands (outbox, thermal log, status) run on the simulated locker as
printed, without hunting in /tmp."""

from __future__ import annotations

import asyncio
import shlex
import tomllib

import pytest

from simulator.run import Simulation, default_config_data, load_config_data
from simulator.tomlfile import dumps
from tests.conftest import EXAMPLES, run_agent


@pytest.mark.parametrize("locker", ["kerong", "touchless", "food"])
def test_every_embedded_locker_round_trips_through_the_file(locker):
    data = default_config_data(locker)
    assert tomllib.loads(dumps(data)) == data


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_round_trips_through_the_file(path):
    data = load_config_data(path)
    assert tomllib.loads(dumps(data)) == data


def printed_commands(banner: str) -> list[list[str]]:
    return [
        shlex.split(line.strip())
        for line in banner.splitlines()
        if line.strip().startswith("locker-agent ") and "--config" in line
    ]


async def test_the_banner_names_the_storage_and_its_commands_run_as_printed():
    sim = Simulation(locker="food")
    await sim.start()
    try:
        banner = sim.banner()
        assert f"  storage      {sim.storage_dir}   (outbox, state, thermal records)" in banner
        commands = printed_commands(banner)
        assert [c[1:-2] for c in commands] == [["status"], ["outbox"], ["thermal", "log"]]
        assert all(c[-2:] == ["--config", str(sim.config_file)] for c in commands)
        assert sim.config_file.parent == sim.storage_dir
        assert sim.config_file.stat().st_mode & 0o077 == 0  # it holds the token inline
        results = {  # in a thread: the agent answers `status` on this loop
            " ".join(c[1:-2]): await asyncio.to_thread(run_agent, *c[1:], timeout=60)
            for c in commands
        }
    finally:
        await sim.close()
    for name, done in results.items():
        assert done.returncode == 0, (name, done.stderr)
    assert "health:" in results["status"].stdout
    assert '"summary"' in results["outbox"].stdout.splitlines()[-1]
    assert results["thermal log"].stdout.startswith("key,t,temperature_c,")  # the records
