"""The food locker simulated end to end: the agent's thermal control on mock pins, the
heat played by ``simulator.food`` in sensor files, modes set as the cloud and through
the local API, doors from the emulated board, and each thermal fate by its verb."""

import asyncio
from pathlib import Path

import aiohttp
import pytest

from simulator.food import FoodPlant
from simulator.run import Simulation, load_config_data
from simulator.web.actions import Actions, StepError

FAST = {
    "compressor_min_off_s": 0,
    "compressor_min_on_s": 0,
    "sample_s": 0.5,
    "sensor_grace_s": 2,
}


def quick(data):
    data["thermal"].update(FAST)
    data["locker"]["confirm_s"] = 0.5


@pytest.fixture
async def food():
    sim = Simulation(locker="food", adjust=quick, thermal_speed=300)
    await sim.start()
    yield sim
    try:
        async with asyncio.timeout(15):
            await sim.close()
    except TimeoutError:  # seen under load: say which task would not stop
        stuck = [f"{t.get_name()}: {t.get_stack(limit=1)}" for t in asyncio.all_tasks()]
        pytest.fail(f"the simulation did not close; tasks left: {stuck}")


async def cabinet(sim, key):
    """The agent's cabinet object, asked of its local API."""
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{sim.api_url}/api/lockers/cabinets/{key}") as resp,
    ):
        assert resp.status == 200
        return await resp.json()


async def _read(sim, key):
    """The cabinet object once its sensor has been read, else None."""
    shown = await cabinet(sim, key)
    return shown if shown["temperature_c"] is not None else None


