"""Thermal physics of the simulator against the analytic solution and the food lines,
and its DS18B20 files read back through the real driver (drivers.w1)."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from drivers.w1 import SensorFault, SensorTrust, parse_w1_slave, read_ds18b20
from simulator.thermal import (
    PlantRunner,
    SensorFile,
    ThermalBody,
    ThermalPlant,
    run_plant,
    scratchpad,
    w1_slave_text,
)

SENSOR = "28-00000a1b2c3d"
OTHER = "28-00000a1b2c3e"
ROOM_C = 22.0
STEP_S = 60.0


def run(body: ThermalBody, seconds: float, *, heating=False, cooling=False, door_open=False):
    """Step `body` for `seconds` in STEP_S steps; return the temperature after each."""
    trace = []
    for _ in range(round(seconds / STEP_S)):
        body.step(STEP_S, room_c=ROOM_C, heating=heating, cooling=cooling, door_open=door_open)
        trace.append(body.temperature_c)
    return trace


# -- ThermalBody ----------------------------------------------------------------


def test_freezer_pulls_down_below_minus_18_within_an_hour_and_a_half():
    body = ThermalBody(ROOM_C)
    trace = run(body, 1.5 * 3600, cooling=True)
    assert trace[-1] < -18.0
    assert trace[29] > -18.0  # not instant either: still above after 30 min
    assert all(b < a for a, b in itertools.pairwise(trace))  # always falling


def test_a_door_left_open_warms_a_running_freezer():
    shut, open_ = ThermalBody(-20.0), ThermalBody(-20.0)
    run(shut, 600, cooling=True)
    run(open_, 600, cooling=True, door_open=True)
    assert shut.temperature_c < -20.0
    assert open_.temperature_c > -15.0  # the frozen alarm line, crossed in ten minutes


def test_a_failed_compressor_drifts_to_room_temperature():
    body = ThermalBody(-20.0, cooler_failed=True)
    run(body, 24 * 3600, cooling=True)
    assert body.temperature_c == pytest.approx(ROOM_C, abs=0.01)


def test_heater_brings_a_cabinet_above_the_hot_holding_line():
    body = ThermalBody(ROOM_C)
    trace = run(body, 1.5 * 3600, heating=True)
    assert trace[-1] > 63.0


def test_no_output_relaxes_toward_room_as_the_analytic_solution():
    body = ThermalBody(60.0)
    run(body, 3600)  # sixty 60-s steps
    tau_s = body.capacity_j_per_k / body.room_ua_w_per_k
    expected = ROOM_C + (60.0 - ROOM_C) * math.exp(-3600 / tau_s)
    assert body.temperature_c == pytest.approx(expected, rel=1e-9)
    one_step = ThermalBody(60.0)
    one_step.step(3600, room_c=ROOM_C, heating=False, cooling=False, door_open=False)
    assert one_step.temperature_c == pytest.approx(expected, rel=1e-9)  # exact for any step


def test_steady_state_with_a_heater_is_room_plus_power_over_ua():
    body = ThermalBody(ROOM_C)
    body.step(1e7, room_c=ROOM_C, heating=True, cooling=False, door_open=False)
    assert body.temperature_c == pytest.approx(ROOM_C + 300.0 / 2.0)
    body.step(0.0, room_c=ROOM_C, heating=False, cooling=False, door_open=False)
    assert body.temperature_c == pytest.approx(ROOM_C + 300.0 / 2.0)  # dt 0: nothing moves


def test_fates_of_the_units():
    failed_heater = ThermalBody(ROOM_C, heater_failed=True)
    run(failed_heater, 3600, heating=True)
    assert failed_heater.temperature_c == pytest.approx(ROOM_C)
    welded_heater = ThermalBody(ROOM_C, stuck_on="heater")
    run(welded_heater, 3600)  # commanded off
    assert welded_heater.temperature_c > 30.0
    welded_cooler = ThermalBody(ROOM_C, stuck_on="cooler")
    run(welded_cooler, 3600)
    assert welded_cooler.temperature_c < 10.0


def test_heating_and_cooling_together_are_counted():
    body = ThermalBody(ROOM_C)
    run(body, 600, heating=True)
    assert body.both_on_s == 0.0
    run(body, 120, heating=True, cooling=True)
    assert body.both_on_s == 120.0


def test_bad_bodies_and_steps_are_refused():
    with pytest.raises(ValueError, match="capacity"):
        ThermalBody(ROOM_C, capacity_j_per_k=0.0)
    with pytest.raises(ValueError, match="heater_w"):
        ThermalBody(ROOM_C, heater_w=-1.0)
    with pytest.raises(ValueError, match="dt_s"):
        ThermalBody(ROOM_C).step(-1.0, room_c=ROOM_C, heating=False, cooling=False, door_open=False)


# -- SensorFile -------------------------------------------------------------------


def test_the_kernels_format_exactly(tmp_path):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.write(23.125)
    expected = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    assert (tmp_path / SENSOR / "w1_slave").read_text() == expected
    assert [p.name for p in (tmp_path / SENSOR).iterdir()] == ["w1_slave"]  # no tmp left


@pytest.mark.parametrize(
    ("written", "read"),
    [(23.1, 23.125), (4.0, 4.0), (4.06, 4.062), (-1.25, -1.25), (-18.3, -18.312), (0.0, 0.0)],
)
def test_read_back_through_the_driver_quantised_to_12_bits(tmp_path, written, read):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.write(written)
    assert read_ds18b20(tmp_path, SENSOR) == read  # the kernel truncates to whole milli-C


def test_values_beyond_the_sensors_range_are_clamped(tmp_path):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.write(200.0)
    assert read_ds18b20(tmp_path, SENSOR) == 125.0
    sensor.write(-103.0)
    assert read_ds18b20(tmp_path, SENSOR) == -55.0


def test_every_raw_value_round_trips_through_the_kernels_text():
    for raw in range(-55 * 16, 125 * 16 + 1):
        celsius = parse_w1_slave(w1_slave_text(scratchpad(raw)))
        assert abs(celsius - raw / 16) < 0.001


def fault_read(tmp_path) -> SensorFault:
    with pytest.raises(SensorFault) as caught:
        read_ds18b20(tmp_path, SENSOR)
    return caught.value


def test_fault_missing_removes_the_directory_and_comes_back(tmp_path):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.write(4.0)
    sensor.fault = "missing"
    sensor.write(4.0)
    assert not (tmp_path / SENSOR).exists()
    assert fault_read(tmp_path).reason == "missing"
    sensor.fault = None
    sensor.write(5.0)
    assert read_ds18b20(tmp_path, SENSOR) == 5.0


def test_fault_crc_writes_no(tmp_path):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.fault = "crc"
    sensor.write(4.0)
    assert (tmp_path / SENSOR / "w1_slave").read_text().splitlines()[0].endswith(" NO")
    assert fault_read(tmp_path).reason == "crc"


def test_fault_power_on_writes_85(tmp_path):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.fault = "power_on"
    sensor.write(4.0)
    assert read_ds18b20(tmp_path, SENSOR) == 85.0
    assert "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES" in (tmp_path / SENSOR / "w1_slave").read_text()


def test_fault_stuck_keeps_the_last_raw_value(tmp_path):
    sensor = SensorFile(tmp_path, SENSOR)
    sensor.write(4.0)
    sensor.fault = "stuck"
    for temperature in (5.0, 9.0, -3.0):
        sensor.write(temperature)
        assert read_ds18b20(tmp_path, SENSOR) == 4.0
    sensor.fault = None
    sensor.write(9.0)
    assert read_ds18b20(tmp_path, SENSOR) == 9.0


def test_sensor_file_refuses_a_bad_id(tmp_path):
    with pytest.raises(ValueError, match="DS18B20"):
        SensorFile(tmp_path, "../etc")


# -- ThermalPlant ---------------------------------------------------------------------


def test_plant_steps_bodies_and_writes_files(tmp_path):
    plant = ThermalPlant(tmp_path / "w1", room_c=ROOM_C)
    plant.add(0, SENSOR, ThermalBody(ROOM_C))
    plant.add(1, OTHER, ThermalBody(ROOM_C))
    assert read_ds18b20(tmp_path / "w1", SENSOR) == ROOM_C  # written when added
    assert plant.keys == [0, 1]
    for _ in range(90):
        plant.advance(STEP_S, {0: (False, True)}, {})  # cabinet 1: nothing said, all off
    assert read_ds18b20(tmp_path / "w1", SENSOR) < -18.0
    assert read_ds18b20(tmp_path / "w1", OTHER) == ROOM_C
    plant.advance(600, {0: (False, True)}, {0: True})
    assert plant.body(0).temperature_c > -15.0
    assert plant.sensor(1).sensor == OTHER


def test_plant_refuses_what_it_does_not_play(tmp_path):
    plant = ThermalPlant(tmp_path)
    plant.add(0, SENSOR, ThermalBody(ROOM_C))
    with pytest.raises(ValueError, match="already"):
        plant.add(0, OTHER, ThermalBody(ROOM_C))
    with pytest.raises(ValueError, match="already"):
        plant.add(1, SENSOR, ThermalBody(ROOM_C))
    with pytest.raises(ValueError, match="cabinet 7 is not in the thermal plant"):
        plant.advance(1.0, {7: (True, False)}, {})
    with pytest.raises(ValueError, match="cabinet 7"):
        plant.body(7)
    with pytest.raises(ValueError, match="dt_s"):
        plant.advance(-1.0, {}, {})


def test_trust_sees_a_welded_cooler_as_a_real_reading_and_a_stuck_sensor_as_failed(tmp_path):
    """The driver and the trust rules on the plant's files, minute by minute."""
    plant = ThermalPlant(tmp_path)
    plant.add(0, SENSOR, ThermalBody(-20.0))
    trust = SensorTrust()
    now_s = 0.0
    plant.sensor(0).fault = "stuck"
    verdicts = []
    for _ in range(20):
        plant.advance(STEP_S, {0: (False, True)}, {})
        now_s += STEP_S
        verdicts.append(trust.judge(now_s, read_ds18b20(tmp_path, SENSOR), unit_running=True))
    assert verdicts[0].status == "ok"
    assert verdicts[-1].status == "failed"
    assert verdicts[-1].reason.startswith("stuck at -20.000 C")


