"""A web page cannot act through the local API, and a Host it does not serve is refused.

The attack: a page on the LAN (or anywhere, through DNS rebinding) that knows the
token makes the technician's browser send an HTML form (``enctype=text/plain``, no
preflight) to ``POST /api/lockers/open-all?secret_token=TOKEN``. Each defence is
tried alone, over a raw socket so every header is exactly what a browser sends.
"""

import asyncio
import json

import pytest
from pydantic import SecretStr

from agent.api.server import LocalApi

TOKEN = "browser-t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
OPEN = b'{"command": "open"}'


@pytest.fixture
async def api(locker, actuator):
    server = LocalApi(
        locker, SecretStr(TOKEN), list, "127.0.0.1", 0, allowed_hosts=["lobby-a.local"]
    )
    await server.start()
    server.ready = True
    yield server
    await server.close()


async def call(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str | None],
    body: bytes = b"",
) -> tuple[int, dict]:
    """One request on its own connection; ``Host`` is 127.0.0.1:port unless given
    (None: no Host line at all). Returns the status and the JSON body."""
    lines = [f"{method} {target} HTTP/1.1"]
    merged = {"Host": f"127.0.0.1:{port}"} | headers
    lines += [f"{k}: {v}" for k, v in merged.items() if v is not None]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write("\r\n".join(lines).encode("latin-1") + body)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(payload)


async def test_the_attack_from_a_web_form_opens_nothing(api, actuator):
    status, body = await call(
        api.port,
        "POST",
        f"/api/lockers/open-all?secret_token={TOKEN}",
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},
        b'{"rearload": false}',
    )
    assert (status, body["type"]) == (403, "FORBIDDEN")
    assert actuator.pulses == []


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "http://localhost.evil.example", "https://127.0.0.1"],
)
@pytest.mark.parametrize(
    ("method", "target", "body"),
    [("PUT", "/api/lockers/cabinets/5", OPEN), ("POST", "/api/lockers/open-all", b"{}")],
)
async def test_a_foreign_origin_cannot_act_even_with_the_token(
    api, actuator, origin, method, target, body
):
    status, answer = await call(api.port, method, target, BEARER | JSON | {"Origin": origin}, body)
    assert (status, answer["type"]) == (403, "FORBIDDEN")
    assert answer["status_code"] == 403
    assert actuator.pulses == []


async def test_a_cross_site_fetch_without_origin_cannot_act(api, actuator):
    headers = BEARER | JSON | {"Sec-Fetch-Site": "cross-site"}
    status, _ = await call(api.port, "PUT", "/api/lockers/cabinets/5", headers, OPEN)
    assert status == 403
    assert actuator.pulses == []


async def test_the_agents_own_origin_may_act(api, actuator):
    headers = BEARER | JSON | {"Origin": f"http://127.0.0.1:{api.port}"}
    status, answer = await call(api.port, "PUT", "/api/lockers/cabinets/5", headers, OPEN)
    assert status == 200 and answer["state"] == "open"
    assert actuator.pulses == [(5, "front")]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
@pytest.mark.parametrize(
    ("method", "target", "body"),
    [("PUT", "/api/lockers/cabinets/5", OPEN), ("POST", "/api/lockers/open-all", b"{}")],
)
async def test_a_body_that_is_not_json_cannot_act(
    api, actuator, content_type, method, target, body
):
    headers = BEARER | {"Content-Type": content_type}
    status, answer = await call(api.port, method, target, headers, body)
    assert (status, answer["type"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert actuator.pulses == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_an_empty_form_cannot_open_all(api, actuator, content_type):
    status, _ = await call(
        api.port, "POST", "/api/lockers/open-all", BEARER | {"Content-Type": content_type}
    )
    assert status == 415
    assert actuator.pulses == []


async def test_open_all_without_a_body_still_says_json(api, actuator):
    # DESIGN.md: a request that acts carries Content-Type: application/json, else 415.
    status, _ = await call(api.port, "POST", "/api/lockers/open-all", BEARER)
    assert status == 415 and actuator.pulses == []
    json_type = BEARER | {"Content-Type": "application/json"}
    status, results = await call(api.port, "POST", "/api/lockers/open-all", json_type)
    assert status == 200 and all(r["ok"] for r in results)


async def test_json_with_a_charset_acts(api, actuator):
    headers = BEARER | {"Content-Type": "application/json; charset=utf-8"}
    status, _ = await call(api.port, "PUT", "/api/lockers/cabinets/5", headers, OPEN)
    assert status == 200
    assert actuator.pulses == [(5, "front")]


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("PUT", f"/api/lockers/cabinets/5?secret_token={TOKEN}", OPEN),
        ("POST", f"/api/lockers/open-all?secret_token={TOKEN}", b"{}"),
    ],
)
async def test_the_query_token_does_not_act(api, actuator, method, target, body):
    status, answer = await call(api.port, method, target, JSON, body)
    assert (status, answer["type"]) == (401, "INVALID_TOKEN")
    assert "Bearer" in answer["message"]
    assert actuator.pulses == []