async def until(check, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
        return result


async def test_every_cabinet_object_carries_its_temperature_from_the_start(food):
    assert isinstance(food.food, FoodPlant) and food.food.keys == list(range(8))
    first = await until(lambda: _read(food, 0))  # the first round: READY does not wait for it
    assert first["temperature_c"] == 22.0  # the room's, as the sensor file says
    assert first["thermal"] == {
        "mode": "ambient",
        "band_c": None,
        "heating": False,
        "cooling": False,
        "sensor": "ok",
    }
    assert food.food.outputs() == {key: (False, False) for key in range(8)}


async def test_heat_as_the_cloud_heats_and_the_temperature_climbs(food):
    actions = Actions(food)
    answer = await actions.run({"who": "cloud", "do": "set_thermal_mode", "key": 1, "mode": "heat"})
    assert answer["ok"], answer  # over the command websocket, answered there

    async def heating():
        c = await cabinet(food, 1)
        return c["thermal"]["heating"] and c["temperature_c"] > 30.0 and c

    seen = await until(heating)
    assert seen["thermal"]["band_c"] == [66.0, 70.0]
    assert food.food.outputs()[1] == (True, False)  # the heater's pin, as the relay sees it
    assert food.food.outputs()[0] == (False, False)  # its neighbour is left alone


async def test_chill_through_the_api_runs_the_valve_and_the_shared_compressor(food):
    actions = Actions(food)
    step = {"who": "cloud", "do": "set_thermal_mode", "key": 5, "mode": "chill", "via": "api"}
    assert (await actions.run(step))["ok"]

    async def cooling():
        c = await cabinet(food, 5)
        return c["thermal"]["cooling"] and c["temperature_c"] < 15.0

    await until(cooling)
    assert food.food.outputs()[5] == (False, True)
    assert food.food.outputs()[6] == (False, False)  # compressor on, but its valve is shut
    assert (await cabinet(food, 6))["temperature_c"] > 20.0

    refused = await actions.run(
        {"who": "cloud", "do": "set_thermal_mode", "key": 5, "mode": "heat"}
    )
    assert refused["ok"] is False and refused["error"]["status_code"] == 409
    assert "it has no heater" in refused["error"]["message"]


async def test_the_door_the_board_has_open_lets_the_room_in(food):
    assert food.food.doors()[4] is False
    await Actions(food).run({"who": "person", "do": "force", "key": 4})
    assert food.food.doors()[4] is True and food.food.doors()[5] is False
    await Actions(food).run({"who": "person", "do": "shut", "key": 4})
    assert food.food.doors()[4] is False


async def test_a_failed_compressor_fails_every_cabinet_on_it(food):
    actions = Actions(food)
    answer = await actions.run({"who": "fate", "do": "fail_compressor", "key": 6})
    assert answer == {"ok": True, "keys": [4, 5, 6, 7]}
    bodies = [food.food.plant.body(k) for k in range(8)]
    assert [b.cooler_failed for b in bodies] == [False] * 4 + [True] * 4
    await actions.run({"who": "fate", "do": "mend_compressor", "key": 4})
    assert not any(b.cooler_failed for b in bodies)
    with pytest.raises(StepError, match="cabinet 0 has no cooler or compressor"):
        await actions.run({"who": "fate", "do": "fail_compressor", "key": 0})


async def test_a_failed_heater_and_a_welded_relay(food):
    actions = Actions(food)
    await actions.run({"who": "fate", "do": "fail_heater", "key": 2})
    assert food.food.plant.body(2).heater_failed
    await actions.run({"who": "fate", "do": "mend_heater", "key": 2})
    assert not food.food.plant.body(2).heater_failed
    with pytest.raises(StepError, match="cabinet 5 has no heater"):
        await actions.run({"who": "fate", "do": "fail_heater", "key": 5})

    assert await actions.run({"who": "fate", "do": "weld_relay", "key": 3}) == {
        "ok": True,
        "unit": "heater",
    }
    assert (await actions.run({"who": "fate", "do": "weld_relay", "key": 7}))["unit"] == "cooler"
    assert food.food.plant.body(7).stuck_on == "cooler"
    with pytest.raises(StepError, match="cabinet 7 has no heater"):
        await actions.run({"who": "fate", "do": "weld_relay", "key": 7, "unit": "heater"})
    with pytest.raises(StepError, match="unit: heater or cooler"):
        await actions.run({"who": "fate", "do": "weld_relay", "key": 7, "unit": "fan"})
    await actions.run({"who": "fate", "do": "mend_relay", "key": 7})
    assert food.food.plant.body(7).stuck_on is None


async def test_a_welded_heater_relay_heats_with_nothing_commanded(food):
    await Actions(food).run({"who": "fate", "do": "weld_relay", "key": 0})

    async def warmer():
        shown = (await cabinet(food, 0))["temperature_c"]
        return shown is not None and shown > 30.0  # None: no reading shown yet

    await until(warmer)
    assert food.food.outputs()[0] == (False, False)  # the agent commands nothing


@pytest.mark.parametrize(("fault", "status"), [("missing", "missing"), ("crc", "failed")])
async def test_a_failed_sensor_is_seen_by_the_agent_and_mended(food, fault, status):
    actions = Actions(food)
    await actions.run({"who": "fate", "do": "fail_sensor", "key": 3, "fault": fault})

    async def sensor(want):
        c = await cabinet(food, 3)
        return c["thermal"]["sensor"] == want and c

    failed = await until(lambda: sensor(status))
    assert failed["temperature_c"] is None
    await actions.run({"who": "fate", "do": "mend_sensor", "key": 3})
    assert (await until(lambda: sensor("ok")))["temperature_c"] is not None


async def test_sensor_faults_and_rooms_out_of_bounds_are_refused(food):
    actions = Actions(food)
    with pytest.raises(StepError, match="fault: one of missing, crc, power_on, stuck"):
        await actions.run({"who": "fate", "do": "fail_sensor", "key": 3, "fault": "melted"})
    with pytest.raises(StepError, match="cabinet 99 is not in the thermal plant"):
        await actions.run({"who": "fate", "do": "fail_sensor", "key": 99})
    for bad in (80, "warm", None, True):
        with pytest.raises(StepError, match="temperature_c"):
            await actions.run({"who": "fate", "do": "set_room", "temperature_c": bad})
    await actions.run({"who": "fate", "do": "set_room", "temperature_c": "35"})
    assert food.food.plant.room_c == 35.0


async def test_a_locker_without_thermal_cabinets_says_so(sim):
    assert sim.food is None
    with pytest.raises(StepError, match="simulate --locker food"):
        await Actions(sim).run({"who": "fate", "do": "fail_compressor", "key": 5})


async def test_the_field_food_locker_runs_with_its_heat_simulated():
    # config/food-locker.toml as a technician wrote it: lgpio pins, the kernel's w1 dir.
    data = load_config_data(Path(__file__).parents[2] / "config" / "food-locker.toml")
    sim = Simulation(config_data=data, thermal_start_c={8: -5.0})
    await sim.start()
    try:
        assert sim.food is not None and sim.food.keys == list(range(16))
        assert str(sim.food.plant.w1_dir) != "/sys/bus/w1/devices"
        assert sim.food.cooled_with(8) == list(range(8, 16))
        assert (await until(lambda: _read(sim, 8)))["temperature_c"] == -5.0
        assert sim.food.plant.sensor(0).path.exists()
    finally:
        await sim.close()
    assert not sim.food.plant.w1_dir.exists()  # the temporary sensors are gone


async def test_the_web_view_shows_the_room_and_refuses_a_replay_timed_for_other_physics(food):
    from simulator.web.server import WebView

    view = WebView(food)
    await view.start()
    try:
        async with aiohttp.ClientSession(base_url=view.url) as page:
            async with page.post(
                "/_sim/act", json={"who": "fate", "do": "set_room", "temperature_c": 30}
            ) as resp:
                assert resp.status == 200
            async with page.get("/_sim/state") as resp:
                state = await resp.json()
            assert state["thermal"] == {"room_c": 30.0, "speed": 300, "keys": list(range(8))}
            assert not state["gpio"]  # the GPIO bus carries relays only: no door to play
            assert all(c["thermal"]["sensor"] == "ok" for c in state["cabinets"])
            async with page.get("/_sim/scenarios") as resp:
                listed = {s["name"]: s for s in await resp.json()}
            assert listed["freezer_failure"]["own"] and not listed["jammed_lock"]["own"]
            async with page.post("/_sim/scenarios/freezer_failure", json={}) as resp:
                assert resp.status == 409
                assert "simulate --scenario freezer_failure" in (await resp.json())["error"]
    finally:
        await view.close()
