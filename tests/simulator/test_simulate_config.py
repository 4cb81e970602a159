"""``simulate --config FILE``: a technician's locker, simulated before it goes on site.

Every ready file in ``config/`` runs: its Kerong buses become emulators on their own
pseudo-terminals, its GPIO pins mock pins, its secrets and addresses the simulator's;
the agent comes up healthy and a door opens through the web view's action."""

import asyncio
import tomllib
from pathlib import Path

import aiohttp
import pytest

from simulator.cli import EX_CONFIG, command
from simulator.run import Simulation, load_config_data
from simulator.web.actions import Actions

CONFIGS = sorted((Path(__file__).parents[2] / "config").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
async def test_every_ready_config_runs_simulated(path):
    data = load_config_data(path)
    sim = Simulation(config_data=data)
    kerong = [b["name"] for b in data["buses"] if b.get("driver", "kerong-cu16") != "gpio"]
    assert list(sim.buses) == kerong
    await sim.start()
    try:
        assert len({e.port for e in sim.buses.values()}) == len(kerong)  # a pty each
        assert (sim.touchless is not None) == any(b.get("driver") == "gpio" for b in data["buses"])
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            while True:
                async with session.get(f"{sim.api_url}/healthz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
        key = data["cabinets"][0]["key"]
        answer = await Actions(sim).run({"who": "cloud", "do": "open", "key": key})
        assert answer["ok"], answer
        await sim.cloud.wait_for(lambda c: c.get("key") == key and "open" in c.values(), 10)
    finally:
        await sim.close()


def test_the_technicians_secrets_are_not_needed(tmp_path):
    data = tomllib.loads((CONFIGS[0]).read_text())
    data["cloud"].pop("api_key", None)
    data["cloud"]["api_key_file"] = "/nowhere/api-key"
    sim = Simulation(config_data=data)
    assert sim.config_data["cloud"]["api_key"] and "api_key_file" not in sim.config_data["cloud"]
    assert sim.token == "simulator"


def test_a_file_that_is_not_toml_is_refused_with_78(tmp_path, capsys):
    bad = tmp_path / "site.toml"
    bad.write_text("[locker\n")
    parser = __import__("argparse").ArgumentParser()
    command.add_arguments(parser)
    assert command.main(parser.parse_args(["--config", str(bad)])) == EX_CONFIG
    assert "site.toml" in capsys.readouterr().err


def test_a_config_the_agent_refuses_is_78_with_its_key_path(tmp_path, capsys):
    data = CONFIGS[0].read_text().replace("key = 0", 'key = "zero"', 1)
    bad = tmp_path / "site.toml"
    bad.write_text(data)
    parser = __import__("argparse").ArgumentParser()
    command.add_arguments(parser)
    args = ["--config", str(bad), "--api-port", "0", "--cloud-port", "0", "--web-port", "0"]
    assert command.main(parser.parse_args(args)) == EX_CONFIG
    assert "cabinets[0].key" in capsys.readouterr().err
