"""Thermal control end to end: the real agent, sensor files in a temp directory, GPIO
mock pins, the local API over HTTP and the fake cloud."""

import asyncio
import json

import aiohttp
import pytest

from agent.app import Agent
from agent.config import parse_config
from drivers.gpio.mock import mock_factory
from simulator.cloud import FakeCloud
from simulator.run import free_port
from simulator.thermal import SensorFile
from tests.conftest import agent_running

HOT, COLD = "28-0000000000a1", "28-0000000000b2"


def reading(w1, ident, celsius, fault=None):
    """Write the sensor's file as the kernel would (simulator.thermal.SensorFile)."""
    sensor = SensorFile(w1, ident)
    sensor.fault = fault
    sensor.write(celsius)


def config(tmp_path, cloud_url, api_port):
    return parse_config(
        {
            "cloud": {"url": cloud_url, "api_key": "k"},
            "api": {"listen": f"127.0.0.1:{api_port}", "token": "t"},
            "storage": {"dir": str(tmp_path / "state")},
            "thermal": {
                "w1_dir": str(tmp_path / "w1"),
                "sample_s": 0.5,
                "compressor_min_off_s": 0,
                "compressor_min_on_s": 0,
                "log_every_s": 1,
                "alarm_clear_s": 0,
                "alarm_raise_s": 0,
                "sensor_grace_s": 2,
            },
            "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
            "cabinets": [
                {
                    "key": 0,
                    "front": {"bus": "gpio", "switch": 4, "lock": 5},
                    "thermal": {"sensor": HOT, "bus": "gpio", "heater": 17, "cooler": 27},
                },
                {
                    "key": 1,
                    "front": {"bus": "gpio", "switch": 6, "lock": 12},
                    "thermal": {"sensor": COLD, "bus": "gpio", "cooler": 22},
                },
            ],
        },
        tmp_path,
    )


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def events(cloud):
    return [r["body"].get("event", {}).get("type") for r in cloud.received]


@pytest.fixture
async def running(tmp_path):
    w1 = tmp_path / "w1"
    reading(w1, HOT, 20.0)
    reading(w1, COLD, 20.0)
    cloud = FakeCloud("k")
    await cloud.start()
    api_port = free_port()
    factory = mock_factory()
    agent = Agent(config(tmp_path, cloud.url, api_port), gpio_factory=factory)
    await agent.start()
    headers = {"Authorization": "Bearer t"}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{api_port}", headers=headers) as http:
        try:
            yield agent, cloud, http, factory, w1
        finally:
            await agent.close()
            await cloud.close()


async def cabinet(http, key):
    async with http.get(f"/api/lockers/cabinets/{key}") as resp:
        assert resp.status == 200
        return await resp.json()


async def command(http, key, body):
    async with http.put(f"/api/lockers/cabinets/{key}", json=body) as resp:
        return resp.status, await resp.json()


