"""``doctor`` asks the running agent as the technician's commands do: on its Unix socket,
the server's credentials checked first; never on the API's TCP port, which anybody may
bind while the agent is down (and answer "all well")."""

from __future__ import annotations

import asyncio
import sys

from tests.agent.field.test_channel import squatting, tcp_squatter  # noqa: F401 (a fixture)
from tests.agent.field.test_doctor import locker, run_doctor  # noqa: F401 (a fixture)
from tests.conftest import NOBODY, needs_root

# Holds the serial port as the running agent would (its argv: locker-agent run).
HOLD = """
import serial, sys, time
port = serial.Serial(sys.argv[-1], 19200, exclusive=True)
print("held", flush=True)
time.sleep(60)
"""


def config(directory, port, api_port, sock):
    path = directory / "agent.toml"
    path.write_text(
        '[cloud]\nurl = "https://cloud.lockers.test"\napi_key = "k-9f3Qx1"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "t"\nsocket = "{sock}"\n'
        f'[storage]\ndir = "{directory}"\n'
        f'[[buses]]\nname = "rs485"\nport = "{port}"\nboards = [0, 1]\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "rs485", board = 0, channel = 1 }\n'
    )
    path.chmod(0o640)
    return path


async def test_no_agent_on_the_socket_the_tcp_port_is_never_asked(locker, tmp_path, tcp_squatter):  # noqa: F811
    """The port is held by a process that looks like the agent and the API's port answers
    to anybody: doctor says the agent cannot be asked, on its socket, and asks nobody else."""
    boards, _, bin_dir = locker
    api_port, heard, connections = tcp_squatter
    sock = tmp_path / "agent.sock"
    path = config(tmp_path, boards.port, api_port, sock)
    script = tmp_path / "locker-agent"
    script.write_text(HOLD)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, script, "run", boards.port, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        code, lines = await run_doctor(bin_dir, str(path))
    finally:
        holder.kill()
        await holder.wait()
    assert code == 1
    assert (
        f"skip agent: not asked (no socket at {sock}: is it running?): the checks below read"
        " the hardware"
    ) in lines
    assert (
        f"warn bus rs485: the agent holding it cannot be asked (no socket at {sock}: is it"
        " running?): systemctl status locker-agent"
    ) in lines
    assert not [line for line in lines if "hears every board" in line]
    assert connections == [] and bytes(heard) == b""


@needs_root
async def test_a_socket_another_user_serves_is_named_and_told_nothing(
    locker,  # noqa: F811
    open_dir,
    tcp_squatter,  # noqa: F811
):
    boards, _, bin_dir = locker
    api_port, heard, connections = tcp_squatter
    sock, notes = open_dir / "agent.sock", open_dir / "heard"
    squatter = await squatting(sock, notes)
    try:
        code, lines = await run_doctor(bin_dir, str(config(open_dir, boards.port, api_port, sock)))
    finally:
        squatter.kill()
        await squatter.wait()
    assert code == 1
    (agent,) = [line for line in lines if line.startswith("FAIL agent: ")]
    assert f"{sock} is served by pid {squatter.pid} (uid {NOBODY} nobody)" in agent
    assert agent.endswith("nothing was sent: stop that process, then restart locker-agent")
    assert not notes.exists() or notes.read_bytes() == b""
    assert connections == [] and bytes(heard) == b""
    # Nobody holds the port: doctor read the boards itself.
    assert "ok   bus rs485 board 0: answers (16/16 locks closed)" in lines


async def test_doctor_escapes_the_reasons_the_agent_gives_on_its_socket(tmp_path):
    import asyncio

    from aiohttp import web

    from agent.field.running import Health, agent_line, ask_agent

    async def health(request):
        return web.json_response({"reasons": ["board 0 silent\x1b[2J"]}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "a\x1b[2J.sock"
    await web.UnixSite(runner, str(sock)).start()
    try:
        found = await asyncio.to_thread(ask_agent, sock)
    finally:
        await runner.cleanup()
    where = str(tmp_path / "a\\x1b[2J.sock")
    assert found == Health(where, 503, ["board 0 silent\\x1b[2J"])
    assert "\x1b" not in agent_line(found)[2]
