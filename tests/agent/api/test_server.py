"""The local API on a real aiohttp server on loopback."""

import asyncio
import json

import aiohttp
import pytest
from pydantic import SecretStr

from agent.api.server import MAX_BODY, LocalApi

TOKEN = "s3cret-token"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(locker, actuator):
    problems: list[str] = []
    server = LocalApi(locker, SecretStr(TOKEN), lambda: problems, "127.0.0.1", 0)
    await server.start()
    server.ready = True
    server.problems_list = problems
    yield server
    await server.close()


@pytest.fixture
async def http(api):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{api.port}", headers=headers
    ) as session:
        yield session


async def test_list_and_get(http):
    async with http.get("/api/lockers/cabinets") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [c["key"] for c in body] == list(range(6))
    assert body[0] == {
        "key": 0,
        "state": "closed",
        "enabled": True,
        "size": "mini",
        "occupied": 0,
        "thermal_mode": "ambient",
        "rear_load_status": "closed",
        "recorded": True,
        "temperature_c": None,
        "thermal": None,
        "alarms": [],
    }
    async with http.get("/api/lockers/cabinets/4") as resp:
        assert (await resp.json())["rear_load_status"] is None


async def test_put_open(http, actuator):
    async with http.put("/api/lockers/cabinets/5", json={"command": "open"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["state"] == "open"
    assert actuator.pulses == [(5, "front")]


async def test_secret_token_query_works(api):
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{api.port}/api/lockers/cabinets?secret_token={TOKEN}") as resp,
    ):
        assert resp.status == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
)
async def test_wrong_or_missing_token_is_401(api, headers):
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{api.port}/api/lockers/cabinets", headers=headers) as resp,
    ):
        assert resp.status == 401
        body = await resp.json()
    assert body["type"] == "INVALID_TOKEN"
    assert TOKEN not in str(body)


async def test_healthz_needs_no_auth_and_reports_problems(api):
    url = f"http://127.0.0.1:{api.port}/healthz"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as resp:
            assert resp.status == 200
        api.problems_list.append("bus rs485 board 1: not answering")
        async with s.get(url) as resp:
            assert resp.status == 503
            assert (await resp.json())["reasons"] == ["bus rs485 board 1: not answering"]


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "type_"),
    [
        ("PUT", "/api/lockers/cabinets/99", b'{"command":"open"}', 404, "NOT_FOUND"),
        ("PUT", "/api/lockers/cabinets/abc", b'{"command":"open"}', 404, "NOT_FOUND"),
        ("PUT", "/api/lockers/cabinets/-1", b'{"command":"open"}', 404, "NOT_FOUND"),
        ("GET", "/api/lockers/cabinets/99999999999999999999", None, 404, "NOT_FOUND"),
        ("PUT", "/api/lockers/cabinets/1", b"{not json", 400, "INVALID_REQUEST"),
        ("PUT", "/api/lockers/cabinets/1", b"\xff\xfe", 400, "INVALID_REQUEST"),
        ("PUT", "/api/lockers/cabinets/1", b"", 400, "INVALID_REQUEST"),
        ("PUT", "/api/lockers/cabinets/1", b"[1, 2]", 422, "INVALID_REQUEST"),
        ("PUT", "/api/lockers/cabinets/1", b'{"command":"resize"}', 422, "INVALID_REQUEST"),
        ("PUT", "/api/lockers/cabinets/1", b'{"command":"fly"}', 422, "INVALID_REQUEST"),
        ("PUT", "/api/lockers/cabinets/4", b'{"command":"open","rearload":true}', 409, "CONFLICT"),
        ("DELETE", "/api/lockers/cabinets/1", None, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/nope", None, 404, "NOT_FOUND"),
    ],
)
async def test_bad_requests_are_json_4xx(http, method, path, data, status, type_):
    async with http.request(method, path, data=data, headers=JSON) as resp:
        assert resp.status == status
        body = await resp.json()
    assert body["status_code"] == status
    assert body["type"] == type_
    assert body["message"]


async def test_422_names_the_field(http):
    async with http.put("/api/lockers/cabinets/1", json={"command": "resize"}) as resp:
        body = await resp.json()
    assert body["errors"] == {"size": ["required when command is resize"]}


async def test_oversized_body_is_413(http):
    data = b'{"command": "open", "reason": "' + b"x" * (MAX_BODY * 2) + b'"}'
    async with http.put("/api/lockers/cabinets/1", data=data, headers=JSON) as resp:
        assert resp.status == 413
        assert (await resp.json())["type"] == "PAYLOAD_TOO_LARGE"


