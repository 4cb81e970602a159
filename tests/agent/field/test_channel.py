"""The technician's CLI, as a process, against what is not the agent: a squatter on the
API's TCP port, a squatter of another user on the socket's path, a socket nobody
serves, and a (trusted) server whose answers carry control characters."""

import asyncio
import socket

import pytest
from aiohttp import web

from tests.agent.field.test_technician import cli
from tests.conftest import NOBODY, as_user, needs_root

TOKEN = "the-token-Zk81qT"
COMMANDS = (("status",), ("open", "3"), ("selftest", "--yes", "--pause-s", "0"))

# As another user: serve a socket path like an agent would (200, a cabinet list), and
# write down every byte a client sends.
SQUAT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen()
print("listening", flush=True)
body = b'[{"key": 3, "state": "closed", "enabled": true, "occupied": 0, "alarms": []}]'
while True:
    conn, _ = s.accept()
    print("connected", flush=True)
    conn.settimeout(2)
    try:
        while data := conn.recv(65536):
            with open(sys.argv[2], "ab") as f:
                f.write(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass
    conn.close()
"""


def write_config(directory, sock, port):
    path = directory / "agent.toml"
    path.write_text(
        '[cloud]\nurl = "http://127.0.0.1:9"\napi_key = "k-9f3Qx1"\n'
        f'[api]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\nsocket = "{sock}"\n'
        f'[storage]\ndir = "{directory}"\n'
        '[[buses]]\nname = "rs485"\nport = "/dev/ttyUSB9"\nboards = [0]\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "rs485", board = 0, channel = 1 }\n'
    )
    return str(path)


async def squatting(sock, notes) -> asyncio.subprocess.Process:
    """The squatter of another user (nobody) serving ``sock``, once it listens; the
    caller kills it."""
    argv, kw = as_user(SQUAT, sock, notes)
    squatter = await asyncio.create_subprocess_exec(*argv, **kw, stdout=asyncio.subprocess.PIPE)
    assert await asyncio.wait_for(squatter.stdout.readline(), 10) == b"listening\n"
    return squatter


@pytest.fixture
async def tcp_squatter():
    """Something listening on a loopback port, as anybody may while the agent is down;
    yields (port, every byte received)."""
    heard = bytearray()
    connections = []

    async def note(reader, writer):
        connections.append(1)
        heard.extend(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(note, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], heard, connections
    server.close()
    await server.wait_closed()


async def test_with_the_agent_down_the_port_squatter_gets_nothing(tmp_path, tcp_squatter):
    port, heard, connections = tcp_squatter
    path = write_config(tmp_path, tmp_path / "agent.sock", port)
    for command in COMMANDS:
        code, out, err = await cli(*command, "--config", path)
        assert code == 2, (command, out, err)
        assert "no socket at" in err and "is it running?" in err
    assert connections == [] and bytes(heard) == b""  # not asked, let alone given the token


@needs_root
async def test_a_socket_served_by_another_user_is_refused_and_told_nothing(open_dir, tcp_squatter):
    port, heard, connections = tcp_squatter
    sock, notes = open_dir / "agent.sock", open_dir / "heard"
    squatter = await squatting(sock, notes)
    try:
        path = write_config(open_dir, sock, port)
        for command in COMMANDS:
            code, out, err = await cli(*command, "--config", path)
            assert code == 2, (command, out, err)
            assert f"is served by pid {squatter.pid} (uid {NOBODY} nobody)" in err
            assert "not by the agent" in err and "nothing was sent" in err
            assert out == "" or "opened" not in out
            # It did reach the squatter: refused by the credentials, not by chance.
            assert await asyncio.wait_for(squatter.stdout.readline(), 10) == b"connected\n"
    finally:
        squatter.kill()
        await squatter.wait()
    assert not notes.exists() or notes.read_bytes() == b""
    assert connections == [] and bytes(heard) == b""
    assert TOKEN not in err


async def test_a_socket_nobody_serves_says_the_agent_stopped(tmp_path):
    sock = tmp_path / "agent.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(sock))
    left.close()
    code, _, err = await cli("status", "--socket", str(sock))
    assert code == 2 and "nobody serves" in err and "left by an agent that stopped" in err


ESC = "\x1b"
HOSTILE = f"{ESC}]0;pwned\a{ESC}[2J"


@pytest.fixture
async def odd_agent(tmp_path):
    """A server the CLI trusts (root, or this user) whose every text carries control
    characters: the CLI must print them escaped. Yields its socket's path."""
    cabinet = {
        "key": 3,
        "state": "open",
        "enabled": True,
        "occupied": 0,
        "size": HOSTILE,
        "rear_load_status": f"closed{ESC}[8m",
        "thermal": {"mode": HOSTILE, "heating": False, "cooling": True, "sensor": "ok"},
        "temperature_c": 4.2,
        "alarms": [{"type": f"door{ESC}[31m_forced", "side": "front\nselftest: all opened"}],
    }
    routes = web.RouteTableDef()

    @routes.get("/api/lockers/cabinets")
    async def cabinets(request):
        return web.json_response([cabinet, cabinet | {"key": 4}])

    @routes.get("/api/lockers/cabinets/{key}")
    async def one(request):
        return web.json_response(cabinet | {"key": int(request.match_info["key"])})

    @routes.get("/healthz")
    async def health(request):
        return web.json_response({"status": f"ok{ESC}[5m", "reasons": [HOSTILE]}, status=503)

    @routes.put("/api/lockers/cabinets/{key}")
    async def act(request):
        if request.match_info["key"] == "4":
            return web.json_response({"type": HOSTILE, "message": f"no{ESC}[1m"}, status=409)
        return web.json_response(cabinet | {"state": f"closed{ESC}[7m"})

    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    path = tmp_path / "odd.sock"
    await web.UnixSite(runner, str(path)).start()
    yield path
    await runner.cleanup()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("status",), 1),  # degraded
        (("open", "3"), 0),
        (("open", "4"), 1),  # refused
        (("selftest", "--yes", "--pause-s", "0"), 1),  # the switches do not say open
    ],
)
async def test_control_characters_from_the_agent_are_escaped(odd_agent, command, expected):
    code, out, err = await cli(*command, "--socket", str(odd_agent))
    assert code == expected, out + err
    assert ESC not in out + err and "\a" not in out + err
    assert "\\x1b" in out + err
    # A newline in a field cannot forge a line of output.
    assert not [line for line in out.splitlines() if line.startswith("selftest: all opened")]


async def test_a_refusal_of_our_credentials_says_how_to_ask(tmp_path):
    async def forbidden(request):
        body = {"type": "FORBIDDEN", "message": f"pid 1 (uid 1000 tech) may not{ESC}[2J"}
        return web.json_response(body, status=403)

    app = web.Application()
    app.router.add_get("/api/lockers/cabinets", forbidden)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(tmp_path / "a.sock")).start()
    try:
        code, _, err = await cli("status", "--socket", str(tmp_path / "a.sock"))
    finally:
        await runner.cleanup()
    assert code == 2 and "refuses this user" in err and "group locker-agent" in err
    assert ESC not in err
