"""The uplink against a cloud that answers oddly: the status decides, a few hundred
bytes of a body at most are read, a redirect is never followed, and no hint from
the cloud parks the uplink for long."""

import asyncio

import pytest
from aiohttp import web
from pydantic import SecretStr

from agent.cloud.uplink import RETRY_AFTER_MAX_S, Uplink
from agent.storage.outbox import Outbox

KEY = "the-api-key"


class OddCloud:
    """A feedback endpoint whose answer a test chooses; records what it received."""

    def __init__(self) -> None:
        self.answer = self._ok
        self.received: list[dict] = []
        self.streamed = 0  # bytes of a huge body actually written before the agent hung up
        app = web.Application()
        app.router.add_post("/api/lockers/cabinet/status", self._post)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.StreamResponse:
        self.received.append({"api-key": request.headers.get("api-key"), **await request.json()})
        return await self.answer(request)

    async def _ok(self, request):
        return web.json_response({"ok": True})


@pytest.fixture
async def odd():
    cloud = OddCloud()
    url = await cloud.start()
    yield cloud, url
    await cloud.close()


async def deliver(url, outbox, **kw):
    uplink = Uplink(url, SecretStr(KEY), outbox, lambda: [], backoff_base_s=0.01, **kw)
    await uplink.start()
    outbox.append("change", "door_changed", [{"key": 1, "front_status": "open"}])
    return uplink


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def not_utf8(request):
    return web.Response(status=200, body=b"\xff\xfe\x00garbage")


async def false_gzip(request):
    return web.Response(status=200, body=b"not gzip at all", headers={"Content-Encoding": "gzip"})


@pytest.mark.parametrize("answer", [not_utf8, false_gzip], ids=["not-utf8", "false-gzip"])
async def test_an_odd_200_is_an_acceptance(odd, outbox, answer):
    cloud, url = odd
    cloud.answer = answer
    uplink = await deliver(url, outbox)
    await until(lambda: not outbox.pending(1))
    await asyncio.sleep(0.1)
    assert len(cloud.received) == 1  # accepted once, never resent
    assert uplink.problems() == []
    await uplink.close()


async def test_a_huge_body_is_not_read(odd, outbox):
    cloud, url = odd

    async def huge(request):
        resp = web.StreamResponse(status=200)
        resp.content_length = 1_500_000_000
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            while cloud.streamed < 1_500_000_000:
                await resp.write(chunk)
                cloud.streamed += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    cloud.answer = huge
    uplink = await deliver(url, outbox)
    await until(lambda: not outbox.pending(1))
    await uplink.close()
    assert len(cloud.received) == 1
    assert cloud.streamed < 64 * 1024 * 1024  # the agent hung up long before 1.5 GB


async def test_a_refusal_with_an_odd_body_is_buried_with_a_little_of_it(odd, outbox):
    cloud, url = odd

    async def refuse(request):
        return web.Response(status=422, body=b"\xff" * 100_000)

    cloud.answer = refuse
    uplink = await deliver(url, outbox)
    await until(lambda: outbox.dead())
    [dead] = outbox.dead()
    assert dead["status"] == 422 and len(dead["answer"]) <= 512
    await uplink.close()


async def test_a_redirect_is_not_followed_with_the_api_key(odd, outbox):
    cloud, url = odd
    thief = OddCloud()
    thief_url = await thief.start()

    async def redirect(request):
        raise web.HTTPTemporaryRedirect(f"{thief_url}/api/lockers/cabinet/status")

    cloud.answer = redirect
    uplink = await deliver(url, outbox)
    await until(lambda: len(cloud.received) >= 2)
    assert thief.received == []  # the api-key never left for the other origin
    assert outbox.pending(1)  # a 3xx is not a delivery
    assert "redirects are not followed" in uplink.problems()[0]
    await uplink.close()
    await thief.close()


async def test_an_absurd_retry_after_is_capped(odd, outbox):
    cloud, url = odd

    async def throttle(request):
        return web.Response(status=503, headers={"Retry-After": "999999999999"})

    cloud.answer = throttle
    uplink = await deliver(url, outbox)
    await until(lambda: cloud.received)
    assert uplink._failed("again", 999999999999.0) == RETRY_AFTER_MAX_S
    assert RETRY_AFTER_MAX_S <= 300
    await uplink.close()


async def test_after_an_outage_fresh_news_does_not_wait_out_the_backoff(odd, outbox):
    cloud, url = odd
    down = True

    async def flaky(request):
        if down:
            return web.Response(status=500)
        return web.json_response({})

    cloud.answer = flaky
    # A large backoff: without early tries the next attempt would be a minute away.
    uplink = Uplink(
        url,
        SecretStr(KEY),
        outbox,
        lambda: [],
        backoff_base_s=60,
        backoff_cap_s=60,
        rand=lambda: 1.0,
    )
    await uplink.start()
    outbox.append("change", "door_changed", [{"key": 1, "front_status": "open"}])
    await until(lambda: cloud.received)
    down = False  # the cloud is back
    outbox.append("change", "door_changed", [{"key": 2, "front_status": "open"}])
    await until(lambda: not outbox.pending(1), timeout=10)
    await uplink.close()


async def test_an_ack_the_disk_refuses_is_retried_not_spun(odd, outbox, monkeypatch):
    """A COMMIT that fails during an ack leaves the counts true and the loop awaiting."""
    import sqlite3

    cloud, url = odd
    real = outbox._file.transaction
    fails = [2]

    def refuse_deletes(work):
        if fails[0]:
            fails[0] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return real(work)

    uplink = await deliver(url, outbox)
    await until(lambda: not outbox.pending(1))
    outbox.append("change", "door_changed", [{"key": 3, "front_status": "closed"}])
    monkeypatch.setattr(outbox._file, "transaction", refuse_deletes)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await until(lambda: not outbox.pending(1))
    task.cancel()
    assert ticks >= 1  # the loop kept turning while the uplink retried (no spin)
    assert outbox.stats()["pending"] == 0
    assert len(outbox.pending(10)) == 0
    assert len(cloud.received) >= 3  # the unacked batch was sent again: at least once
    await uplink.close()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    yield box
    box.close()