async def test_the_query_token_reads(api):
    status, cabinets = await call(
        api.port, "GET", f"/api/lockers/cabinets?secret_token={TOKEN}", {}
    )
    assert status == 200 and len(cabinets) == 6


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 421),
        ("evil.example:{port}", 421),
        ("127.0.0.1.evil.example", 421),
        ("localhost.", 421),
        ("10.0.0.7", 421),
        ("", 400),
        (None, 400),
        ("127.0.0.1:x", 400),
        ("[::1", 400),
        ("ev il", 400),
    ],
)
@pytest.mark.parametrize("target", ["/healthz", "/api/lockers/cabinets"])
async def test_a_host_the_agent_does_not_serve_is_refused(api, host, status, target):
    host = host.format(port=api.port) if host is not None else None
    got, body = await call(api.port, "GET", target, BEARER | {"Host": host})
    assert (got, body["status_code"]) == (status, status)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}",
     "lobby-a.local:{port}"],
)  # fmt: skip
async def test_the_hosts_the_agent_serves(api, host):
    headers = BEARER | {"Host": host.format(port=api.port)}
    got, _ = await call(api.port, "GET", "/api/lockers/cabinets", headers)
    assert got == 200


@pytest.mark.parametrize(
    "target",
    ["http://evil.example/healthz", "http://127.0.0.1/healthz", "*", "127.0.0.1:80"],
)
async def test_only_origin_form_targets_are_served(api, target):
    got, body = await call(api.port, "GET", target, {})
    assert (got, body["type"]) == (400, "INVALID_REQUEST")


async def raw(port: int, head: str, body: bytes = b"") -> tuple[int, dict]:
    """A request written by hand (repeated headers); status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1") + body)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")


@pytest.mark.parametrize(
    "twice",
    [
        f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer x\r\n",
        f"Authorization: Bearer x\r\nAuthorization: Bearer {TOKEN}\r\n",
        "Content-Type: application/json\r\nContent-Type: text/plain\r\n",
    ],
    ids=["right-then-wrong", "wrong-then-right", "two-types"],
)
async def test_a_header_given_twice_is_refused_in_json(api, actuator, twice):
    """Which credential or type counts must never be left to order: both refused."""
    head = (
        f"PUT /api/lockers/cabinets/5 HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
        f"{twice}"
        + ("" if "Content-Type" in twice else "Content-Type: application/json\r\n")
        + (f"Authorization: Bearer {TOKEN}\r\n" if "Authorization" not in twice else "")
        + f"Content-Length: {len(OPEN)}\r\nConnection: close\r\n\r\n"
    )
    status, answer = await raw(api.port, head, OPEN)
    assert status == 400 and answer["type"] == "INVALID_REQUEST"
    assert actuator.pulses == []


async def test_a_token_given_twice_in_the_query_is_refused(api):
    for query in (f"secret_token={TOKEN}&secret_token=x", f"secret_token=x&secret_token={TOKEN}"):
        status, _ = await call(api.port, "GET", f"/api/lockers/cabinets?{query}", {})
        assert status == 401


async def test_a_json_key_given_twice_is_refused(api, actuator):
    body = b'{"command": "close", "command": "open"}'
    headers = BEARER | {"Content-Type": "application/json"}
    status, answer = await call(api.port, "PUT", "/api/lockers/cabinets/5", headers, body)
    assert status == 400 and "twice" in answer["message"]
    assert actuator.pulses == []
