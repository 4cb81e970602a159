"""status, open and selftest as processes against a running (simulated) agent, on its
Unix socket: the token is never used, selftest asks and spares, text is escaped."""

import asyncio
import os
import pty
import sys

import pytest

from agent.field.channel import AgentChannel
from agent.field.technician import spared
from simulator.run import Simulation, free_port

ESC = "\x1b"


def config_for(tmp_path, sim: Simulation, token="not-the-token"):
    """A technician's config file naming the agent's socket. Its token is wrong and its
    API address is a port nobody serves: neither is used."""
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[cloud]\nurl = "{sim.cloud.url}"\napi_key = "k-9f3Qx1"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\ntoken = "{token}"\n'
        f'socket = "{sim.socket}"\n'
        f'[storage]\ndir = "{tmp_path}"\n'
        '[[buses]]\nname = "rs485"\nport = "/dev/ttyUSB9"\nboards = [0]\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "rs485", board = 0, channel = 1 }\n'
    )
    return str(path)


async def cli(*args: str, stdin=asyncio.subprocess.DEVNULL, answer: bytes | None = None):
    """``locker-agent ARGS`` to its end: (exit status, stdout, stderr). With ``answer``,
    stdin is a terminal (a pseudo-terminal) and ``answer`` is typed into it."""
    master = None
    if answer is not None:
        master, stdin = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if master is not None:
        os.close(stdin)
        os.write(master, answer)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if master is not None:
            os.close(master)
    return proc.returncode, out.decode(), err.decode()


def small(cabinets=6, size_of_3=None):
    """The embedded locker cut to ``cabinets`` cabinets, quick pulses; cabinet 3's size
    may be set (text a config can carry, shown by status)."""

    def adjust(data):
        data["buses"][0].update(pulse_s=0.1, stagger_s=0.0)
        data["cabinets"] = data["cabinets"][:cabinets]
        if size_of_3 is not None:
            data["cabinets"][3]["size"] = size_of_3

    return adjust


async def until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_status_and_open_on_the_socket_without_the_token(tmp_path):
    # The person shuts a door 5 s after it opened: long enough for `status` to see it.
    sim = Simulation(auto_shut_after_s=5.0, adjust=small(size_of_3=f"{ESC}]0;pwned\a{ESC}[2J"))
    await sim.start()
    try:
        path = config_for(tmp_path, sim)
        code, out, err = await cli("open", "5", "--config", path)
        assert code == 0 and " 5  open" in out, err
        sim.boards.force_open(0, 2)  # cabinet 1, by hand: an alarm
        await until(lambda: ("door_forced_open", "front") in sim.agent.locker.get(1).alarms)
        code, out, _ = await cli("status", "--config", path)
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["key", "front", "rear"]
        assert len([line for line in lines if line[:5].strip().isdigit()]) == 6
        assert "door_forced_open (front)" in out
        # What the agent carries is shown, escaped: no ESC reaches the terminal.
        assert ESC not in out and "\\x1b]0;pwned\\x07\\x1b[2J" in out
        code, _, err = await cli("open", "99", "--config", path)
        assert code == 1 and "NOT_FOUND" in err
        # --socket names the socket without a config file.
        code, out, _ = await cli("status", "--socket", str(sim.socket))
        assert code == 0 and "health: ok" in out
    finally:
        await sim.close()
    code, _, err = await cli("status", "--config", path)
    assert code == 2 and "does not answer" in err and "no socket at" in err


