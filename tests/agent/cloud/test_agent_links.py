"""The cloud links' health where people and machines read it: /healthz's reasons,
STATUS= (``Agent.status_line``) and /metrics, on a whole agent (mock GPIO pins)
against the fake cloud, with the key shared by both links from its file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import structlog

from agent.app import Agent
from agent.config import parse_config
from simulator.cloud import FakeCloud
from simulator.mock_pins import mock_factory
from simulator.run import free_port

KEY = "the-api-key"  # what the shared `cloud` fixture accepts
TOKEN = "t"
HANG_GUARD = 15.0  # only catches a hang; every wait below ends on an event


async def until(condition, timeout=HANG_GUARD):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def config_for(tmp_path: Path, cloud: FakeCloud, secret: dict[str, str]):
    return parse_config(
        {
            "cloud": {"url": cloud.url, "commands_url": cloud.commands_url, **secret},
            "api": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
            "storage": {"dir": str(tmp_path / "state")},
            "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
            "cabinets": [{"key": 0, "front": {"bus": "gpio", "switch": 4, "lock": 8}}],
        },
        tmp_path,
    )


@pytest.fixture
async def running(tmp_path):
    agents = []

    async def run(config):
        agent = Agent(config, gpio_factory=mock_factory())
        agents.append(agent)
        await agent.start()
        return agent

    yield run
    for agent in agents:
        await agent.close()


async def read(agent: Agent, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{agent.config.api.port}{path}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_a_channel_that_keeps_dropping_is_unstable_everywhere(tmp_path, cloud, running):
    agent = await running(config_for(tmp_path, cloud, {"api_key": KEY}))
    channel = agent.channel
    assert channel is not None
    assert channel.silence_s <= 15  # the agent's channel keeps the default deadline
    await until(lambda: channel.health.up and agent.uplink.health.up)
    assert agent.problems() == []
    _, text = await read(agent, "/metrics")
    assert 'locker_agent_cloud_link_up{link="commands"} 1.0' in text
    assert 'locker_agent_cloud_link_drops_total{link="commands"} 0.0' in text

    for drop in range(1, 4):
        await cloud.disconnect_agents()
        await until(lambda d=drop: channel.health.drops == d and channel.health.up)

    unstable = (
        "command channel unstable: dropped 3 times in the last 10 min "
        "(last: closed by the cloud (code 1001))"
    )
    status, body = await read(agent, "/healthz")
    assert status == 503
    assert unstable in json.loads(body)["reasons"]
    assert unstable in agent.status_line()
    assert "cloud ok" in agent.status_line()  # the uplink is another link
    _, text = await read(agent, "/metrics")
    assert 'locker_agent_cloud_link_drops_total{link="commands"} 3.0' in text
    assert 'locker_agent_cloud_link_up{link="commands"} 1.0' in text  # up, and unstable
    assert 'locker_agent_cloud_link_drops_total{link="uplink"} 0.0' in text

    cloud.failing_status = 500  # now the uplink drops too
    agent.outbox.append("change", "door_changed", [{"key": 0, "front_status": "open"}])
    await until(lambda: not agent.uplink.health.up)
    _, text = await read(agent, "/metrics")
    assert 'locker_agent_cloud_link_up{link="uplink"} 0.0' in text
    assert 'locker_agent_cloud_link_drops_total{link="uplink"} 1.0' in text
    assert "cloud: cloud answers HTTP 500" in agent.status_line()


async def test_a_key_file_fixed_while_refused_is_used_by_both_links_at_once(
    tmp_path, cloud, running
):
    """The agent's own wiring: one key source from ``api_key_file``, the default slow
    retry (60 s). The cloud refuses each link once; the fixed file is taken by both
    without another refused try, so no timer explains it."""
    key_file = tmp_path / "api.key"
    key_file.write_text("an-old-key\n")
    with structlog.testing.capture_logs() as logs:
        agent = await running(config_for(tmp_path, cloud, {"api_key_file": str(key_file)}))
        assert agent.api_key.path == key_file
        await until(lambda: cloud.refused == 1 and len(cloud.rejected) == 1)
        _, body = await read(agent, "/healthz")
        reasons = json.loads(body)["reasons"]
        hint = f"a new key in {key_file} is tried at once"
        assert f"cloud rejects the api-key (HTTP 401); {hint}" in reasons
        assert any(r.startswith("command channel: cloud rejects the api-key") for r in reasons)
        assert "an-old-key" not in body

        key_file.write_text(KEY + "\n")  # the technician's fix
        await cloud.wait_for(lambda b: b["event"]["type"] == "startup", HANG_GUARD)
        await cloud.wait_for_agent(HANG_GUARD)
        await until(lambda: agent.problems() == [])
    assert cloud.refused == 1  # the channel's one refused try, then the new key
    assert [r["status"] for r in cloud.rejected] == [401]  # the uplink's likewise
    assert not [e for e in logs if "an-old-key" in repr(e) or KEY in repr(e)]


def test_an_inline_key_is_not_watched(tmp_path, cloud):
    agent = Agent(config_for(tmp_path, cloud, {"api_key": KEY}), gpio_factory=mock_factory())
    try:
        assert agent.api_key.path is None
    finally:
        agent.outbox.close()
        agent.store.close()
