"""Slow clients cannot starve the agent, and a flood of opens cannot wear out a lock.

The attack (slowloris): at the systemd default of 1024 open files, 1,100
connections each trickling a header line every few seconds filled the agent's
descriptors; /healthz and every authenticated request timed out. Here the process's
descriptor limit is lowered for the test, the slow connections live in this same
process (so they cost descriptors twice), and a technician must still get in.
"""

import asyncio
import json
import os
import resource

import aiohttp
import pytest
from pydantic import SecretStr

from agent.api.server import LocalApi, RateLimit

TOKEN = "limits-t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HEAD = "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def make_api(locker, **options) -> LocalApi:
    return LocalApi(locker, SecretStr(TOKEN), list, "127.0.0.1", 0, **options)


@pytest.fixture
async def serve(locker, actuator):
    """``await serve(**options)``: a started, ready LocalApi; closed after the test."""
    started = []

    async def start(**options) -> LocalApi:
        api = make_api(locker, **options)
        await api.start()
        api.ready = True
        started.append(api)
        return api

    yield start
    for api in started:
        await api.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: status, headers, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return int(status_line.split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the connection (bounded wait, not a timing claim)."""
    try:
        rest = await asyncio.wait_for(reader.read(), 20)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return rest == b""


async def test_slow_clients_cannot_starve_the_agent(serve, actuator, caplog):
    api = await serve()  # the default cap: 64 connections
    cap = api.gate.max_connections
    attackers = 400
    used = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Room for every attacker's own socket, the cap, and a little more: without the
    # cap the agent would need `attackers` more descriptors than this.
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + attackers + cap + 40, hard))
    slow: list[asyncio.StreamWriter] = []
    peak = 0
    try:
        for _ in range(attackers):
            _, writer = await asyncio.open_connection("127.0.0.1", api.port)
            writer.write(HEAD.format(method="GET", target="/healthz").encode())
            slow.append(writer)
            await asyncio.sleep(0)
            peak = max(peak, api.connections)
        for _ in range(3):  # the trickle: one more header line on each
            for writer in slow:
                if not writer.is_closing():
                    writer.write(b"X-Slow: 1\r\n")
            await asyncio.sleep(0.05)
            peak = max(peak, api.connections)

        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{api.port}", connector=connector
        ) as technician:
            async with technician.get("/healthz") as resp:
                assert resp.status == 200
            async with technician.get("/api/lockers/cabinets", headers=BEARER) as resp:
                assert resp.status == 200
            async with technician.put(
                "/api/lockers/cabinets/5", json={"command": "open"}, headers=BEARER
            ) as resp:
                assert resp.status == 200
            peak = max(peak, api.connections)
    finally:
        for writer in slow:
            writer.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert peak == cap  # filled up to the cap, never past it
    assert api.gate.stats()["displaced"] >= attackers - cap
    assert actuator.pulses == [(5, "front")]
    assert not [r for r in caplog.records if r.name == "asyncio"]  # no accept errors


async def test_a_connection_that_sends_nothing_is_closed(serve):
    api = await serve(head_timeout_s=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    assert await closed_by_server(reader)
    writer.close()
    assert api.gate.stats()["timed_out"] == 1


async def test_a_head_trickled_a_line_at_a_time_is_closed(serve):
    api = await serve(head_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(HEAD.format(method="GET", target="/healthz").encode())
    for _ in range(100):  # a header line every 50 ms, until the server hangs up
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(b"X-Slow: 1\r\n")
        try:
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.05)
    assert await closed_by_server(reader)
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(serve):
    api = await serve(head_timeout_s=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write((HEAD.format(method="GET", target="/healthz") + "\r\n").encode())
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers.get("connection", "keep-alive") != "close"
    assert await closed_by_server(reader)
    writer.close()


async def test_keep_alive_serves_several_requests(serve):
    api = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    request = HEAD.format(method="GET", target="/api/lockers/cabinets/1")
    request += f"Authorization: Bearer {TOKEN}\r\n\r\n"
    writer.write(request.encode() * 3)  # pipelined
    for _ in range(3):
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["key"] == 1
    writer.close()


async def test_a_body_too_slow_is_408(serve, actuator):
    api = await serve(body_timeout_s=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    head = HEAD.format(method="PUT", target="/api/lockers/cabinets/1")
    head += f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    writer.write((head + "Content-Length: 100\r\n\r\n" + '{"command": "op').encode())
    status, headers, body = await read_response(reader)
    assert (status, json.loads(body)["type"]) == (408, "REQUEST_TIMEOUT")
    assert headers["connection"] == "close"
    assert await closed_by_server(reader)
    writer.close()
    assert actuator.pulses == []


async def test_a_body_nobody_reads_still_has_a_deadline(serve):
    # 404 before the body is read: the connection must not wait for it for ever.
    api = await serve(body_timeout_s=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    head = HEAD.format(method="PUT", target="/api/lockers/cabinets/99")
    head += f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    writer.write((head + "Content-Length: 100\r\n\r\n{").encode())
    status, _, _ = await read_response(reader)
    assert status == 404
    assert await closed_by_server(reader)
    writer.close()


async def test_at_the_cap_a_new_client_displaces_an_idle_one(serve):
    api = await serve(max_connections=2)
    idle = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(2)]
    await asyncio.sleep(0)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{api.port}/healthz") as r:
        assert r.status == 200
    assert await closed_by_server(idle[0][0])  # the longest waiting went
    assert api.connections <= 2
    for _, writer in idle:
        writer.close()


async def test_at_the_cap_with_every_request_in_progress_a_new_one_gets_503(
    serve, locker, actuator
):
    api = await serve(max_connections=2)
    held = [locker.cabinets[k].lock for k in (1, 2)]
    for lock in held:  # each command waits for its cabinet: both stay in progress
        await lock.acquire()
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{api.port}", headers=BEARER
    ) as http:
        puts = [
            asyncio.create_task(http.put(f"/api/lockers/cabinets/{k}", json={"command": "open"}))
            for k in (1, 2)
        ]
        for _ in range(500):
            if api.gate.stats()["busy"] == 2:
                break
            await asyncio.sleep(0.01)
        assert api.gate.stats()["busy"] == 2
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        status, headers, body = await read_response(reader)
        writer.close()
        assert (status, json.loads(body)["type"]) == (503, "UNAVAILABLE")
        assert headers["retry-after"] == "1"
        for lock in held:
            lock.release()
        for task in puts:
            async with await task as resp:
                assert resp.status == 200
    assert sorted(actuator.pulses) == [(1, "front"), (2, "front")]


async def test_a_request_that_never_gets_an_answer_is_given_up(serve, locker, actuator):
    api = await serve()
    api.gate.busy_timeout_s = 0.2  # the backstop for a stuck answer (5 minutes)
    lock = locker.cabinets[1].lock
    await lock.acquire()  # the command waits for its cabinet
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        body = '{"command": "open"}'
        head = HEAD.format(method="PUT", target="/api/lockers/cabinets/1")
        head += f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode())
        assert await closed_by_server(reader)
        writer.close()
        assert api.connections == 0
    finally:
        lock.release()


async def test_a_flood_of_opens_pulses_a_lock_only_as_often_as_it_may(serve, actuator):
    api = await serve(cabinet_rate=RateLimit(burst=2, interval_s=3600))
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{api.port}", headers=BEARER
    ) as http:

        async def open_3() -> tuple[int, dict, dict]:
            async with http.put("/api/lockers/cabinets/3", json={"command": "open"}) as resp:
                return resp.status, dict(resp.headers), await resp.json()

        answers = await asyncio.gather(*(open_3() for _ in range(30)))
        async with http.put("/api/lockers/cabinets/4", json={"command": "open"}) as resp:
            assert resp.status == 200  # another lock is not held back
        async with http.post("/api/lockers/open-all", json={}) as resp:
            assert resp.status == 429  # it would pulse cabinet 3 again
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 2 + [429] * 28
    refused = [(h, b) for status, h, b in answers if status == 429]
    assert all(b["type"] == "TOO_MANY_REQUESTS" and b["status_code"] == 429 for _, b in refused)
    assert all(int(h["Retry-After"]) >= 1 for h, _ in refused)
    assert actuator.pulses.count((3, "front")) == 1  # the two let through pile up: one pulse


async def test_the_rate_refills_with_time(serve, actuator):
    now = [0.0]
    api = await serve(
        cabinet_rate=RateLimit(burst=1, interval_s=2.0),
        api_rate=RateLimit(burst=2, interval_s=10.0),
        clock=lambda: now[0],
    )
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{api.port}", headers=BEARER
    ) as http:

        async def open_(key: int) -> tuple[int, str | None]:
            async with http.put(f"/api/lockers/cabinets/{key}", json={"command": "open"}) as r:
                return r.status, r.headers.get("Retry-After")

        assert await open_(1) == (200, None)
        assert await open_(1) == (429, "2")  # this cabinet: one per 2 s
        assert await open_(2) == (200, None)
        assert await open_(3) == (429, "10")  # the whole API: two per 10 s
        now[0] = 10.0
        assert await open_(1) == (200, None)
    assert actuator.pulses == [(1, "front"), (2, "front"), (1, "front")]


async def test_a_repeat_of_an_answered_key_is_not_rate_limited(serve, actuator):
    """A client retrying an Idempotency-Key gets its first answer, not a 429."""
    api = await serve()
    headers = {"Authorization": "Bearer " + TOKEN, "Idempotency-Key": "retry-me"}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{api.port}/api/lockers/cabinets/4"
        statuses = []
        for _ in range(8):  # past the cabinet's burst of three
            async with http.put(url, json={"command": "open"}, headers=headers) as resp:
                statuses.append(resp.status)
    assert statuses == [200] * 8
    assert actuator.pulses == [(4, "front")]
