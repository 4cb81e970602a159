"""doctor's cloud probe against a real aiohttp server on loopback, plain and TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from agent.config import CloudConfig
from agent.field import probes

HOST = "cloud.lockers.test"


@pytest.fixture
def dns(monkeypatch):
    """``HOST`` resolves to the addresses put in the returned list, in order; each
    lookup of it is counted in ``asked``."""
    real = socket.getaddrinfo
    addresses: list[str] = []
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> list[Any]:
        if host != HOST:
            return real(host, port, *args, **kw)
        asked.append(host)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port)))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return addresses, asked


def signed_for(name: str, ca_pem: Path) -> ssl.SSLContext:
    """A server's TLS context with a certificate for ``name`` from a private CA, whose
    certificate is written to ``ca_pem`` (for ``[cloud] ca_file``)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_pem))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_tls)
    return server_tls


async def feedback_server(tls: ssl.SSLContext | None = None):
    """A feedback endpoint answering 422 to the probe's empty body; (runner, port, seen)."""
    seen: list[dict[str, str]] = []

    async def feedback(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"message": "The cabinets field is required."}, status=422)

    app = web.Application()
    app.router.add_post("/api/lockers/cabinet/status", feedback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return runner, runner.addresses[0][1], seen


async def test_the_name_is_looked_up_once_and_the_address_said_is_the_one_asked(dns):
    """The connect check and http.client each looked the name up again (unbounded by
    the probe's DNS time), and the first address was reported even when it refused."""
    addresses, asked = dns
    addresses += ["127.0.0.2", "127.0.0.1"]  # nothing listens on .2: refused, then .1
    runner, port, seen = await feedback_server()
    cloud = CloudConfig.model_validate({"url": f"http://{HOST}:{port}", "api_key": "k-1"})
    try:
        answer = await asyncio.to_thread(probes.probe_cloud, cloud, 2.0)
    finally:
        await runner.cleanup()
    assert answer == probes.CloudAnswer(True, "http", "127.0.0.1", 422)
    assert asked == [HOST]
    assert seen[0]["Host"] == f"{HOST}:{port}" and seen[0]["api-key"] == "k-1"


async def test_tls_is_verified_for_the_name_on_the_connection_asked(dns, tmp_path):
    addresses, asked = dns
    addresses.append("127.0.0.1")
    server_tls = signed_for(HOST, tmp_path / "ca.pem")
    runner, port, seen = await feedback_server(server_tls)
    url = f"https://{HOST}:{port}"
    trusted = CloudConfig.model_validate(
        {"url": url, "api_key": "k-2", "ca_file": str(tmp_path / "ca.pem")}
    )
    system = CloudConfig.model_validate({"url": url, "api_key": "k-2"})
    try:
        answer = await asyncio.to_thread(probes.probe_cloud, trusted, 2.0)
        refused = await asyncio.to_thread(probes.probe_cloud, system, 2.0)
    finally:
        await runner.cleanup()
    assert answer == probes.CloudAnswer(True, "http", "127.0.0.1", 422)
    assert seen[0]["Host"] == f"{HOST}:{port}" and seen[0]["api-key"] == "k-2"
    assert (refused.ok, refused.step) == (False, "tls")
    assert refused.detail.startswith(f"TLS with {HOST} failed: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert asked == [HOST, HOST]  # once a probe


async def test_a_certificate_for_another_name_is_a_tls_failure(dns, tmp_path):
    addresses, _ = dns
    addresses.append("127.0.0.1")
    server_tls = signed_for("other.lockers.test", tmp_path / "ca.pem")
    runner, port, seen = await feedback_server(server_tls)
    cloud = CloudConfig.model_validate(
        {"url": f"https://{HOST}:{port}", "api_key": "k", "ca_file": str(tmp_path / "ca.pem")}
    )
    try:
        answer = await asyncio.to_thread(probes.probe_cloud, cloud, 2.0)
    finally:
        await runner.cleanup()
    assert (answer.ok, answer.step) == (False, "tls")
    assert "Hostname mismatch" in answer.detail or "doesn't match" in answer.detail
    assert seen == []  # the api-key was never sent to it


async def test_an_answer_that_drips_is_cut_at_the_probe_s_time(dns):
    """Each read waited at most timeout_s, but a server (a middlebox, a captive portal)
    that sent a byte a second held doctor for as long as it liked."""
    addresses, _ = dns
    addresses.append("127.0.0.1")
    stop = asyncio.Event()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 422 Unprocessable\r\nX-Slow: ")
        while not stop.is_set() and not writer.is_closing():
            writer.write(b"a")
            await asyncio.sleep(0.3)
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cloud = CloudConfig.model_validate({"url": f"http://{HOST}:{port}", "api_key": "k-3"})
    started = asyncio.get_running_loop().time()
    try:
        answer = await asyncio.wait_for(asyncio.to_thread(probes.probe_cloud, cloud, 1.0), 30)
    finally:
        stop.set()
        server.close()
    assert asyncio.get_running_loop().time() - started < 5
    assert answer == probes.CloudAnswer(False, "http", f"{HOST}:{port}: no whole answer within 1 s")
