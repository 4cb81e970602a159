"""The command line as the contracts say, in real subprocesses."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import AGENT, agent_running, write_small_config

SECRET = "do-not-leak-this-key"


def write_config(tmp_path, *, port="/dev/null", cloud="http://127.0.0.1:9", api_port=8080):
    secret = f'api_key = "{SECRET}"'
    return write_small_config(
        tmp_path,
        cloud=cloud,
        secret=secret,
        api_port=api_port,
        token="tok",
        port=port,
        cabinets={5: 6},
    )


def test_check_config_ok(tmp_path):
    result = subprocess.run(
        [*AGENT, "check-config", str(write_config(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "cabinets: 1" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_check_config_problems_exit_78_without_traceback(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("channel = 6", "channel = 17") + "\nbogus = 1\n")
    result = subprocess.run([*AGENT, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("cabinets[0].front.channel" in line for line in lines)
    assert any("bogus" in line for line in lines)
    assert SECRET not in result.stderr


def test_run_with_a_bad_config_exits_78(tmp_path):
    path = tmp_path / "missing.toml"
    result = subprocess.run([*AGENT, "run", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr


async def wait_healthy(url, timeout=10.0):
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_run_stops_cleanly_on_signal(tmp_path, sig):
    boards = KerongBoardEmulator([0])
    cloud = FakeCloud(SECRET)
    await boards.start()
    await cloud.start()
    api_port = free_port()
    path = write_config(tmp_path, port=boards.port, cloud=cloud.url, api_port=api_port)
    proc = await asyncio.create_subprocess_exec(
        *AGENT, "run", "--config", str(path), stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{api_port}/healthz")
        await cloud.wait_for(lambda c: c == {"key": 5, "front_status": "closed"}, timeout=5)
        started = time.monotonic()
        proc.send_signal(sig)
        async with asyncio.timeout(5):
            code = await proc.wait()
        assert code == 0
        assert time.monotonic() - started < 5
        logs = (await proc.stderr.read()).decode()
        assert '"event": "agent.stopped"' in logs  # JSON lines when stderr is not a tty
        assert SECRET not in logs
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await cloud.close()
        await boards.close()


@pytest.mark.parametrize(("locker", "key"), [("kerong", 5), ("touchless", 1)])
async def test_simulate_runs_and_opens_a_cabinet(locker, key):
    api_port, cloud_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with agent_running(
        "simulate", "--locker", locker, "--api-port", api_port, "--cloud-port", cloud_port,
        "--web-port", 0,  # two of these run at once: never both on the page's default 8000
        stdout=asyncio.subprocess.PIPE, env=env,
    ) as proc:  # fmt: skip
        banner = ""
        async with asyncio.timeout(10):
            while "curl" not in banner:
                banner += (await proc.stdout.readline()).decode()
        assert f"127.0.0.1:{api_port}" in banner
        # The technicians' socket is the simulator's own, and its status line works.
        line = next(x for x in banner.splitlines() if "locker-agent status --socket" in x)
        sock = line.split("--socket ", 1)[1].split()[0]
        assert "locker-agent-sim-" in sock and sock.endswith("/agent.sock")
        status = await asyncio.create_subprocess_exec(
            *AGENT, "status", "--socket", sock, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await status.communicate()
        assert status.returncode == 0 and f"    {key}  closed" in out.decode()
        headers = {"Authorization": "Bearer simulator"}
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{api_port}/api/lockers/cabinets/{key}"
            async with session.put(url, json={"command": "open"}, headers=headers) as resp:
                assert resp.status == 200
            feedback = f"http://127.0.0.1:{cloud_port}/_sim/feedback"
            async with asyncio.timeout(5):
                while True:
                    async with session.get(feedback) as resp:
                        bodies = [r["body"] for r in await resp.json()]
                    if {"key": key, "front_status": "open"} in [
                        c for b in bodies for c in b["cabinets"]
                    ]:
                        break
                    await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(5):
            assert await proc.wait() == 0


def test_outbox_lists_pending_and_dead_rows(tmp_path):
    import json

    from agent.storage.outbox import OUTBOX_FILE, Outbox

    box = Outbox(tmp_path / OUTBOX_FILE)
    box.append("change", "door_changed", [{"key": 5, "front_status": "open"}])
    dead = box.append("change", "door_changed", [{"key": 6, "front_status": "open"}])
    box.bury([dead.seq], 422, '{"message": "The cabinets field is required."}')
    box.close()
    result = subprocess.run(
        [*AGENT, "outbox", "--config", str(write_config(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    *rows, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["state"], r["cabinets"][0]["key"]) for r in rows] == [("pending", 5), ("dead", 6)]
    assert rows[1]["status"] == 422
    assert summary["summary"]["pending"] == 1 and summary["summary"]["dead"] == 1


def test_run_fails_cleanly_when_the_api_port_is_taken(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, api_port=port)
        result = subprocess.run(
            [*AGENT, "run", "--config", str(path)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1
    assert '"event": "agent.failed"' in result.stderr
    assert SECRET not in result.stderr


GPIO_CONFIG = """
[cloud]
url = "http://127.0.0.1:9"
api_key = "{secret}"