async def test_healthz_is_503_until_ready(api):
    api.ready = False
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{api.port}/healthz") as resp,
    ):
        assert resp.status == 503


async def test_idempotency_key_acts_once(http, actuator, locker):
    headers = {"Idempotency-Key": "order-46188-open"}
    url = "/api/lockers/cabinets/3"
    async with http.put(url, json={"command": "open"}, headers=headers) as resp:
        first = await resp.json()
    locker.door_sensed(3, "front", False)  # the door was shut meanwhile
    async with http.put(url, json={"command": "open"}, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == first
    assert actuator.pulses == [(3, "front")]
    async with http.put(url, json={"command": "open"}) as resp:  # no key: acts again
        assert resp.status == 200
    assert actuator.pulses == [(3, "front"), (3, "front")]


async def test_open_all(http, actuator):
    async with http.post("/api/lockers/open-all", json={}) as resp:
        assert resp.status == 200
        results = await resp.json()
    assert [r["key"] for r in results] == list(range(6))
    assert all(r["ok"] for r in results)
    async with http.post("/api/lockers/open-all", json={"rearload": True}) as resp:
        results = await resp.json()
    assert [r["key"] for r in results] == [0, 1]
    async with http.post("/api/lockers/open-all", json={"rearload": "yes"}) as resp:
        assert resp.status == 422


@pytest.mark.parametrize(
    ("method", "path", "data", "status"),
    [
        ("GET", "/api/lockers/cabinets/%C2%B2", None, 404),  # "²" is a digit to str.isdigit
        ("PUT", "/api/lockers/cabinets/1", b"[" * 5000, 400),  # nesting past the parser
        ("PUT", "/api/lockers/cabinets/1", b"9" * 5000, 400),  # an int past Python's limit
        ("POST", "/api/lockers/open-all", b'{"reason": "' + b"x" * 600 + b'"}', 422),
    ],
)
async def test_hostile_input_is_never_a_500(http, method, path, data, status):
    async with http.request(method, path, data=data, headers=JSON) as resp:
        assert resp.status == status
        assert (await resp.json())["status_code"] == status


async def test_non_utf8_authorization_is_401(api):
    request = (
        b"GET /api/lockers/cabinets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    assert answer.split(b" ")[1] in (b"400", b"401"), answer[:100]


async def test_an_id_reused_for_another_command_is_refused(http, actuator):
    headers = {"Idempotency-Key": "k-1"}
    async with http.put("/api/lockers/cabinets/1", json={"command": "open"}, headers=headers) as r:
        assert r.status == 200
    async with http.put("/api/lockers/cabinets/2", json={"command": "open"}, headers=headers) as r:
        assert r.status == 422
    assert actuator.pulses == [(1, "front")]


async def test_commands_wait_until_ready(api, http, actuator):
    api.ready = False
    async with http.put("/api/lockers/cabinets/1", json={"command": "open"}) as resp:
        assert resp.status == 503
    assert actuator.pulses == []


async def test_an_idempotency_key_too_long_is_422(http, actuator):
    headers = {"Idempotency-Key": "x" * 500}
    async with http.put("/api/lockers/cabinets/1", json={"command": "open"}, headers=headers) as r:
        assert r.status == 422
        assert (await r.json())["type"] == "INVALID_REQUEST"
    assert actuator.pulses == []


async def raw_exchange(port: int, request: bytes, *, byte_by_byte: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in [request[i : i + 1] for i in range(len(request))] if byte_by_byte else [request]:
        writer.write(part)
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("head", "body", "status"),
    [
        ("PUT /api/lockers/cabinets/1 HTTP/1.1\r\nContent-Encoding: gzip", b"garbage!", 415),
        ("PUT /api/lockers/cabinets/1 HTTP/1.1\r\nContent-Encoding: br", b"garbage!", 415),
        ("PUT /api/lockers/cabinets/1 HTTP/1.1\r\nTransfer-Encoding: chunked", b"0\r\n\r\n", 411),
        ("PUT /api/lockers/cabinets/1 HTTP/1.1\r\nContent-Length: 1e3", b"", 400),
        (
            "PUT /api/lockers/cabinets/1 HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0",
            b"",
            400,
        ),
        ("BREW /api/lockers/cabinets HTTP/1.1", b"", 501),
        ("GET /api/lockers/cabinets HTTP/1.1\r\nExpect: the-unexpected", b"", 417),
        ("GET /api/lockers/cabinets HTTP/1.1\r\nX-Null: a\x00b", b"", 400),
        ("GET /api/lockers/cabinets HTTP/1.1\r\n folded: header", b"", 400),
        ("GET /api/lockers/cabinets?a=<b> HTTP/1.1", b"", 400),
        ("GET /api/lockers/cabinets HTTP/1.1\r\nHost: 127.0.0.1", b"", 400),  # two Hosts
        ("GET /api/lockers/cabinets HTTP/1.1\r\nX-Long: " + "x" * 9000, b"", 400),
    ],
)
async def test_a_malformed_head_is_answered_in_json(api, head, body, status):
    request = head.replace("HTTP/1.1", "HTTP/1.1\r\nHost: 127.0.0.1", 1).encode("latin-1")
    request += f"\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
    if b"Content-Length" not in request and b"Transfer-Encoding" not in request:
        request += f"Content-Length: {len(body)}\r\n".encode()
    answer = await raw_exchange(api.port, request + b"\r\n" + body)
    head_out, _, payload = answer.partition(b"\r\n\r\n")
    assert head_out.split(b" ")[1] == str(status).encode(), answer[:120]
    assert json.loads(payload)["status_code"] == status


async def test_a_request_sent_a_byte_at_a_time_is_served(api, actuator):
    body = b'{"command": "open"}'
    request = (
        "PUT /api/lockers/cabinets/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    answer = await raw_exchange(api.port, request, byte_by_byte=True)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert actuator.pulses == [(2, "front")]


async def test_expect_100_continue_is_served(api, actuator):
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    body = b'{"command": "open"}'
    writer.write(
        (
            "PUT /api/lockers/cabinets/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(body)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert actuator.pulses == [(2, "front")]


async def test_a_refused_head_is_answered_even_while_the_client_keeps_sending(api):
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(b"GET /api/lockers/cabinets?a=<b> HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    junk = b"X-Junk: " + b"j" * 1000 + b"\r\n"
    for _ in range(200):  # 200 kB after the line that is refused
        writer.write(junk)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert json.loads(payload)["type"] == "INVALID_REQUEST"


async def test_a_command_a_stop_ends_is_answered_its_outcome_unknown(http, locker, actuator):
    """A stop ends an open still waiting for its door, and its repeat (the same
    Idempotency-Key) waiting on it: both are answered 409 with the outcome unknown (read
    the state, never send it again), neither a dropped request."""
    actuator.jammed.add((0, "front"))  # the pulse goes, the switch never moves
    body, headers = {"command": "open"}, {"Idempotency-Key": "k-1"}
    url = "/api/lockers/cabinets/0"
    first = asyncio.create_task(http.put(url, json=body, headers=headers))
    async with asyncio.timeout(3):
        while not actuator.pulses:
            await asyncio.sleep(0.01)
    again = asyncio.create_task(http.put(url, json=body, headers=headers))
    async with asyncio.timeout(3):
        while len(locker._running) < 2:
            await asyncio.sleep(0.01)
    await locker.drain(0.01)
    for put in (first, again):
        async with await put as resp:
            assert resp.status == 409
            said = (await resp.json())["message"]
        assert said.startswith("the agent stopped") and "outcome is unknown" in said
    assert actuator.pulses == [(0, "front")]  # the stop pulsed nothing more


async def test_a_repeat_stopped_with_its_first_gets_the_firsts_answer(http, locker, actuator):
    """One id, one answer: a disable waits behind a jammed open, its repeat (the same
    Idempotency-Key) waits on it, and a stop ends all three. The disable had not acted
    ("send it again", 503); its repeat says the same, not "outcome unknown"."""
    actuator.jammed.add((0, "front"))
    url = "/api/lockers/cabinets/0"
    opening = asyncio.create_task(http.put(url, json={"command": "open"}))
    async with asyncio.timeout(3):
        while not actuator.pulses:
            await asyncio.sleep(0.01)
    body, headers = {"command": "disable"}, {"Idempotency-Key": "d-1"}
    puts = []
    for running in (2, 3):
        puts.append(asyncio.create_task(http.put(url, json=body, headers=headers)))
        async with asyncio.timeout(3):
            while len(locker._running) < running:
                await asyncio.sleep(0.01)
    await locker.drain(0.01)
    answers = []
    for put in puts:
        async with await put as resp:
            answers.append((resp.status, (await resp.json())["message"]))
    assert answers[0] == answers[1] and answers[0][0] == 503, answers
    async with await opening as resp:
        assert resp.status == 409  # it pulsed: its outcome unknown
    assert locker.get(0).as_cloud()["enabled"] is True  # the disable never acted
