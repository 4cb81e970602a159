"""``simulate`` as the CLI finds it: an entry point in the ``locker_agent.commands`` group."""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points

import aiohttp
import pytest

from simulator.run import LOCKERS, free_port
from tests.conftest import agent_running

# What a CLI does with a command, in a subprocess: load it by its entry point, parse, run.
RUN_COMMAND = """
import argparse, sys
from importlib.metadata import entry_points

(ep,) = entry_points(group="locker_agent.commands", name="simulate")
command = ep.load()
parser = argparse.ArgumentParser()
command.add_arguments(parser)
sys.exit(command.main(parser.parse_args(sys.argv[1:])))
"""


def load_simulate():
    found = entry_points(group="locker_agent.commands", name="simulate")
    assert len(found) == 1, "simulate is not installed as an entry point: pip install -e ."
    (ep,) = found
    assert ep.value == "simulator.cli:command"
    return ep.load()


def test_the_entry_point_has_the_command_shape():
    command = load_simulate()
    assert isinstance(command.help, str) and command.help
    assert callable(command.add_arguments) and callable(command.main)


def test_add_arguments_gives_todays_options_and_defaults():
    parser = argparse.ArgumentParser()
    load_simulate().add_arguments(parser)

    defaults = parser.parse_args([])
    assert vars(defaults) == {
        "api_port": 8080,
        "cloud_port": 8004,
        "locker": "kerong",
        "web_port": 8000,
        "config_file": None,
        "scenario": None,
        "small_disk": None,
        "thermal_speed": 30.0,
        "log_file": None,
    }

    args = parser.parse_args(["--api-port", "0", "--cloud-port", "9004", "--locker", "touchless"])
    assert (args.api_port, args.cloud_port, args.locker) == (0, 9004, "touchless")
    args = parser.parse_args(["--locker", "food", "--thermal-speed", "120"])
    assert (args.locker, args.thermal_speed) == ("food", 120.0)
    bad_args = (["--locker", "vending"], ["--api-port", "eighty"])
    bad_args += (["--thermal-speed", "0"], ["--thermal-speed", "fast"])
    for bad in bad_args:
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_the_locker_choices_are_the_lockers_the_simulation_plays():
    parser = argparse.ArgumentParser()
    load_simulate().add_arguments(parser)
    (locker,) = [a for a in parser._actions if a.dest == "locker"]
    assert list(locker.choices) == list(LOCKERS)


def test_importing_the_command_leaves_the_simulation_unloaded():
    # The CLI loads every command to build its parser; `run` must not pay for the simulator.
    code = "import sys, simulator.cli; sys.exit('simulator.run' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


async def test_main_runs_the_simulation_until_sigint_and_returns_0():
    api_port, cloud_port, web_port = free_port(), free_port(), free_port()
    async with agent_running(
        "--api-port", api_port, "--cloud-port", cloud_port, "--web-port", web_port,
        program=(sys.executable, "-c", RUN_COMMAND), stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:  # fmt: skip
        banner = ""
        async with asyncio.timeout(10):
            while "act on it there" not in banner:
                line = await proc.stdout.readline()
                assert line, "the command exited before printing where to look"
                banner += line.decode()
        assert f"http://127.0.0.1:{api_port}" in banner
        assert f"http://127.0.0.1:{cloud_port}" in banner
        assert f"http://127.0.0.1:{web_port}/" in banner
        async with aiohttp.ClientSession() as session, asyncio.timeout(5):
            while True:  # the agent is up and reads its boards
                async with session.get(f"http://127.0.0.1:{api_port}/healthz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(5):
            assert await proc.wait() == 0


@pytest.mark.parametrize("option", ["--api-port", "--cloud-port"])
def test_the_web_port_may_not_be_another_port(option, capsys):
    parser = argparse.ArgumentParser()
    command = load_simulate()
    command.add_arguments(parser)
    args = ["--api-port", "0", "--cloud-port", "0", option, "8123", "--web-port", "8123"]
    assert command.main(parser.parse_args(args)) == 1
    assert f"--web-port 8123: the same as {option}" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "said"), [("3", "at least 4 MiB"), ("x", "not a whole")])
def test_a_disk_too_small_for_the_smallest_outbox_is_refused(given, said, capsys):
    """Below 4 MiB the 1 MiB outbox bound was more than a quarter of the disk: doctor
    on the simulator's own config then failed its storage."""
    parser = argparse.ArgumentParser()
    load_simulate().add_arguments(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--small-disk", given])
    assert exit_.value.code == 2
    assert f"argument --small-disk: {said}" in capsys.readouterr().err
