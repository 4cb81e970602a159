"""The local API on the technicians' Unix socket: the same routes, admitted by the
peer's credentials (real processes as other users), and the socket file's life."""

import asyncio
import json
import os
import socket
import stat

import aiohttp
import pytest
from pydantic import SecretStr

from agent.api.peers import PeerPolicy, unix_address
from agent.api.server import LocalApi
from agent.api.unix import SocketUnavailable
from tests.conftest import NOBODY, as_user, needs_root

TOKEN = "s3cret-token"

# As another user: one request on the socket, the raw answer on stdout.
ASK = r"""
import socket, sys
path, method, target = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else b""
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(path)
head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
if body:
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
s.sendall(head.encode() + b"\r\n" + body)
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.write(data.decode())
"""

# As another user: listen at a path, note every byte any client sends, until killed.
SQUAT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen()
print("listening", flush=True)
while True:
    conn, _ = s.accept()
    conn.settimeout(2)
    try:
        while data := conn.recv(65536):
            with open(sys.argv[2], "ab") as f:
                f.write(data)
    except OSError:
        pass
    conn.close()
"""


async def make_api(locker, path, **options):
    api = LocalApi(locker, SecretStr(TOKEN), list, "127.0.0.1", 0, socket=path, **options)
    await api.start()
    api.ready = True
    return api


@pytest.fixture
async def api(locker, actuator, tmp_path):
    server = await make_api(locker, tmp_path / "agent.sock")
    yield server
    await server.close()


def unix_session(path):
    return aiohttp.ClientSession(
        "http://localhost", connector=aiohttp.UnixConnector(path=str(path))
    )


async def ask_as(path, method, target, body=None, **who):
    """One request on the socket from a process of another user: (status, JSON)."""
    args = [path, method, target] + ([json.dumps(body)] if body is not None else [])
    argv, kw = as_user(ASK, *args, **who)
    proc = await asyncio.create_subprocess_exec(*argv, **kw, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    head, _, payload = out.decode().partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def test_the_socket_serves_the_same_routes_without_the_token(api, actuator):
    assert stat.S_IMODE(os.stat(api.socket).st_mode) == 0o660
    async with unix_session(api.socket) as http:
        async with http.get("/api/lockers/cabinets") as resp:
            assert resp.status == 200
            assert [c["key"] for c in await resp.json()] == list(range(6))
        async with http.put("/api/lockers/cabinets/3", json={"command": "open"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["state"] == "open"
        async with http.get("/healthz") as resp:
            assert (await resp.json())["socket"]["path"] == str(api.socket)
    assert actuator.pulses == [(3, "front")]
    # The TCP API is as DESIGN.md says: the token is still needed there.
    async with aiohttp.ClientSession(f"http://127.0.0.1:{api.port}") as http:
        async with http.get("/api/lockers/cabinets") as resp:
            assert resp.status == 401
        async with http.put("/api/lockers/cabinets/4", json={"command": "open"}) as resp:
            assert resp.status == 401
    assert actuator.pulses == [(3, "front")]


@needs_root
async def test_a_peer_neither_root_nor_the_agent_nor_the_group_is_refused(
    locker, actuator, open_dir
):
    api = await make_api(locker, open_dir / "agent.sock")
    try:
        os.chmod(api.socket, 0o666)  # file modes gone wrong: the credentials still hold
        status, body = await ask_as(
            api.socket, "PUT", "/api/lockers/cabinets/2", {"command": "open"}
        )
        assert status == 403 and body["type"] == "FORBIDDEN"
        assert f"uid {NOBODY}" in body["message"]
        status, _ = await ask_as(api.socket, "GET", "/api/lockers/cabinets")
        assert status == 403
        assert actuator.pulses == []
        assert api.socket_gate.stats()["peers_refused"] == 2
    finally:
        await api.close()


@needs_root
@pytest.mark.parametrize("as_member", ["primary", "supplementary"])
async def test_a_member_of_the_service_group_is_served(locker, actuator, open_dir, as_member):
    group = 4242  # a group id needs no name to be held
    api = await make_api(
        locker, open_dir / "agent.sock", peers=PeerPolicy(frozenset({0}), frozenset({group}))
    )
    try:
        os.chmod(api.socket, 0o666)
        who = {"gid": group} if as_member == "primary" else {"groups": [group]}
        status, body = await ask_as(
            api.socket, "PUT", "/api/lockers/cabinets/2", {"command": "open"}, **who
        )
        assert status == 200 and body["state"] == "open"
        status, _ = await ask_as(api.socket, "GET", "/api/lockers/cabinets")  # no group
        assert status == 403
        assert actuator.pulses == [(2, "front")]
    finally:
        await api.close()


async def test_a_stale_socket_is_replaced_and_the_socket_removed_at_stop(locker, tmp_path):
    path = tmp_path / "agent.sock"
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))  # a crashed agent's file: nobody listens
    crashed.close()
    api = await make_api(locker, path)
    async with unix_session(path) as http, http.get("/healthz") as resp:
        assert resp.status == 200
    await api.close()
    assert not path.exists()


async def test_a_live_agent_on_the_socket_stops_the_second_one(locker, tmp_path):
    path = tmp_path / "agent.sock"
    first = await make_api(locker, path)
    try:
        second = LocalApi(locker, SecretStr(TOKEN), list, "127.0.0.1", 0, socket=path)
        with pytest.raises(SocketUnavailable, match="another agent serves"):
            await second.start()
        assert second.connections == 0
        async with unix_session(path) as http, http.get("/healthz") as resp:
            assert resp.status == 200  # the first one's socket is untouched
    finally:
        await first.close()


async def test_what_is_not_a_socket_is_left_alone(locker, tmp_path):
    path = tmp_path / "agent.sock"
    path.write_text("a technician's notes\n")
    api = LocalApi(locker, SecretStr(TOKEN), list, "127.0.0.1", 0, socket=path)
    with pytest.raises(SocketUnavailable, match="not a socket"):
        await api.start()
    assert path.read_text() == "a technician's notes\n"


@needs_root
async def test_a_squatter_cannot_keep_the_agent_down(locker, open_dir):
    path, notes = open_dir / "agent.sock", open_dir / "heard"
    argv, kw = as_user(SQUAT, path, notes)
    squatter = await asyncio.create_subprocess_exec(*argv, **kw, stdout=asyncio.subprocess.PIPE)
    try:
        assert await asyncio.wait_for(squatter.stdout.readline(), 10) == b"listening\n"
        api = await make_api(locker, path)
        try:
            assert path.stat().st_uid == 0  # the agent's socket now, not the squatter's
            async with unix_session(path) as http, http.get("/healthz") as resp:
                assert resp.status == 200
        finally:
            await api.close()
    finally:
        squatter.kill()
        await squatter.wait()
    assert not notes.exists() or notes.read_bytes() == b""  # the probe sent nothing


async def test_a_path_longer_than_a_socket_address_works(locker, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "agent.sock"
    assert len(str(path)) > 107
    api = await make_api(locker, path)
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        with unix_address(path) as address:  # /proc/self/fd/N/agent.sock
            async with unix_session(address) as http, http.get("/healthz") as resp:
                assert resp.status == 200
    finally:
        await api.close()
    assert not path.exists()
