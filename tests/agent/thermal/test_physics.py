"""The thermal controller against simulated physics on a fake clock: hours of simulated
time in well under a second. The whole chain is real but the clock: the agent's GPIO
switches on mock pins, the kernel's sensor files written by ``simulator.thermal``, the
records in SQLite, alarms through the journal into the outbox."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.locker.commands import parse_command
from agent.locker.errors import Conflict
from agent.locker.indicator import pattern_for
from agent.thermal.unit import EMPTY_AFTER_S


async def test_each_band_is_held_for_hours(rigs):
    rig = await rigs({0: "heat", 1: "chill", 2: "freeze"})
    rig.run(2 * 3600, dt_s=30)  # pull-down and warm-up
    lows = {k: 99.0 for k in (0, 1, 2)}
    highs = {k: -99.0 for k in (0, 1, 2)}
    for _ in range(3 * 120):
        rig.run(30, dt_s=30)
        for k in lows:
            lows[k], highs[k] = min(lows[k], rig.temp(k)), max(highs[k], rig.temp(k))
    bands = {0: (66.0, 70.0), 1: (1.0, 4.0), 2: (-22.0, -19.0)}
    for key, (low, high) in bands.items():
        assert low - 0.5 <= lows[key] and highs[key] <= high + 0.5, (key, lows[key], highs[key])
        assert rig.alarms(key) == set()
    assert rig.both_on == 0
    shown = rig.locker.cabinets[2].as_cloud()
    assert shown["thermal"]["band_c"] == [-22.0, -19.0]
    assert -22.6 <= shown["temperature_c"] <= -18.4
    # The pull-down was out of band and was said so, then cleared.
    assert rig.events().count("temperature_out_of_band") == 3
    assert rig.events().count("temperature_out_of_band_cleared") == 3
    assert len(rig.thermal.records.readings(2, 0)) >= 5 * 60 - 1
    [freezer_pull_down] = rig.thermal.records.excursions(2)
    assert freezer_pull_down["end"] is not None and freezer_pull_down["peak_c"] == 22.0


async def test_compressor_timers_hold_across_a_restart(rigs):
    rig = await rigs({1: "chill"}, 6.0, compressor_min_off_s=180, compressor_min_on_s=60)
    rig.run(170)
    assert not rig.pin(27)  # wanted since the start, but off for 180 s after power-up
    rig.run(20)
    assert rig.pin(27)
    rig.plant.body(1).temperature_c = 0.9  # suddenly cold enough: min on still holds
    rig.run(30)
    assert rig.pin(27)
    rig.run(40)
    assert not rig.pin(27)
    rig.plant.body(1).temperature_c = 9.0  # warm again at once: min off holds
    rig.run(100)
    assert not rig.pin(27)
    rig.run(100)
    assert rig.pin(27)
    # A restart (the agent stops; outputs off) never starts the compressor early.
    await rig.thermal.close()
    rig.thermal = rig.new_thermal()
    rig.thermal.outputs.all_off()
    rig.run(170)
    assert not rig.pin(27)
    rig.run(20)
    assert rig.pin(27)


async def test_a_failed_sensor_is_never_trusted_and_a_heater_goes_off(rigs):
    rig = await rigs({0: "heat"}, sensor_stuck_s=600)  # warming up: the heater on
    rig.run(60)
    assert rig.pin(17)
    for fault in ("crc", "power_on", "missing", "stuck"):
        rig.plant.sensor(0).fault = fault  # type: ignore[assignment]
        rig.run(10)
        if fault != "stuck":  # a lost read: the last trusted reading stands, for the grace
            assert rig.pin(17) and rig.locker.cabinets[0].temperature_c is not None
        rig.run(20 if fault != "stuck" else 1000)  # 10 s of grace and three reads: failed
        cabinet = rig.locker.cabinets[0].as_cloud()
        assert not rig.pin(17), fault  # a heater never runs blind
        assert cabinet["temperature_c"] is None, fault
        assert cabinet["thermal"]["sensor"] == ("missing" if fault == "missing" else "failed")
        if fault != "stuck":
            assert "temperature_sensor_failed" not in rig.alarms(0), fault  # not for 20 s
        rig.run(20)
        assert "temperature_sensor_failed" in rig.alarms(0), fault
        rig.plant.sensor(0).fault = None
        rig.run(10)
        assert rig.locker.cabinets[0].as_cloud()["temperature_c"] is None, fault
        rig.run(30)  # several good reads: trusted again
        assert rig.locker.cabinets[0].as_cloud()["temperature_c"] is not None, fault
        rig.run(60)  # the alarm clears once the cause has been gone a minute
        assert "temperature_sensor_failed" not in rig.alarms(0), fault
        rig.run(300)
    assert rig.events().count("temperature_sensor_failed") == 4


async def test_a_welded_relay_is_caught(rigs):
    rig = await rigs({0: "heat"})
    rig.run(3600)
    assert 66.0 - 0.5 <= rig.temp(0) <= 70.5
    rig.plant.body(0).stuck_on = "heater"  # commanded off, keeps heating
    rig.run(3600)
    assert "thermal_not_converging" in rig.alarms(0)
    assert not rig.pin(17)
    assert "relay stuck" in rig.thermal.units[0].control.runaway


async def test_a_unit_that_does_not_converge_is_latched_off_until_a_reset(rigs):
    rig = await rigs({2: "freeze"}, -10.0, compressor_min_off_s=0, converge_s=900)
    rig.plant.body(2).cooler_failed = True  # the compressor runs, nothing gets colder
    rig.run(880)
    assert rig.pin(22) and "thermal_not_converging" not in rig.alarms(2)
    rig.run(40)
    assert "thermal_not_converging" in rig.alarms(2)
    assert not rig.pin(22)
    assert "thermal_not_converging" in rig.events()
    rig.run(600)
    assert not rig.pin(22)  # stays off
    rig.plant.body(2).cooler_failed = False  # repaired; a mode set clears nothing
    for mode in ("ambient", "freeze"):
        with pytest.raises(Conflict, match="latched off: thermal_not_converging"):
            await rig.locker.execute(
                2, parse_command({"command": "set_thermal_mode", "thermal_mode": mode})
            )
        rig.run(10)
    assert not rig.pin(22) and rig.locker.cabinets[2].thermal_mode == "freeze"
    rig.thermal.reset(2, "a technician")  # the technician, at the locker
    rig.run(10)
    assert rig.pin(22)
    rig.run(10)
    assert "thermal_not_converging" not in rig.alarms(2)  # a reset clears it at once
    assert "thermal_not_converging_cleared" in rig.events()


async def test_time_out_of_band_counts_while_occupied_across_a_door_left_open(rigs):
    rig = await rigs({1: "chill"}, disable_when_unsafe=True, compressor_min_off_s=0)
    rig.run(3600, dt_s=30)
    rig.locker.item_sensed(1, True)
    unit = rig.thermal.units[1]
    assert unit.food.out_s == 0
    await rig.door(1, True)  # left open: the room comes in faster than the cooler can take out
    expected = 0.0
    for _ in range(round(40 * 60 / 10)):
        before = rig.temp(1)
        rig.run(10)
        expected += 10 * (rig.temp(1) > 8.0 and before > 8.0)
    await rig.door(1, False)
    for _ in range(round(20 * 60 / 10)):
        before = rig.temp(1)
        rig.run(10)
        expected += 10 * (rig.temp(1) > 8.0 and before > 8.0)
    assert rig.temp(1) < 8.0
    assert expected > 600
    assert abs(unit.food.out_s - expected) <= 20  # within a round on either edge
    assert "food_time_exceeded" not in rig.alarms(1)

    await rig.door(1, True)  # again: the 2 h (UK) add up over excursions
    rig.run(2 * 3600, dt_s=60)
    assert "food_time_exceeded" in rig.alarms(1)
    assert pattern_for(rig.locker.cabinets[1], "ok") == "food_unsafe"
    await _settle()
    assert not rig.locker.cabinets[1].enabled  # disable_when_unsafe
    rig.locker.item_sensed(1, False)  # the food thrown away
    rig.run(10)
    assert unit.food.out_s > 0  # one round read empty is not yet the food gone (ADR 0023)
    rig.run(EMPTY_AFTER_S)
    assert unit.food.out_s == 0
    rig.run(60)  # an alarm clears once its cause has been gone a minute
    assert "food_time_exceeded" not in rig.alarms(1)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_never_heats_and_cools_at_once(tmp_path_factory, rig_class, seed):
    async def play() -> None:
        rig = rig_class(tmp_path_factory.mktemp("both"), {3: "heat"}, compressor_min_off_s=0)
        await rig.start()
        rnd = random.Random(seed)
        try:
            for _ in range(40):
                mode = rnd.choice(["heat", "chill", "freeze", "ambient"])
                await rig.locker.execute(
                    3, parse_command({"command": "set_thermal_mode", "thermal_mode": mode})
                )
                rig.doors[3] = rnd.random() < 0.3  # the room only: no verification pause
                rig.plant.body(3).temperature_c = rnd.uniform(-25, 75)
                rig.plant.sensor(3).fault = rnd.choice([None, None, None, "crc"])
                rig.run(rnd.choice([10, 60, 300]))
            assert rig.both_on == 0
            assert rig.plant.body(3).both_on_s == 0
        finally:
            await rig.close()

    asyncio.run(play())
