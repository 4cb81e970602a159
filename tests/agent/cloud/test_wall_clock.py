"""No wait is computed from the controller's wall clock (issue 23): a Pi without an RTC
boots at the time fake-hwclock saved, then steps by days at its first NTP sync.

The one wait the cloud can give as a wall-clock time is ``Retry-After: <HTTP date>``;
it is measured against the answer's own ``Date`` (the cloud's clock against the
cloud's clock), so stepping this machine's clock, or a cloud whose clock is years
off ours, changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr

from agent.cloud.uplink import Uplink, retry_after

DAY = 86400.0
CLOUD_NOW = 1445412480.0  # the cloud's clock: Wed, 21 Oct 2015 07:28:00 GMT


@pytest.fixture
async def throttling_cloud():
    """Answers 503 with ``Retry-After`` two minutes after its own ``Date``."""
    seen = []

    async def post(request: web.Request) -> web.Response:
        seen.append(await request.json())
        headers = {
            "Date": formatdate(CLOUD_NOW, usegmt=True),
            "Retry-After": formatdate(CLOUD_NOW + 120, usegmt=True),
        }
        return web.json_response({"message": "busy"}, status=503, headers=headers)

    app = web.Application()
    app.router.add_post("/api/lockers/cabinet/status", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


@pytest.mark.parametrize("step_s", [-3650 * DAY, -DAY, 0.0, DAY])
async def test_a_stepped_wall_clock_changes_no_wait(throttling_cloud, outbox, monkeypatch, step_s):
    url, seen = throttling_cloud
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + step_s)
    uplink = Uplink(url, SecretStr("k"), outbox, list, rand=lambda: 0.0)  # backoff: 0 s
    with structlog.testing.capture_logs() as logs:
        await uplink.start()
        try:
            outbox.append("change", "door_changed", [{"key": 1, "front_status": "open"}])
            async with asyncio.timeout(5):
                while not [e for e in logs if e["event"] == "uplink.retry"]:
                    await asyncio.sleep(0.01)
        finally:
            await uplink.close()
    [retry] = [e for e in logs if e["event"] == "uplink.retry"]
    assert retry["delay_s"] == 120.0  # the cloud's two minutes, whatever either clock says
    assert len(seen) == 1


def test_an_http_date_without_the_clouds_date_is_no_hint(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: CLOUD_NOW)  # even a clock that agrees
    assert retry_after(formatdate(CLOUD_NOW + 60, usegmt=True)) is None
    assert retry_after("30") == 30.0
