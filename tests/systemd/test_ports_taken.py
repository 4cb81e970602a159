"""A port already taken is one line naming the option to change and, where /proc shows
it, the process that holds the port; never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from agent.field import probes
from tests.conftest import AGENT, NOBODY, write_small_config


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
    # This test's process holds it: named, with its command line.
    holder = f"in use by pid {os.getpid()} ({probes.command_line(os.getpid())}): stop it"
    assert holder in failed[0]


WEB_ANY = ("--web-port", "0")  # 8000 may be another test's simulator's, or a developer's


@pytest.mark.parametrize(
    ("option", "make", "advice"),
    [
        ("--api-port", None, "--api-port 0"),
        ("--cloud-port", None, "--cloud-port 0"),
        ("--api-port", "1", 'make simulate ARGS="--api-port 0"'),  # run by `make simulate`
    ],
)
def test_simulate_names_the_port_option_in_one_line(taken, option, make, advice):
    other = "--cloud-port" if option == "--api-port" else "--api-port"
    env = {k: v for k, v in os.environ.items() if k != "MAKELEVEL"}  # `make test` sets it
    result = subprocess.run(
        [*AGENT, "simulate", option, str(taken), other, "0", *WEB_ANY],
        capture_output=True,
        text=True,
        timeout=30,
        env=env | ({"MAKELEVEL": make} if make else {}),
    )
    assert result.returncode == 1
    holder = f"pid {os.getpid()} ({probes.command_line(os.getpid())})"
    assert result.stderr.splitlines() == [
        f"locker-agent simulate: {option} {taken}: in use by {holder}: pick another port"
        f" ({advice} takes any free one)"
    ]


def test_simulate_names_every_taken_port_at_once(taken):
    """Finding (a new user's trial): beside a running simulator, a second one named
    --api-port, then after a fix --cloud-port, then the web port: one a run."""
    with socket.socket() as second:
        second.bind(("127.0.0.1", 0))
        second.listen()
        cloud = second.getsockname()[1]
        result = subprocess.run(
            [*AGENT, "simulate", "--api-port", str(taken), "--cloud-port", str(cloud), *WEB_ANY],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    said = [line.split(":")[1].strip() for line in result.stderr.splitlines()]
    assert said == [f"--api-port {taken}", f"--cloud-port {cloud}"]


def test_simulate_refuses_one_port_for_both(taken):
    result = subprocess.run(
        [*AGENT, "simulate", "--api-port", "8123", "--cloud-port", "8123"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "--cloud-port 8123: the same as --api-port" in result.stderr


def test_the_holder_of_a_port_is_found_by_its_socket(taken):
    code = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
    code += " print(s.getsockname()[1], flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        [(pid, command)] = probes.port_holders(port)
        assert pid == child.pid and command.startswith(sys.executable) and "\\x0a" not in command
    finally:
        child.kill()
        child.wait()
    assert probes.port_holders(port) == []  # gone with it
    assert probes.port_holders(taken) == []  # our own socket is not "another process"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_another_user_sees_only_its_own_processes(taken):
    """Not as root, /proc hides other users' descriptors: no holder, no guess. A forked
    child looks for the holder of ``taken`` (this process) as root, then as nobody."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: look, become nobody, look again, report, leave
        try:
            as_root = [p for p, _ in probes.port_holders(taken)]
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            as_nobody = [p for p, _ in probes.port_holders(taken)]
            os.write(write, repr((as_root, as_nobody)).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        os.waitpid(pid, 0)
        seen = os.read(read, 65536).decode()
    finally:
        os.close(read)
    assert seen == repr(([os.getpid()], []))


@pytest.fixture
def pty_path():
    main, secondary = os.openpty()
    yield os.ttyname(secondary)
    os.close(main)
    os.close(secondary)


HOLD = (
    "import serial, sys, time\nport = serial.Serial(sys.argv[-1], exclusive=True)\n"
    "print('held', flush=True)\ntime.sleep(30)\n"
)


@pytest.mark.parametrize(
    ("where", "argv", "agent"),
    [
        # the service's script, from a long path (CI's checkout cut it off the display)
        ("d" * 100 + "/locker-agent", ["{script}", "run"], True),
        ("venv/bin/locker-agent", ["-u", "{script}", "--log-level", "debug", "run"], True),
        ("agent/__main__.py", ["-um", "agent", "run"], True),  # python -um agent run
        # any program run from a folder named after it is not the agent ...
        ("opt/locker-agent/holder.py", ["{script}"], False),
        ("tools/holder.py", ["{script}", "-m", "agent", "run"], False),  # its own options
        # ... nor a technician's tool
        ("bin/locker-agent", ["{script}", "bus", "scan"], False),
    ],
)
def test_the_agent_is_known_by_its_argv_never_a_mention(tmp_path, pty_path, where, argv, agent):
    script = tmp_path / where
    script.parent.mkdir(parents=True)
    script.write_text(HOLD)
    args = [a.format(script=script) for a in argv]
    child = subprocess.Popen(
        [sys.executable, *args, pty_path], stdout=subprocess.PIPE, cwd=tmp_path
    )
    try:
        assert child.stdout.readline() == b"held\n"
        [(pid, command)] = [h for h in probes.holders(pty_path) if h[0] == child.pid]
        assert probes.is_agent(pid) is agent
        assert probes.agent_holding(pty_path) == (child.pid if agent else None)
        if len(command) > 120:
            assert probes.named([(pid, command)]).endswith("...)")  # shown cut, judged whole
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("argv", "agent"),
    [
        ("/usr/bin/python3 /opt/locker-agent/bin/locker-agent run --config x", True),
        ("/opt/locker-agent/bin/locker-agent run", True),
        ("python -m agent run", True),
        ("python -magent run", True),
        ("python -Im agent run", True),
        ("python -u -X dev -W ignore -m agent --log-level debug run", True),
        ("python -- /opt/locker-agent/bin/locker-agent run", True),
        ("python holder.py -m agent run", False),
        ("python -c pass -m agent run", False),
        ("pytest -m agent", False),
        ("python /opt/locker-agent/holder.py", False),
        ("python /opt/locker-agent/bin/locker-agent bus scan", False),
        ("python -m agent doctor", False),
        ("/opt/locker-agent/bin/locker-agent --log debug run", True),  # argparse's prefix
        ("/work/x/.venv/bin/python .venv/bin/locker-agent simulate", True),  # its agent
        ("python -m agent --log-level debug simulate --locker food", True),
        ("python -m", False),
        ("", False),
    ],
)
def test_runs_agent_reads_pythons_options(argv, agent):
    assert probes.runs_agent(argv.split()) is agent
