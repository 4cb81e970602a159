"""Every link's liveness is health: a silent cloud is noticed, a link that keeps
dropping is unstable (in problems(), STATUS= and /metrics), and never "ok" between
drops (issue 23).

The channel runs against the fake cloud's websocket; ``cloud.silent`` makes it stop
answering pings without closing, as a proxy that swallows traffic does.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from agent.cloud.channel import CommandChannel
from agent.cloud.link import LinkHealth
from agent.cloud.uplink import Uplink

KEY = "the-api-key"  # what the shared `cloud` fixture accepts
WAIT = 5.0
HANG_GUARD = 10.0  # only catches a hang, not slowness


async def until(condition, timeout=WAIT):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def make_channel(cloud, locker, actuator):
    started = []

    async def make(**kw):
        kw.setdefault("backoff_base_s", 0.01)
        kw.setdefault("backoff_cap_s", 0.05)
        channel = CommandChannel(cloud.commands_url, SecretStr(KEY), locker, **kw)
        await channel.start()
        started.append(channel)
        return channel

    yield make
    for channel in started:
        await channel.close()


def test_the_default_notices_a_silent_cloud_within_15_s(locker):
    """The arithmetic of the defaults, not a stopwatch: the deadline runs from the last
    frame heard, so a cloud that falls silent is noticed at most ``silence_s`` later
    and reported at once; a live cloud is pinged after ``ping_s`` of quiet and has the
    rest of ``silence_s`` to answer."""
    channel = CommandChannel("wss://cloud.example.com/commands", SecretStr(KEY), locker)
    assert channel.silence_s <= 15
    assert channel.silence_s - channel.ping_s >= 5  # a slow link's pong still counts
    with pytest.raises(ValueError):  # a deadline shorter than the ping would kill live links
        CommandChannel("wss://c.example.com", SecretStr(KEY), locker, ping_s=10, silence_s=5)


async def test_a_silent_cloud_is_noticed_reported_and_stays_reported(cloud, make_channel):
    channel = await make_channel(ping_s=0.1, silence_s=0.4)
    await until(lambda: channel.health.up)  # the cloud answered the first ping
    assert channel.problems() == []

    cloud.silent = True  # the socket stays open; nothing comes back
    await until(lambda: channel.problems(), timeout=HANG_GUARD)
    [problem] = channel.problems()
    assert problem.startswith("command channel: disconnected for ")
    assert "cloud silent: nothing heard for 0.4 s" in problem
    assert channel.health.drops == 1 and not channel.health.up

    # It reconnects (the upgrade succeeds), but an open socket on which the cloud says
    # nothing is not a working link: still reported, and no new drop counted.
    await until(lambda: cloud.connections >= 3, timeout=HANG_GUARD)
    assert "cloud silent" in channel.problems()[0]
    assert channel.health.drops == 1

    cloud.silent = False
    await until(lambda: channel.health.up, timeout=HANG_GUARD)
    assert channel.problems() == []  # one drop, mended: not a pattern
    answer = await cloud.send_command({"id": "after", "key": 1, "command": "open"})
    assert answer["ok"] is True


async def test_a_channel_that_keeps_dropping_is_unstable_while_up(cloud, make_channel):
    channel = await make_channel()
    await until(lambda: channel.health.up)
    for drop in range(1, 5):
        await cloud.disconnect_agents()
        await until(lambda d=drop: channel.health.drops == d)
        await until(lambda: channel.health.up)  # back, and heard
        assert channel.connected
        problems = channel.problems()
        if drop < 3:
            assert problems == []
        else:
            assert problems == [
                f"command channel unstable: dropped {drop} times in the last 10 min "
                "(last: closed by the cloud (code 1001))"
            ]


async def test_an_uplink_that_keeps_failing_is_unstable_between_deliveries(cloud, outbox):
    uplink = Uplink(
        cloud.url, SecretStr(KEY), outbox, list, backoff_base_s=0.01, backoff_cap_s=0.05
    )
    await uplink.start()
    try:
        outbox.append("change", "door_changed", [{"key": 0, "front_status": "open"}])
        await until(lambda: uplink.health.up)  # a link that never worked cannot drop
        for drop in range(1, 4):
            cloud.fail_next(503)
            outbox.append("change", "door_changed", [{"key": drop, "front_status": "open"}])
            await cloud.wait_for(lambda c, k=drop: c["key"] == k, timeout=WAIT)
            await until(lambda: uplink.health.up)
            assert uplink.health.drops == drop
            if drop < 3:
                assert uplink.problems() == []
        # Every change was taken, the link works this very moment, and yet:
        assert uplink.problems() == [
            "uplink unstable: dropped 3 times in the last 10 min (last: cloud answers HTTP 503)"
        ]
        assert uplink.link == "ok"  # the indicators follow the link itself
    finally:
        await uplink.close()


def test_drops_leave_the_window_by_the_monotonic_clock():
    now = [1000.0]
    health = LinkHealth("uplink", window_s=600, unstable_after=3, clock=lambda: now[0])
    for _ in range(3):
        health.went_up()
        now[0] += 60
        health.went_down("cloud answers HTTP 500")
    health.went_down("cloud unreachable: ClientConnectorError")  # still down: not a new drop
    assert health.drops == 3
    assert health.unstable() == (
        "uplink unstable: dropped 3 times in the last 10 min "
        "(last: cloud unreachable: ClientConnectorError)"
    )
    now[0] += 600 - 119  # the first drop leaves the window
    assert health.recent_drops() == 2 and health.unstable() is None
    assert health.drops == 3  # the counter for /metrics never goes back