[api]
token = "tok"

[storage]
dir = "{dir}"

[[buses]]
name = "rs485"
port = "{port}"
boards = [0]

[[buses]]
name = "gpio"
driver = "gpio"
pin_factory = "mock"

[[cabinets]]
key = 0
front = {{ bus = "rs485", board = 0, channel = 1 }}
rear = {{ bus = "gpio", switch = "^!4", lock = {lock} }}
indicator = {{ bus = "gpio", red = {red}, green = 13, blue = 19 }}
"""


def write_gpio_config(tmp_path, *, port="/dev/null", lock="11", red="12", switch=None):
    text = GPIO_CONFIG.format(secret=SECRET, dir=tmp_path, port=port, lock=lock, red=red)
    if switch is not None:
        text = text.replace('switch = "^!4"', f'switch = "{switch}"')
    path = tmp_path / "gpio.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"lock": '"^11"'},
            "cabinets[0].rear.lock: '^' (pull-up) is for inputs only; an output takes only"
            " '!' (active low)",
        ),
        (
            {"red": '"!12"'},
            "cabinets[0].indicator: red, green and blue must share one polarity",
        ),
    ],
)
@pytest.mark.parametrize("command", [["check-config"], ["run", "--config"]])
def test_what_would_crash_run_is_refused_with_exit_78(tmp_path, change, line, command):
    path = write_gpio_config(tmp_path, **change)
    result = subprocess.run(
        [*AGENT, *command, str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert any(text.startswith(f"{path}: {line}") for text in result.stderr.splitlines())


async def test_check_config_builds_the_drivers_dry_without_opening_a_port(tmp_path):
    connections = []

    async def gateway(reader, writer):
        connections.append(writer)
        writer.close()

    server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = write_gpio_config(tmp_path, port=f"socket://127.0.0.1:{port}")
    try:
        proc = await asyncio.create_subprocess_exec(
            *AGENT,
            "check-config",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        server.close()
        await server.wait_closed()
    assert proc.returncode == 0, err.decode()
    assert "bus gpio: gpio (mock pins)" in out.decode()
    # No driver log lines: only the config's warnings (a plain http:// cloud here).
    assert all(": warning: " in line for line in err.decode().splitlines())
    assert connections == []


def test_check_config_names_what_a_driver_refuses_when_it_builds(tmp_path, monkeypatch, capsys):
    # The config is valid; the board is a 40-pin Raspberry Pi header (gpiozero's own
    # mock of it: GPIO 0-27), which has no GPIO40.
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    import drivers.gpio.mock
    from agent import cli

    monkeypatch.setattr(
        drivers.gpio.mock, "mock_factory", lambda: MockFactory(pin_class=MockPWMPin)
    )
    import structlog

    path = write_gpio_config(tmp_path, switch="^!40")
    try:
        assert cli.main(["check-config", str(path)]) == 78
    finally:
        structlog.reset_defaults()  # main() configured logging for this process
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: cabinets[0].rear.switch: ^!GPIO40: refused by the pin")


# ------------------------------------------------------------ plugin commands

PLUGIN = """
class _Hello:
    help = "say hello"

    def add_arguments(self, parser):
        parser.add_argument("--name", default="world")

    def main(self, args):
        print(f"hello {args.name}")
        return 3