async def test_mode_sensor_outputs_events_and_records(running):
    agent, cloud, http, factory, w1 = running
    await until_async(lambda: cabinet(http, 0), lambda c: c["temperature_c"] is not None)
    first = await cabinet(http, 0)
    assert first["temperature_c"] == 20.0
    assert first["thermal"] == {
        "mode": "ambient",
        "band_c": None,
        "heating": False,
        "cooling": False,
        "sensor": "ok",
    }

    status, body = await command(http, 0, {"command": "set_thermal_mode", "thermal_mode": "chill"})
    assert status == 200 and body["thermal_mode"] == "chill"
    cooler, heater = factory.pin(27), factory.pin(17)
    await until(lambda: cooler.state)
    async with http.get("/metrics") as r:
        metrics = await r.text()
    assert 'locker_agent_cabinet_temperature_celsius{key="0"} 20.0' in metrics
    assert 'locker_agent_thermal_output_on{key="0",output="cooler"} 1.0' in metrics
    assert 'locker_agent_thermal_sensor_ok{key="1"} 1.0' in metrics
    assert not heater.state
    shown = await cabinet(http, 0)
    assert shown["thermal"]["cooling"] and shown["thermal"]["band_c"] == [1.0, 4.0]
    await until(lambda: "temperature_out_of_band" in events(cloud))  # 20 C: past 8 C

    reading(w1, HOT, 0.5)  # 19.5 C in a round: a glitch, not air, until it holds
    await until(lambda: "temperature_out_of_band_cleared" in events(cloud))  # 3 reads agree
    assert (await cabinet(http, 0))["temperature_c"] == 0.5
    assert "temperature_sensor_failed" not in events(cloud)  # a step is not a failure
    await until(lambda: not cooler.state)  # past the band's low edge: it stays off

    reading(w1, HOT, 3.0, fault="crc")
    await until(lambda: events(cloud).count("temperature_sensor_failed") == 1)
    failed = await cabinet(http, 0)
    assert failed["temperature_c"] is None and failed["thermal"]["sensor"] == "failed"
    assert {"type": "temperature_sensor_failed", "side": None} in failed["alarms"]
    assert cooler.state and not heater.state  # blind in the cold: the fallback cycle
    await until(lambda: "thermal_fallback_cycle" in events(cloud))
    async with http.get("/healthz") as r:
        health = await r.json()
    assert r.status == 503
    assert any(
        "cabinet 0: temperature sensor not trusted: crc" in line for line in health["reasons"]
    )
    assert "cabinet 0: temperature sensor not trusted" in agent.status_line()  # STATUS=

    async with http.get("/api/lockers/cabinets/0/temperatures?since=2000-01-01T00:00:00Z") as r:
        assert r.status == 200
        rows = await r.json()
    assert rows and rows[0]["temperature_c"] == 20.0 and rows[0]["t"].endswith("Z")
    async with http.get("/api/lockers/cabinets/0/temperatures?since=yesterday") as r:
        assert r.status == 422 and "since" in (await r.json())["errors"]
    async with http.get("/api/lockers/cabinets/0/excursions") as r:
        [excursion] = await r.json()
    assert excursion["peak_c"] == 20.0 and excursion["mode"] == "chill"
    assert excursion["end"] is not None and excursion["duration_s"] >= 0


async def test_a_mode_the_hardware_cannot_give_is_refused(running):
    _agent, _cloud, http, _factory, _w1 = running
    status, body = await command(http, 1, {"command": "set_thermal_mode", "thermal_mode": "heat"})
    assert status == 409
    assert "no heater" in body["message"]
    status, _ = await command(http, 1, {"command": "set_thermal_mode", "thermal_mode": "freeze"})
    assert status == 200


async def test_every_output_off_at_stop(running):
    agent, _cloud, http, factory, _w1 = running
    await command(http, 0, {"command": "set_thermal_mode", "thermal_mode": "heat"})
    await until(lambda: factory.pin(17).state)
    await agent.close()
    assert not factory.pin(17).state and not factory.pin(27).state


async def test_run_as_a_process_follows_the_sensor_file(tmp_path):
    """``locker-agent run`` as the service runs it: the mode set through the local
    API, the sensor file changed, the cabinet object and the fake cloud follow."""
    w1 = tmp_path / "w1"
    reading(w1, HOT, 20.0)
    reading(w1, COLD, 20.0)
    cloud = FakeCloud("k")
    await cloud.start()
    api_port = free_port()
    path = tmp_path / "agent.toml"
    data = {
        "cloud": {"url": cloud.url, "api_key": "k"},
        "api": {"listen": f"127.0.0.1:{api_port}", "token": "t"},
        "storage": {"dir": str(tmp_path / "state")},
        "thermal": {"w1_dir": str(w1), "sample_s": 0.5, "compressor_min_off_s": 0,
                    "alarm_clear_s": 0, "alarm_raise_s": 0, "sensor_grace_s": 2},
        "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
        "cabinets": [{"key": 0, "front": {"bus": "gpio", "switch": 4, "lock": 5},
                      "thermal": {"sensor": HOT, "bus": "gpio", "heater": 17}}],
    }  # fmt: skip
    path.write_text(_toml(data))
    headers = {"Authorization": "Bearer t"}
    try:
        async with (
            agent_running("run", "--config", path, stdout=asyncio.subprocess.DEVNULL) as proc,
            aiohttp.ClientSession(f"http://127.0.0.1:{api_port}", headers=headers) as http,
        ):
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with http.get("/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
            status, _ = await command(
                http, 0, {"command": "set_thermal_mode", "thermal_mode": "heat"}
            )
            assert status == 200
            await until_async(lambda: cabinet(http, 0), lambda c: c["thermal"]["heating"])
            await until(lambda: "temperature_out_of_band" in events(cloud))  # 20 C: under 63
            reading(w1, HOT, 21.0)
            await until_async(lambda: cabinet(http, 0), lambda c: c["temperature_c"] == 21.0)
            reading(w1, HOT, 21.0, fault="crc")
            await until(lambda: "temperature_sensor_failed" in events(cloud), timeout=10)
            shown = await cabinet(http, 0)
            assert shown["thermal"]["sensor"] == "failed" and not shown["thermal"]["heating"]
            assert set(shown["thermal"]) == {"mode", "band_c", "heating", "cooling", "sensor"}
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 10) == 0  # SIGTERM: a clean stop
    finally:
        await cloud.close()


