"""A serial port that is not there (another locker's by-id name, /dev/ttyUSB9), as a
technician meets it: check-config warns with the path and the reason, and the running
agent says both in /healthz, in systemd's STATUS= and in the journal; the cloud hears
``bus_offline`` naming the bus and its boards and carrying only their cabinets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

import aiohttp

from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import CLOUD_KEY, agent_running, run_agent

TOKEN = "t-7Hq2Lw"


def two_buses(tmp_path, front_port: str, rear_port: str, cloud_url: str, api_port: int):
    """Bus front (board 0) serves cabinets 0 and 1; bus rear (board 0) only cabinet 0's rear."""
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[cloud]\nurl = "{cloud_url}"\napi_key = "{CLOUD_KEY}"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
        f'[storage]\ndir = "{tmp_path}"\n'
        f'[[buses]]\nname = "front"\nport = "{front_port}"\nboards = [0]\n'
        f'[[buses]]\nname = "rear"\nport = "{rear_port}"\nboards = [0]\n'
        "[[cabinets]]\nkey = 0\n"
        'front = { bus = "front", board = 0, channel = 1 }\n'
        'rear = { bus = "rear", board = 0, channel = 1 }\n'
        '[[cabinets]]\nkey = 1\nfront = { bus = "front", board = 0, channel = 2 }\n'
    )
    path.chmod(0o640)
    return path


def test_check_config_warns_of_a_port_not_there_and_still_exits_0(tmp_path):
    missing = tmp_path / "ttyUSB9"
    path = two_buses(tmp_path, "/dev/null", str(missing), "https://cloud.lockers.test", 8080)
    done = run_agent("check-config", path)
    assert done.returncode == 0, done.stderr  # the adapter may be plugged in later
    (line,) = [w for w in done.stderr.splitlines() if "buses[1].port" in w]
    assert line.startswith(
        f"{path}: warning: buses[1].port: {missing}: no such file: is the adapter plugged in?"
        " ls -l /dev/serial/by-id/ lists those that are (now: "
    )


def test_check_config_names_the_process_holding_a_port(tmp_path):
    import subprocess

    port = tmp_path / "ttyUSB0"
    port.write_text("")
    code = "import sys; f = open(sys.argv[1]); print(1, flush=True); input()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"1\n"  # it has the port open
        other = tmp_path / "ttyUSB1"  # held by nobody: no line for it
        other.write_text("")
        path = two_buses(tmp_path, str(port), str(other), "https://cloud.lockers.test", 8080)
        done = run_agent("check-config", path)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    assert (
        f"warning: buses[0].port: {port}: held by another process: pid {holder.pid} ("
    ) in done.stderr
    assert "buses[1].port" not in done.stderr


async def test_the_running_agent_says_which_port_and_why(tmp_path, cloud):
    boards = KerongBoardEmulator([0])
    await boards.start()
    missing = tmp_path / "ttyUSB9"
    api_port = free_port()
    path = two_buses(tmp_path, boards.port, str(missing), cloud.url, api_port)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    journal = tmp_path / "journal"
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    with journal.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(path), env=env, stderr=err
        )
    expected = (
        f"bus rear: port {missing} not open: no such file: is the adapter plugged in?"
        " ls -l /dev/serial/by-id/ lists those that are"
    )
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(20):
            ready = ""
            while not ready.startswith("READY=1"):
                ready = (await loop.sock_recv(notify, 4096)).decode()
        offline = await cloud.wait_for(lambda b: b["event"]["type"] == "bus_offline", timeout=15)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{api_port}/healthz") as resp,
        ):
            assert resp.status == 503
            health = await resp.json()
        # An open behind it names the port, not a board to check the power of.
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.put(
                f"http://127.0.0.1:{api_port}/api/lockers/cabinets/0",
                json={"command": "open", "rearload": True},
            ) as resp,
        ):
            refused = (resp.status, (await resp.json())["message"])
    finally:
        proc.terminate()
        await proc.wait()
        notify.close()
        await boards.close()
    # /healthz and STATUS=: the path and the reason, not "port not open" alone.
    assert expected in health["reasons"], health["reasons"]
    assert expected in ready.partition("STATUS=")[2], ready
    # The journal: one line naming the port and why, once.
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.startswith("{")]
    said = [x for x in lines if x.get("event") == "hardware.port_not_open"]
    assert [x["problem"] for x in said] == [expected]
    # The cloud: the bus and its boards named, only the cabinets it serves (0, not 1).
    assert offline["event"] == {"type": "bus_offline", "bus": "rear", "boards": [0]}
    assert [c["key"] for c in offline["cabinets"]] == [0]
    assert refused == (503, f"cabinet 0 rear door: state unknown: {expected}"), refused


async def test_an_adapter_plugged_in_later_is_taken_up_and_the_reason_goes(tmp_path, cloud):
    """Why a missing port is only a warning: the agent keeps trying, and an adapter that
    appears under the configured name (a by-id link) is opened and its boards heard."""
    front, rear = KerongBoardEmulator([0]), KerongBoardEmulator([0])
    await front.start()
    await rear.start()
    plugged = tmp_path / "usb-FTDI_FT232R_USB_UART_A10K2222-if00-port0"
    api_port = free_port()
    path = two_buses(tmp_path, front.port, str(plugged), cloud.url, api_port)
    # bus_online as soon as it is so (not 60 s, the default rate limit, after bus_offline)
    path.write_text("[locker]\nhealth_interval_s = 0.5\n" + path.read_text())
    try:
        async with agent_running("run", "--config", path):
            await cloud.wait_for(lambda b: b["event"]["type"] == "bus_offline", timeout=15)
            plugged.symlink_to(rear.port)  # udev makes the by-id link when it is plugged in
            online = await cloud.wait_for(lambda b: b["event"]["type"] == "bus_online", timeout=40)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{api_port}/healthz") as resp,
            ):
                reasons = (await resp.json())["reasons"]
    finally:
        await front.close()
        await rear.close()
    assert online["event"] == {"type": "bus_online", "bus": "rear", "boards": [0]}
    assert not [r for r in reasons if "not open" in r], reasons
