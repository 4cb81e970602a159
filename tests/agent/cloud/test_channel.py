"""The cloud command channel against the fake cloud's websocket on loopback.

The locker is the conftest one: six cabinets, a FakeActuator whose pulse opens
the door 10 ms later unless the lock is jammed (then the open fails after the
locker's 0.3 s confirm timeout).
"""

import asyncio

import pytest
from pydantic import SecretStr

from agent.cloud.channel import CommandChannel
from simulator.cloud import FakeCloud
from simulator.run import free_port

KEY = "the-api-key"  # what the shared `cloud` fixture accepts
WAIT = 5.0
HANG_GUARD = 10.0  # only catches a hang (the backoff below would be an hour), not slowness


@pytest.fixture
async def make_channel(cloud, locker, actuator):
    started = []

    async def make(key=KEY, url=None, **kw):
        kw.setdefault("backoff_base_s", 0.01)
        kw.setdefault("backoff_cap_s", 0.05)
        channel = CommandChannel(url or cloud.commands_url, SecretStr(key), locker, **kw)
        await channel.start()
        started.append(channel)
        return channel

    yield make
    for channel in started:
        await channel.close()


@pytest.fixture
async def channel(make_channel, cloud):
    channel = await make_channel()
    await cloud.wait_for_agent(WAIT)
    return channel


class Gates(dict):
    """Per-cabinet gates on the actuator's pulse: ``gates[key] = asyncio.Event()``.

    ``held`` lists the keys whose pulse reached its gate, in order.
    """

    def __init__(self):
        super().__init__()
        self.held = []


@pytest.fixture
def gates(actuator, monkeypatch):
    """Hold a cabinet's pulse until the test opens its gate: ordering without timing."""
    gates = Gates()
    release = actuator.release

    async def gated(key, side):
        gate = gates.get(key)
        if gate is not None:
            gates.held.append(key)
            await gate.wait()
        await release(key, side)

    monkeypatch.setattr(actuator, "release", gated)
    return gates


async def until(condition, timeout=WAIT):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def error(answer):
    assert answer["ok"] is False, answer
    assert "cabinet" not in answer
    return answer["error"]


async def test_open_acts_and_answers_the_cabinet(cloud, channel, locker, actuator):
    answer = await cloud.send_command({"id": "c-1", "key": 3, "command": "open"})
    assert answer == {"id": "c-1", "ok": True, "cabinet": locker.get(3).as_cloud()}
    assert answer["cabinet"]["key"] == 3
    assert answer["cabinet"]["state"] == "open"
    assert actuator.pulses == [(3, "front")]
    assert channel.connected
    assert channel.problems() == []

    rear = await cloud.send_command({"id": 7, "key": 1, "command": "open", "rearload": True})
    assert rear["id"] == 7 and rear["ok"] is True
    assert rear["cabinet"]["rear_load_status"] == "open"
    assert actuator.pulses == [(3, "front"), (1, "rear")]


async def test_a_duplicated_command_acts_once(cloud, channel, locker, actuator):
    command = {"id": "dup-1", "key": 2, "command": "open"}
    first = await cloud.send_command(command)
    # Someone shuts the door: a new open would pulse again, a resend of dup-1 must not.
    locker.door_sensed(2, "front", False)
    again = await cloud.send_command(command)
    assert again == first
    assert first["ok"] is True and first["cabinet"]["state"] == "open"
    assert actuator.pulses == [(2, "front")]


async def test_a_concurrent_duplicate_waits_for_the_first(
    cloud, channel, locker, actuator, gates, monkeypatch
):
    executed = []
    execute = locker.execute

    async def counting(key, cmd):
        executed.append(key)
        return await execute(key, cmd)

    monkeypatch.setattr(locker, "execute", counting)
    gates[4] = asyncio.Event()
    command = {"id": "dup-2", "key": 4, "command": "open"}
    both = asyncio.gather(cloud.send_command(command), cloud.send_command(command))
    await until(lambda: channel.received == 2 and gates.held == [4])
    gates[4].set()
    first, second = await both
    assert first == second
    assert first["ok"] is True and first["cabinet"]["state"] == "open"
    assert executed == [4]
    assert actuator.pulses == [(4, "front")]


async def test_a_resend_after_a_lost_answer_acts_once(cloud, channel, locker, actuator, gates):
    gates[5] = asyncio.Event()  # the door opens while the socket is down
    command = {"id": "lost-1", "key": 5, "command": "open"}
    sent = asyncio.create_task(cloud.send_command(command))
    await until(lambda: gates.held == [5])
    await cloud.disconnect_agents()
    with pytest.raises(ConnectionResetError):
        await sent
    gates[5].set()
    await cloud.wait_for_agent(WAIT)
    resent = await cloud.send_command(command)
    assert resent["ok"] is True and resent["cabinet"]["state"] == "open"
    locker.door_sensed(5, "front", False)
    assert await cloud.send_command(command) == resent
    assert actuator.pulses == [(5, "front")]