async def test_selftest_spares_an_occupied_and_a_disabled_cabinet(tmp_path):
    sim = Simulation(adjust=small())  # nobody shuts a door: each answer reads open
    await sim.start()
    try:
        path = config_for(tmp_path, sim)
        sim.boards.set_item(0, 3, True)  # cabinet 2 holds a parcel
        channel = AgentChannel(sim.socket)
        code, _ = await asyncio.to_thread(
            channel.call, "PUT", "/api/lockers/cabinets/4", {"command": "disable"}
        )
        assert code == 200
        await until(lambda: sim.agent.locker.get(2).occupied)
        before = len(sim.boards.bank.unlocked)
        code, out, err = await cli("selftest", "--yes", "--config", path, "--pause-s", "0")
        assert code == 0, out + err
        assert "spares 2 (occupied (the item sensor reads an item)), 4 (disabled)" in out
        assert "    2  front  spared: occupied" in out and "    4  front  spared: disabled" in out
        assert "selftest: all opened (4 opened, 2 spared, 0 failed)" in out
        pulsed = sim.boards.bank.unlocked[before:]
        assert sorted(pulsed) == [(0, 1), (0, 2), (0, 4), (0, 6)]  # 0, 1, 3, 5: once each
    finally:
        await sim.close()


async def test_selftest_asks_first(tmp_path):
    sim = Simulation(adjust=small(cabinets=2))  # doors stay open: answers read open
    await sim.start()
    try:
        path = config_for(tmp_path, sim)
        before = len(sim.boards.bank.unlocked)
        # No terminal and no --yes: refused before the agent is asked anything.
        code, out, err = await cli("selftest", "--config", path)
        assert code == 3 and "pass --yes" in err and out == ""
        # On a terminal, no: nothing opened.
        code, out, err = await cli("selftest", "--config", path, answer=b"n\n")
        assert code == 3 and "Open 2 front door(s) now? [y/N]" in out
        assert "nothing opened" in err
        assert len(sim.boards.bank.unlocked) == before
        # Yes: both opened.
        code, out, _ = await cli("selftest", "--config", path, "--pause-s", "0", answer=b"y\n")
        assert code == 0 and "selftest: all opened (2 opened, 0 spared, 0 failed)" in out
        assert sorted(sim.boards.bank.unlocked[before:]) == [(0, 1), (0, 2)]
    finally:
        await sim.close()


def test_selftest_spares_a_cabinet_whose_item_sensor_is_unknown():
    """Finding: a silent item-sensor board showed occupied null, and selftest --rear
    opened the rear door of a cabinet holding a parcel."""
    cabinet = {"key": 0, "enabled": True, "occupied": None, "rear_load_status": "closed"}
    assert "item sensor unknown" in spared(cabinet, rear=True)
    assert "item sensor unknown" in spared(cabinet, rear=False)
    assert spared(cabinet | {"occupied": 0}, rear=True) is None


async def test_open_behind_a_silent_board_names_the_board_and_a_jam_says_what_to_do(tmp_path):
    """The technician's `open` meets a silent board (the board is named, nothing was
    sent) and a jammed lock (409 LOCK_JAMMED on the API; the command says what to check)."""

    def quick(data):
        small(cabinets=6)(data)
        data["locker"].update(confirm_s=0.3, jam_retry_s=0.1)

    sim = Simulation(adjust=quick)
    await sim.start()
    try:
        path = config_for(tmp_path, sim)
        sim.boards.jam(0, 3)  # cabinet 2
        code, _, err = await cli("open", "2", "--config", path)
        assert code == 1
        assert err.startswith("cabinet 2: LOCK_JAMMED: cabinet 2 front door did not open")
        assert "check the lock's latch and the door's switch, then open again" in err
        sim.boards.set_offline(0)
        await until(lambda: sim.agent.locker.get(4).front.sensed is None, timeout=10)
        code, _, err = await cli("open", "4", "--config", path)
        assert code == 1
        assert err.startswith(
            "cabinet 4: UNAVAILABLE: cabinet 4 front door: state unknown: bus rs485 board 0"
            " does not answer (nothing was sent): check its power and wiring"
        ), err
    finally:
        await sim.close()


