"""An item sensor that flickers (reads empty for a round while the food is there: a
light curtain crossed at an angle, a weight cell near its threshold) must not hide
the food's time out of temperature (ADR 0023): on the simulator's physics, item
sensors on mock pins read as a board's answers are."""

from __future__ import annotations

from agent.thermal.alarms import FOOD_TIME_EXCEEDED, OUT_OF_BAND
from agent.thermal.unit import EMPTY_AFTER_S, FULL_AFTER_S


async def _flicker(rig, key: int, rounds: int) -> None:
    """``rounds`` rounds of 10 s with the food in, one of every three read empty."""
    for n in range(rounds):
        if n % 3 == 2:
            await rig.item(key, False)
        rig.run(10, dt_s=10)
        if n % 3 == 2:
            await rig.item(key, True)


async def test_a_flickering_item_sensor_does_not_hide_food_past_its_line(rigs):
    """Food in a freezer coming down from the room: the alarm is raised after
    alarm_raise_s and the food clock counts as if the sensor were steady (one empty
    round in three reset both, so neither ever got anywhere)."""
    faults = {"alarm_raise_s": 20}
    steady = await rigs({2: "freeze"}, items=True, **faults)
    flicker = await rigs({2: "freeze"}, items=True, **faults)
    for rig in (steady, flicker):
        await rig.item(2, True)
    steady.run(600, dt_s=10)
    await _flicker(flicker, 2, 60)
    assert flicker.temp(2) > -15.0  # still past its line: the food is out of temperature
    assert OUT_OF_BAND in steady.alarms(2)
    assert OUT_OF_BAND in flicker.alarms(2)
    assert flicker.events().count(OUT_OF_BAND) == 1
    a, b = steady.thermal.units[2].food, flicker.thermal.units[2].food
    assert b.out_s == a.out_s  # a round read empty is not the food taken out
    # The food does go: once it has read empty for EMPTY_AFTER_S, the clock restarts.
    await flicker.item(2, False)
    flicker.run(EMPTY_AFTER_S + 10, dt_s=10)
    assert b.out_s == 0.0


async def test_a_flicker_does_not_reset_an_exceeded_food_time(rigs):
    rig = await rigs({1: "chill"}, items=True, alarm_raise_s=0)
    await rig.item(1, True)
    rig.plant.body(1).cooler_failed = True  # food left in a failing chiller
    rig.run(3 * 3600, dt_s=30)
    assert FOOD_TIME_EXCEEDED in rig.alarms(1)
    out_s = rig.thermal.units[1].food.out_s
    await _flicker(rig, 1, 3)
    assert rig.thermal.units[1].food.out_s >= out_s  # not started again by one round
    assert FOOD_TIME_EXCEEDED in rig.alarms(1)


async def test_a_flicker_at_the_first_round_after_a_restart_keeps_the_food_clock(rigs):
    """The food clock kept across a restart says food was in: an empty first reading
    is a flicker until it has lasted EMPTY_AFTER_S, as before the restart."""
    rig = await rigs({1: "chill"}, 20.0, items=True, compressor_min_off_s=0)
    await rig.item(1, True)
    rig.plant.body(1).cooler_failed = True
    rig.run(1800, dt_s=60)
    kept = rig.thermal.units[1].food.out_s
    assert kept > 1000
    await rig.thermal.close()
    rig.now += 60
    await rig.item(1, False)  # the sensor flickers as the agent comes back
    rig.thermal = rig.new_thermal()
    rig.run(10, dt_s=10)
    await rig.item(1, True)
    rig.run(10, dt_s=10)
    assert rig.thermal.units[1].food.out_s >= kept


async def test_a_glitch_reading_an_item_for_a_round_pages_no_one(rigs):
    """The other way: an empty cabinet coming down whose sensor reads an item for one
    round is not held as food for EMPTY_AFTER_S (that would outlast alarm_raise_s and
    page); an item read for FULL_AFTER_S is food, and waits as above."""
    rig = await rigs({2: "freeze"}, items=True, alarm_raise_s=20)
    rig.run(300, dt_s=10)
    for _ in range(5):
        await rig.item(2, True)
        rig.run(10, dt_s=10)
        await rig.item(2, False)
        rig.run(60, dt_s=10)
    assert rig.temp(2) > -15.0 and OUT_OF_BAND not in rig.alarms(2)
    assert OUT_OF_BAND not in rig.events()
    assert rig.thermal.units[2].food.out_s == 0.0
    # An item read across two rounds (10 s >= FULL_AFTER_S) is food held: a round
    # read empty after it does not restart its clock.
    assert FULL_AFTER_S <= 10.0
    await rig.item(2, True)
    rig.run(20, dt_s=10)
    counted = rig.thermal.units[2].food.out_s
    assert counted > 0
    await rig.item(2, False)
    rig.run(10, dt_s=10)
    assert rig.thermal.units[2].food.out_s > counted