async def test_bad_messages_get_errors_and_the_channel_lives_on(cloud, channel, actuator):
    await cloud.send_raw("open cabinet 3, please")
    answer = await cloud.wait_for_answer(lambda a: "not JSON" in a["error"]["message"], WAIT)
    assert answer["id"] is None
    assert error(answer)["status_code"] == 422
    assert error(answer)["type"] == "INVALID_REQUEST"

    await cloud.send_raw("[1, 2]")
    await cloud.wait_for_answer(lambda a: "JSON object" in a["error"]["message"], WAIT)
    await cloud.send_raw(b'{"id": "bin", "key": 1, "command": "open"}')
    binary = await cloud.wait_for_answer(lambda a: "binary" in a["error"]["message"], WAIT)
    assert error(binary)["status_code"] == 422
    await cloud.send_raw('{"id": [1], "key": 1, "command": "open"}')
    bad_id = await cloud.wait_for_answer(lambda a: "id" in a["error"]["errors"], WAIT)
    assert bad_id["id"] is None

    no_key = await cloud.send_command({"id": "b-1", "command": "open"})
    assert no_key["id"] == "b-1"
    assert error(no_key)["errors"] == {"key": ["required"]}
    text_key = await cloud.send_command({"id": "b-2", "key": "1", "command": "open"})
    assert error(text_key)["errors"] == {"key": ["must be an integer"]}
    unknown = await cloud.send_command({"id": "b-3", "key": 1, "command": "explode"})
    assert error(unknown)["status_code"] == 422
    assert list(error(unknown)["errors"]) == ["command"]
    no_cabinet = await cloud.send_command({"id": "b-4", "key": 99, "command": "open"})
    assert error(no_cabinet)["status_code"] == 404
    empty_id = await cloud.send_command({"id": "", "key": 1, "command": "open"})
    assert error(empty_id)["status_code"] == 422
    assert actuator.pulses == []

    good = await cloud.send_command({"id": "b-5", "key": 1, "command": "open"})
    assert good["ok"] is True
    assert actuator.pulses == [(1, "front")]
    assert cloud.connections == 1 and channel.connected


async def test_a_refused_command_is_answered_as_an_error(cloud, channel, actuator):
    disabled = await cloud.send_command({"id": "d-1", "key": 0, "command": "disable"})
    assert disabled["ok"] is True and disabled["cabinet"]["enabled"] is False
    refused = await cloud.send_command({"id": "d-2", "key": 0, "command": "open"})
    assert refused["id"] == "d-2"
    assert error(refused) == {
        "status_code": 409,
        "type": "CONFLICT",
        "message": "cabinet 0 is disabled",
    }
    assert actuator.pulses == []