async def until_async(get, predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate(await get()):
            await asyncio.sleep(0.1)


def _toml(data: dict) -> str:
    """A small TOML writer for this test's flat tables (strings, numbers, inline tables)."""

    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return (
            json.dumps(v)
            if isinstance(v, str)
            else str(v).lower()
            if isinstance(v, bool)
            else str(v)
        )

    out = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out += [f"{k} = {value(v)}" for k, v in item.items()]
        else:
            out.append(f"[{section}]")
            out += [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(out) + "\n"


async def test_a_latch_is_reset_on_the_local_api_only_with_who_and_when(running):
    agent, cloud, http, _factory, w1 = running
    assert (await command(http, 0, {"command": "set_thermal_mode", "thermal_mode": "heat"}))[
        0
    ] == 200
    reading(w1, HOT, 95.0)  # over the limit (90 C)
    await until(lambda: "temperature_over_limit" in events(cloud))
    await until(lambda: not agent.locker.cabinets[0].enabled)
    reset = "/api/lockers/cabinets/0/thermal/reset"
    async with http.post(reset, json={"by": 5}) as r:
        assert r.status == 422 and "by" in (await r.json())["errors"]
    async with http.post(reset, data=b"{}") as r:
        assert r.status == 415  # an act carries its JSON as JSON
    async with http.post(reset, json={}, headers={"Origin": "http://evil.example"}) as r:
        assert r.status == 403
    async with http.post("/api/lockers/cabinets/7/thermal/reset", json={}) as r:
        assert r.status == 404
    reading(w1, HOT, 60.0)  # cooled (taken once several reads agree: no air moves so fast)
    await until_async(lambda: cabinet(http, 0), lambda c: c["temperature_c"] == 60.0)
    async with http.post(reset, json={"by": "Ana", "reason": "relay replaced"}) as r:
        assert r.status == 200
        answer = await r.json()
    assert [c["alarm"] for c in answer["cleared"]] == ["temperature_over_limit"]
    assert answer["cabinet"]["key"] == 0 and not answer["cabinet"]["enabled"]  # enable: yours
    [*_, logged] = agent.thermal.records.latch_log(0)
    assert logged["event"] == "reset"  # who asked, by the agent's word; then their note
    assert logged["by"] == "the API token's holder at 127.0.0.1, noted as 'Ana': relay replaced"
    await until(lambda: "temperature_over_limit_cleared" in events(cloud))
    assert (await command(http, 0, {"command": "enable"}))[0] == 200


async def test_the_thermal_loop_stops_before_the_locker_it_disables_cabinets_through(
    tmp_path, monkeypatch
):
    """A thermal disable between the locker's close and thermal's armed a re-save timer
    the locker had already cancelled: thermal stops first."""
    cloud = FakeCloud("k")
    await cloud.start()
    agent = Agent(config(tmp_path, cloud.url, free_port()), gpio_factory=mock_factory())
    order = []
    for part in ("thermal", "locker"):
        closing = getattr(agent, part).close

        async def close(part=part, closing=closing) -> None:
            order.append(part)
            await closing()

        monkeypatch.setattr(getattr(agent, part), "close", close)
    await agent.start()
    try:
        await agent.close()
    finally:
        await cloud.close()
    assert order == ["thermal", "locker"]