# -- real time ----------------------------------------------------------------------


async def wait_for(condition, timeout_s=5.0):
    async with asyncio.timeout(timeout_s):  # bounds a broken test only
        while not condition():
            await asyncio.sleep(0.01)


async def test_runner_advances_in_real_time_with_the_outputs_given(tmp_path):
    plant = ThermalPlant(tmp_path)
    plant.add(0, SENSOR, ThermalBody(ROOM_C))
    commanded = {0: (True, False)}
    runner = PlantRunner(plant, lambda: commanded, dict, tick_s=0.01, speed=3600.0)
    await runner.start()
    try:
        await wait_for(lambda: read_ds18b20(tmp_path, SENSOR) > 40.0)
        commanded = {0: (False, False)}
        peak = plant.body(0).temperature_c
        await wait_for(lambda: read_ds18b20(tmp_path, SENSOR) < peak - 5.0)
    finally:
        await runner.close()
    await runner.close()  # idempotent
    frozen = plant.body(0).temperature_c
    await asyncio.sleep(0.05)
    assert plant.body(0).temperature_c == frozen  # closed: nothing moves


async def test_run_plant_refuses_bad_timing(tmp_path):
    with pytest.raises(ValueError, match="tick_s"):
        await run_plant(ThermalPlant(tmp_path), dict, dict, tick_s=0.0)
