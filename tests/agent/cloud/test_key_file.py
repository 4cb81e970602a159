"""A refused api-key is probed again as soon as its file changes (issue 23).

Real links, a real file, the fake cloud on loopback. ``auth_retry_s`` is an hour,
so a link that reaches the cloud with the new key did so because it watched the
file: the slow retry cannot have come. Assertions count the cloud's refusals.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import structlog
from pydantic import SecretStr

from agent.cloud.channel import CommandChannel
from agent.cloud.key import ApiKey
from agent.cloud.uplink import Uplink

KEY = "the-api-key"  # what the shared `cloud` fixture accepts
HOUR = 3600.0
HANG_GUARD = 10.0  # only catches a hang; the waits below end on events


async def until(condition, timeout=HANG_GUARD):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def refusals(cloud) -> int:
    """Refused tries of both links: the channel's upgrades, the uplink's POSTs."""
    return cloud.refused + sum(r["status"] == 401 for r in cloud.rejected)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "api.key"
    path.write_text("a-wrong-key\n")
    return path


@pytest.fixture
async def links(cloud, outbox, locker, actuator):
    """The uplink and the channel on one key source, both slow to retry."""
    started = []

    async def start(key: ApiKey) -> tuple[Uplink, CommandChannel]:
        uplink = Uplink(cloud.url, key, outbox, list, auth_retry_s=HOUR)
        channel = CommandChannel(cloud.commands_url, key, locker, auth_retry_s=HOUR)
        started.extend([uplink, channel])
        await uplink.start()
        await channel.start()
        outbox.append("change", "door_changed", [{"key": 1, "front_status": "open"}])
        return uplink, channel

    yield start
    for link in started:
        await link.close()


async def test_a_fixed_key_file_is_used_by_both_links_at_once(cloud, key_file, links):
    with structlog.testing.capture_logs() as logs:
        uplink, channel = await links(ApiKey(SecretStr("a-wrong-key"), key_file))
        await until(lambda: cloud.refused == 1 and len(cloud.rejected) == 1)
        for problem in uplink.problems() + channel.problems():
            assert "api-key (HTTP 401)" in problem and str(key_file) in problem
            assert "a-wrong-key" not in problem

        key_file.write_text(KEY + "\n")  # at the default watch, once a second
        await cloud.wait_for(lambda c: c["key"] == 1, HANG_GUARD)
        await cloud.wait_for_agent(HANG_GUARD)
        await until(lambda: channel.health.up)
    assert refusals(cloud) == 2  # one each, then the new key: no hourly retry ran
    assert uplink.problems() == [] and channel.problems() == []
    assert not [e for e in logs if "a-wrong-key" in repr(e) or KEY in repr(e)]


async def test_a_key_still_refused_goes_back_to_the_slow_retry(cloud, key_file, links):
    key = ApiKey(SecretStr("a-wrong-key"), key_file, watch_s=0.02)
    await links(key)
    await until(lambda: refusals(cloud) == 2)

    stat = key_file.stat()
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    await asyncio.sleep(5 * key.watch_s)
    key_file.write_text("  a-wrong-key  \n")  # rewritten, the same key
    await asyncio.sleep(5 * key.watch_s)
    assert refusals(cloud) == 2  # the same refused key is not tried again
    key_file.write_text("another-wrong-key\n")
    await until(lambda: refusals(cloud) == 4)  # each link tried the new key once
    await asyncio.sleep(20 * key.watch_s)  # many looks at the unchanged file
    assert refusals(cloud) == 4  # and then waits its hour again

    key_file.write_text("")  # an editor that truncated first: not a key, nothing tried
    await asyncio.sleep(5 * key.watch_s)
    assert refusals(cloud) == 4
    key_file.write_text(KEY)
    await cloud.wait_for(lambda c: c["key"] == 1, HANG_GUARD)
    await cloud.wait_for_agent(HANG_GUARD)
    assert refusals(cloud) == 4
    assert key.generation == 2


async def test_an_inline_key_is_never_looked_up(monkeypatch):
    looked = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **kw: looked.append(a) or real_stat(*a, **kw))
    key = ApiKey(SecretStr("inline"), None, watch_s=0.01)
    assert await key.refused(0, 0.1) is False  # the whole wait, no early try
    assert looked == []
    assert key.hint() == ""