@pytest.mark.parametrize(
    "command", [["status"], ["open", "0"], ["selftest", "--yes"], ["thermal", "reset", "0"]]
)
def test_a_command_on_a_config_it_cannot_load_says_the_socket_is_enough(tmp_path, capsys, command):
    """Every command that asks the running agent finds its socket the same way (one
    function): the config's problems, then that ``--socket`` alone would do."""
    from agent import cli

    path = tmp_path / "agent.toml"
    path.write_text(
        '[cloud]\nurl = "https://cloud.lockers.test"\napi_key_file = "api.key"\n'
        '[api]\ntoken = "t"\n[[buses]]\nname = "rs485"\nport = "/dev/ttyUSB0"\nboards = [0]\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "rs485", board = 0, channel = 1 }\n'
    )
    assert cli.main([*command, "--config", str(path)]) == 78
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}: cloud.api_key_file: cannot read {tmp_path / 'api.key'}")
    assert err[0].endswith(
        "put the locker's api-key in it, alone (install.sh makes the file, root:locker-agent 640)"
    )
    assert err[1] == (
        "  (status, open, selftest and thermal reset need only the agent's socket: --socket"
        " /run/locker-agent/agent.sock on a locker)"
    )
    sock = tmp_path / "agent.sock"
    assert cli.main([*command, "--config", str(path), "--socket", str(sock)]) == 2
    err = capsys.readouterr().err
    assert f"the agent does not answer: no socket at {sock}: is it running?" in err


def test_with_no_config_a_running_simulator_is_named(tmp_path, monkeypatch, capsys):
    """Beside `make simulate`, `status` pointed at /etc's config and a locker's socket;
    the simulator's socket (in its banner only) is named, a dead one's folder is not."""
    import socket
    import tempfile

    from agent import cli as agent_cli

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    live, dead = tmp_path / "locker-agent-sim-a1", tmp_path / "locker-agent-sim-b2"
    live.mkdir()
    dead.mkdir()
    with socket.socket(socket.AF_UNIX) as listening, socket.socket(socket.AF_UNIX) as left:
        listening.bind(str(live / "agent.sock"))
        listening.listen()
        left.bind(str(dead / "agent.sock"))  # a crashed simulator's: nobody listens
        assert agent_cli.main(["status", "--config", str(tmp_path / "agent.toml")]) == 78
    err = capsys.readouterr().err.splitlines()
    assert err[2:] == [f"  (a simulator runs here: --socket {live / 'agent.sock'})"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_socket_in_another_users_simulator_folder_is_never_named(tmp_path, monkeypatch, capsys):
    """A lure: another local user's socket would answer `open` and `selftest` as it
    likes, and be believed."""
    import socket
    import tempfile

    from agent import cli as agent_cli
    from tests.conftest import NOBODY

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / "locker-agent-sim-zz"
    planted.mkdir()
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(planted / "agent.sock"))
        listening.listen()
        os.chown(planted, NOBODY, NOBODY)
        os.chown(planted / "agent.sock", NOBODY, NOBODY)
        assert agent_cli.main(["status", "--config", str(tmp_path / "agent.toml")]) == 78
    assert "a simulator runs here" not in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="another user's process needs root")
async def test_a_socket_in_this_users_folder_served_by_another_user_is_never_named(
    open_dir, monkeypatch, capsys
):
    """The folder and the socket file say this user's; the process serving it is not
    (its peer's uid): the channel's own check refuses it, as for status itself."""
    import tempfile

    from agent import cli as agent_cli
    from tests.agent.field.test_channel import squatting

    monkeypatch.setattr(tempfile, "tempdir", str(open_dir))
    folder = open_dir / "locker-agent-sim-q1"
    folder.mkdir()
    folder.chmod(0o777)  # so nobody can bind there; ours, all the same
    squatter = await squatting(folder / "agent.sock", open_dir / "heard")
    try:
        os.chown(folder / "agent.sock", os.getuid(), os.getgid())  # the file says ours
        code = await asyncio.to_thread(
            agent_cli.main, ["status", "--config", str(open_dir / "agent.toml")]
        )
    finally:
        squatter.kill()
        await squatter.wait()
    assert code == 78
    assert "a simulator runs here" not in capsys.readouterr().err