command = _Hello()


class _Failing(_Hello):
    def main(self, args):
        raise RuntimeError("port 8080 taken")


failing = _Failing()
"""


@pytest.fixture
def plugin_path(tmp_path):
    """A distribution on a path of its own with entry points of the group: a command,
    one that fails when it runs, one whose module fails to import, and one that tries
    to replace `run`."""
    (tmp_path / "hello_plugin.py").write_text(PLUGIN)
    (tmp_path / "broken_plugin.py").write_text('raise RuntimeError("boom")\n')
    info = tmp_path / "hello_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[locker_agent.commands]\n"
        "hello = hello_plugin:command\n"
        "failing = hello_plugin:failing\n"
        "broken = broken_plugin:command\n"
        "run = hello_plugin:command\n"
    )
    return tmp_path


def run_agent(args, plugin_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), *sys.path])}
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, env=env, timeout=30)


def test_commands_come_from_the_entry_point_group(plugin_path):
    result = run_agent(["hello", "--name", "locker"], plugin_path)
    assert (result.returncode, result.stdout) == (3, "hello locker\n"), result.stderr
    listed = run_agent(["--help"], plugin_path).stdout
    assert "hello" in listed and "say hello" in listed


def test_a_plugin_that_cannot_load_breaks_only_its_own_command(plugin_path, tmp_path):
    result = run_agent(["broken", "--anything"], plugin_path)
    assert result.returncode == 1
    assert "the command 'broken' cannot be loaded: RuntimeError: boom" in result.stderr
    assert "Traceback" not in result.stderr
    checked = run_agent(["check-config", str(write_config(tmp_path))], plugin_path)
    assert checked.returncode == 0, checked.stderr


def test_a_command_that_fails_is_one_log_line_and_exit_1(plugin_path):
    result = run_agent(["failing"], plugin_path)
    assert result.returncode == 1
    assert '"event": "command.failed"' in result.stderr
    assert "port 8080 taken" in result.stderr


def test_a_plugin_cannot_replace_a_built_in_command(plugin_path, tmp_path):
    result = run_agent(["run", "--config", str(tmp_path / "missing.toml")], plugin_path)
    assert result.returncode == 78  # the agent's own run: no such file
    assert "hello" not in result.stdout


@pytest.mark.parametrize("command", [["check-config"], ["doctor"]])
def test_a_reader_that_stops_early_gets_no_traceback(tmp_path, command):
    """``check-config FILE | head -1``: the pipe closes before the summary is written;
    the command ends quietly with 141 (128 + SIGPIPE), as a shell reports it."""
    path = write_small_config(tmp_path, cloud="https://cloud.lockers.test")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a byte is written
    try:
        result = subprocess.run(
            [*AGENT, *command, str(path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert result.returncode == 141


@pytest.mark.parametrize(
    ("command", "files"), [("run", []), ("check-config", []), ("outbox", ["a", "--config", "b"])]
)
def test_a_command_without_its_config_file_once_shows_its_own_usage(command, files):
    """Not the whole command line's usage (eleven commands) above the one error."""
    result = subprocess.run([*AGENT, command, *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    usage, error = result.stderr.splitlines()[:2]
    assert usage.startswith(f"usage: locker-agent {command} [-h] [--config FILE]")
    assert error == (
        f"locker-agent {command}: error: give the config file once, as FILE or --config FILE"
    )