async def test_an_unexpected_error_is_a_500_and_the_channel_lives_on(
    cloud, channel, locker, monkeypatch
):
    async def broken(key, cmd, command_id=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr(locker, "command", broken)
    answer = await cloud.send_command({"id": "x-1", "key": 1, "command": "open"})
    assert error(answer) == {
        "status_code": 500,
        "type": "INTERNAL_ERROR",
        "message": "internal error",
    }
    monkeypatch.undo()
    assert (await cloud.send_command({"id": "x-2", "key": 1, "command": "open"}))["ok"]


async def test_a_slow_open_does_not_hold_up_other_cabinets(cloud, channel, actuator, gates):
    gates[0] = asyncio.Event()
    slow = asyncio.create_task(cloud.send_command({"id": "s-1", "key": 0, "command": "open"}))
    await until(lambda: gates.held == [0])
    fast = await cloud.send_command({"id": "s-2", "key": 1, "command": "open"})
    assert fast["ok"] is True
    assert not slow.done()
    gates[0].set()
    assert (await slow)["ok"] is True
    assert actuator.pulses == [(1, "front"), (0, "front")]


async def test_reconnects_after_the_cloud_drops_it(cloud, channel, actuator):
    for round_ in range(1, 4):
        await until(lambda: channel.health.up)  # heard: a drop from here counts
        await cloud.disconnect_agents()
        await cloud.wait_for_agent(WAIT)
        assert cloud.connections == round_ + 1
        answer = await cloud.send_command({"id": f"r-{round_}", "key": round_, "command": "open"})
        assert answer["ok"] is True
        await until(lambda: channel.health.up)
        if round_ < 3:  # a drop or two mended at once is no problem; a third is a pattern
            assert channel.problems() == []
    assert actuator.pulses == [(1, "front"), (2, "front"), (3, "front")]
    [unstable] = channel.problems()
    assert unstable.startswith("command channel unstable: dropped 3 times in the last 10 min")


async def test_waits_for_the_cloud_to_come_up(make_channel, actuator):
    # Nothing listens on the port at first: a connection failure is a problem at once.
    port = free_port()
    channel = await make_channel(url=f"ws://127.0.0.1:{port}/api/lockers/commands")
    await until(lambda: channel.problems())
    [problem] = channel.problems()
    assert problem.startswith("command channel: disconnected for ")
    assert "unreachable" in problem

    cloud = FakeCloud(KEY, port=port)
    await cloud.start()
    try:
        await cloud.wait_for_agent(WAIT)
        await until(lambda: channel.connected)
        assert channel.problems() == []
        assert (await cloud.send_command({"id": "u-1", "key": 1, "command": "open"}))["ok"]
    finally:
        await channel.close()
        await cloud.close()


async def test_wrong_api_key_is_its_own_problem_and_retried(cloud, make_channel, actuator):
    channel = await make_channel(key="wrong-key", auth_retry_s=0.01)
    await until(lambda: cloud.refused >= 3)  # keeps retrying, never gives up
    [problem] = channel.problems()
    assert "api-key" in problem and "401" in problem
    assert "wrong-key" not in problem
    assert not channel.connected
    assert cloud.connections == 0


async def test_close_is_prompt_while_connected(cloud, channel):
    await asyncio.wait_for(channel.close(), HANG_GUARD)
    assert not channel.connected
    await until(lambda: cloud.agents == 0)
    await channel.close()  # idempotent
    assert channel.problems() == []


async def test_close_is_prompt_while_backing_off(cloud, make_channel):
    channel = await make_channel(key="wrong-key", auth_retry_s=3600)
    await until(lambda: channel.problems())  # refused once, now sleeping for an hour
    assert cloud.refused == 1
    await asyncio.wait_for(channel.close(), HANG_GUARD)
    await asyncio.wait_for(channel.close(), HANG_GUARD)


def test_only_websocket_urls(locker):
    with pytest.raises(ValueError):
        CommandChannel("https://cloud.example.com", SecretStr(KEY), locker)


async def test_a_local_key_spelled_like_a_cloud_id_is_another_command(
    cloud, channel, locker, actuator
):
    """Local Idempotency-Keys and cloud ids live in separate namespaces."""
    import aiohttp

    from agent.api.server import LocalApi

    api = LocalApi(locker, SecretStr("t"), list, "127.0.0.1", 0)
    await api.start()
    api.ready = True
    try:
        first = await cloud.send_command({"id": "x", "key": 2, "command": "open"})
        assert first["ok"] is True
        locker.door_sensed(2, "front", False)  # shut again
        headers = {"Authorization": "Bearer t", "Idempotency-Key": "cloud:'x'"}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{api.port}/api/lockers/cabinets/2"
            async with http.put(url, json={"command": "open"}, headers=headers) as resp:
                assert resp.status == 200
        assert actuator.pulses == [(2, "front"), (2, "front")]  # both acted
    finally:
        await api.close()


async def test_a_redirect_is_never_followed_with_the_api_key(locker, actuator):
    """The handshake answered 307 to another origin: nothing reaches it."""
    from aiohttp import web

    seen = []

    async def thief(request):
        seen.append(request.headers.get("api-key"))
        return web.Response(status=404)

    thief_app = web.Application()
    thief_app.router.add_get("/ws", thief)
    thief_runner = web.AppRunner(thief_app, access_log=None)
    await thief_runner.setup()
    await web.TCPSite(thief_runner, "127.0.0.1", 0).start()
    thief_url = f"http://127.0.0.1:{thief_runner.addresses[0][1]}/ws"

    async def redirect(request):
        raise web.HTTPTemporaryRedirect(thief_url)

    app = web.Application()
    app.router.add_get("/ws", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
    channel = CommandChannel(url, SecretStr(KEY), locker, backoff_base_s=0.01, backoff_cap_s=0.02)
    await channel.start()
    try:
        await until(lambda: channel.health.reason.endswith("followed)"))
        await asyncio.sleep(0.1)
        assert seen == []
        assert "redirects are not followed" in channel.health.reason
    finally:
        await channel.close()
        await runner.cleanup()
        await thief_runner.cleanup()
