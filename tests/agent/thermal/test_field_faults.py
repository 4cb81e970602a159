"""What the field does to thermal control, each found by trying to break it (the
review of the first version), each a test: a cold room, an overshooting heater, a
flaky 1-wire line, a hung read, slow reads, a power cut with food inside, a full
disk, a clock far ahead, a mode set again, a sensor stuck in band."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.config.warnings import warnings
from agent.locker.commands import parse_command
from agent.locker.errors import Conflict
from agent.thermal.bands import Band
from agent.thermal.control import UnitControl
from agent.thermal.records import Records
from drivers.w1 import SensorFault


def flaky(rig, every: int, reason: str = "crc"):
    """Make every ``every``-th read of the rig's sensors fail with ``reason``."""
    real, count = rig.thermal._read, [0]

    def read(w1_dir, sensors):
        out = dict(real(w1_dir, sensors))
        for sensor in out:
            count[0] += 1
            if count[0] % every == 0:
                out[sensor] = SensorFault(reason)
        return out

    rig.thermal._read = read


async def set_mode(rig, key: int, mode: str) -> None:
    cmd = parse_command({"command": "set_thermal_mode", "thermal_mode": mode})
    await rig.locker.execute(key, cmd)


async def test_a_cold_room_is_told_but_never_latches_a_healthy_cooler_off(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.plant.room_c = -5.0  # an outdoor locker in winter
    rig.run(3 * 3600, dt_s=30)
    assert "thermal_not_converging" in rig.alarms(1)  # said: relay, or a cold room
    assert "colder than the band" in rig.thermal.units[1].control.runaway
    rig.plant.room_c = 25.0  # the day comes: the cooler must work again
    rig.run(4 * 3600, dt_s=30)
    assert rig.temp(1) <= 4.5
    assert "thermal_not_converging" not in rig.alarms(1)


def test_a_heater_overshooting_its_band_is_not_latched_off():
    unit = UnitControl({"heat": Band(66.0, 70.0)}, converge_s=1200, converge_c=1.0, max_duty=1.0)
    unit.set_mode("heat")
    t, now = 60.0, 0.0
    while t < 70.0:
        unit.step(now, t, cooling_runs=False)
        now, t = now + 10, t + 0.5
    for t in (70.5, 71.5, 72.5, 73.5, 73.0, 72.0, 69.0, 67.0, 65.5):  # element mass: +3.5 C
        unit.step(now, t, cooling_runs=False)
        assert unit.fault is None and unit.runaway is None  # never told to the cloud
        now += 10
    assert unit.call.heat  # below the band again: it heats


async def test_one_read_in_ten_lost_neither_short_cycles_nor_warms(rigs):
    rig = await rigs({1: "chill"}, 9.0, compressor_min_off_s=180, compressor_min_on_s=60)
    rig.plant.room_c = 30.0
    flaky(rig, 10)
    runs, since, was = [], 0.0, False
    for _ in range(3600):
        rig.run(1, dt_s=1)
        on = rig.pin(27)
        if on and not was:
            since = rig.now
        if was and not on:
            runs.append(rig.now - since)
        was = on
    assert runs and min(runs) >= 60
    assert rig.temp(1) <= 4.5
    assert rig.events().count("temperature_sensor_failed") == 0


async def test_a_flapping_sensor_does_not_flood_the_cloud(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    flaky(rig, 4, "missing")
    rig.run(3600, dt_s=1)
    assert rig.events().count("temperature_sensor_failed") < 5


async def test_a_sensor_stuck_in_band_while_idle_is_caught(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.run(3600, dt_s=30)
    while rig.pin(27) or not 1.5 < rig.temp(1) < 3.5:
        rig.run(10)
    rig.plant.sensor(1).fault = "stuck"  # idle in band: an idle hour counts a sixth
    rig.run(7 * 3600, dt_s=60)
    assert "temperature_sensor_failed" in rig.alarms(1)


async def test_a_mode_set_again_clears_no_latch_and_a_reset_does(rigs):
    """A cloud re-sends its desired state every few seconds: before issue 18 that cleared
    the fault of a dead cooler and its progress, and the alarm went away."""
    rig = await rigs({1: "chill"}, 9.0, compressor_min_off_s=0)
    rig.plant.body(1).cooler_failed = True
    rig.run(2 * 3600, dt_s=30)
    assert rig.thermal.units[1].latched
    for _ in range(20):  # the same mode, again and again, as the cloud re-sends it
        with pytest.raises(Conflict, match="thermal_not_converging"):
            await set_mode(rig, 1, "chill")
        rig.run(10)
    assert "thermal_not_converging" in rig.alarms(1) and not rig.pin(27)
    rig.plant.body(1).cooler_failed = False  # repaired
    [cleared] = rig.thermal.reset(1, "a technician")
    assert cleared.alarm == "thermal_not_converging"
    rig.run(10)
    assert not rig.thermal.units[1].latched and rig.pin(27)
    await set_mode(rig, 1, "chill")  # accepted again


async def test_food_time_without_item_sensors_counts_when_assumed(rigs):
    rig = await rigs({1: "chill"}, 20.0, compressor_min_off_s=0, assume_occupied=True)
    rig.plant.body(1).cooler_failed = True
    rig.run(3 * 3600, dt_s=60)
    assert "food_time_exceeded" in rig.alarms(1)


def test_a_gpio_thermal_cabinet_without_an_item_sensor_is_warned_of(tmp_path: Path):
    def config(**thermal):
        return parse_config(
            {
                "cloud": {"url": "https://c.example.net", "api_key": "k"},
                "api": {"token": "t"},
                "thermal": thermal,
                "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
                "cabinets": [
                    {
                        "key": 0,
                        "front": {"bus": "gpio", "switch": 5, "lock": 6},
                        "thermal": {"sensor": "28-000000000001", "bus": "gpio", "heater": 4},
                    }
                ],
            },
            tmp_path,
        )

    said = warnings(config())
    assert any("cabinets[0].thermal: no item sensor" in w for w in said)
    assert any("cabinets[0].thermal.heater: GPIO4 is the 1-wire" in w for w in said)
    assert not any("item sensor" in w for w in warnings(config(assume_occupied=True)))
    looser = warnings(config(lines={"chill_max_c": 10}, food_time_limit_s=4 * 3600))
    assert any("chilled food at 10 C, 4 h out of temperature is less strict" in w for w in looser)
    assert any("converge_s" in w for w in warnings(config(converge_s=7200)))


async def test_a_power_cut_with_food_out_of_temperature_counts(rigs):
    rig = await rigs({1: "chill"}, 20.0, compressor_min_off_s=0)
    rig.locker.cabinets[1].occupied = True
    rig.plant.body(1).cooler_failed = True
    rig.run(3600, dt_s=60)
    await rig.thermal.close()
    rig.now += 3 * 3600  # agent and fridge off for 3 h (the wall clock moves with it)
    rig.thermal = rig.new_thermal()
    rig.run(60, dt_s=60)
    assert rig.thermal.units[1].food.out_s >= 4 * 3600 - 120
    assert "food_time_exceeded" in rig.alarms(1)


async def test_a_restart_of_a_safe_cabinet_adds_nothing(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.locker.cabinets[1].occupied = True
    rig.run(600)
    await rig.thermal.close()
    rig.now += 600
    rig.thermal = rig.new_thermal()
    rig.run(60)
    assert rig.thermal.units[1].food.out_s == 0


async def test_a_full_disk_is_said(rigs):
    rig = await rigs({1: "chill"}, 3.0)
    rig.run(600)
    rig.thermal.records._file.db.execute("PRAGMA query_only=1")  # as a full SD card
    rig.run(600)
    assert any("temperature records not kept" in p for p in rig.thermal.problems())
    assert rig.pin(27) or rig.temp(1) < 4.5  # control went on
    rig.thermal.records._file.db.execute("PRAGMA query_only=0")
    rig.run(600)
    assert not any("not kept" in p for p in rig.thermal.problems())


async def test_a_clock_far_ahead_at_boot_keeps_the_history(rigs):
    rig = await rigs({1: "chill"}, 3.0)
    rig.run(3600)
    kept = len(rig.thermal.records.readings(1, 0))
    await rig.thermal.close()
    rig.thermal = rig.new_thermal()
    rig.thermal.logbook._wall = lambda: rig.now + 1.8e9 + 5 * 365 * 86400
    rig.run(10)
    assert len(rig.thermal.records.readings(1, 0)) >= kept


async def test_slow_reads_stretch_the_lease_and_a_hung_read_fails_the_sensor(rigs):
    rig = await rigs({1: "chill"}, 9.0, sample_s=0.5, compressor_min_off_s=0)
    thermal = rig.thermal
    thermal._clock = time.monotonic
    real = thermal._read
    thermal._read = lambda w1, sensors: (time.sleep(0.6), real(w1, sensors))[1]
    await thermal.tick()
    assert thermal.round_s >= 0.6 and thermal.lease_s >= 3 * 0.6 + 5
    gate = threading.Event()
    thermal._read = lambda w1, sensors: (gate.wait(10), real(w1, sensors))[1]
    thermal.read_timeout_s = 0.05
    fake = [time.monotonic()]
    thermal._clock = lambda: fake[0]
    try:
        for _ in range(3):  # three rounds of nothing, 10 s apart: past the grace
            fake[0] += 10
            await thermal.tick()
        assert thermal.units[1].verdict.status == "failed"
        assert rig.pin(27)  # blind in the cold: the fallback cycle, on first
        assert any("temperature sensor not trusted" in p for p in thermal.problems())
        assert any("fixed cycle, blind" in p for p in thermal.problems())
    finally:
        gate.set()
        await asyncio.sleep(0.1)


def test_config_refuses_a_sensor_twice_and_a_heater_on_a_valveless_compressor(tmp_path: Path):
    def cabinets(*units):
        return [
            {"key": i, "front": {"bus": "gpio", "switch": 4 + i, "lock": 10 + i}, "thermal": u}
            for i, u in enumerate(units)
        ]

    base = {
        "cloud": {"url": "https://c.example.com", "api_key": "k"},
        "api": {"token": "t"},
        "thermal": {"compressors": [{"name": "c", "bus": "gpio", "pin": 20}]},
        "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
    }
    same = "28-000000000001"
    with pytest.raises(ConfigError) as err:
        parse_config(base | {"cabinets": cabinets({"sensor": same}, {"sensor": same})}, tmp_path)
    assert any("also cabinets[0]'s" in p for p in err.value.problems)
    unit = {"sensor": same, "bus": "gpio", "heater": 17, "compressor": "c"}
    with pytest.raises(ConfigError) as err:
        parse_config(base | {"cabinets": cabinets(unit)}, tmp_path)
    assert any("needs its own cooler valve" in p for p in err.value.problems)


def test_the_newest_readings_are_served_and_durations_never_negative(tmp_path: Path):
    records = Records(tmp_path / "r.sqlite3")
    now = 1.8e9
    records.log(now - 100, [(0, 3.0, "chill", "ok")])
    records.log(now, [(0, 4.0, "chill", "ok")])
    assert [r["temperature_c"] for r in records.readings(0, 0, limit=1)] == [4.0]
    records.excursion_started(0, now, 9.0, "chill")
    records.excursion_ended(0, now - 3600)  # the wall clock stepped back
    assert records.excursions(0)[0]["duration_s"] == 0


# --- the second review: what the first fixes missed or brought -----------------------


async def test_a_stuck_sensor_on_a_lossy_line_is_caught(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.run(3600, dt_s=30)
    while rig.pin(27) or not 1.5 < rig.temp(1) < 3.5:
        rig.run(10)
    rig.plant.sensor(1).fault = "stuck"
    flaky(rig, 2)  # every other read lost: never three in a row
    rig.plant.room_c = 30.0
    rig.run(600, dt_s=30)
    assert any("sensor loses" in p for p in rig.thermal.problems())  # said at once
    rig.run(7 * 3600, dt_s=30)  # idle time counts a sixth: stuck within about 6 h
    assert "temperature_sensor_failed" in rig.alarms(1)


async def test_one_cabinets_refused_outputs_do_not_stop_the_others(rigs):
    rig = await rigs({1: "chill", 2: "chill"}, 9.0, compressor_min_off_s=0)
    real_set = rig.thermal.outputs.set

    def refusing(key, **kw):
        if key == 1:
            raise OSError(5, "GPIO27: Input/output error")
        real_set(key, **kw)

    rig.thermal.outputs.set = refusing
    rig.run(30)
    assert rig.pin(22)  # cabinet 2 cools
    assert any("cabinet 1: thermal outputs refused" in p for p in rig.thermal.problems())


async def test_a_compressor_cut_by_its_backstop_keeps_its_minimum_off_time(rigs):
    rig = await rigs({1: "chill"}, 9.0, compressor_min_off_s=180, compressor_min_on_s=0)
    rig.run(200)
    assert rig.pin(27)
    rig.thermal.outputs.coolers[1].off()  # the lease lapsed in a stalled round
    rig.run(10)
    assert not rig.pin(27)  # off since the cut: 180 s more, not at once
    rig.run(160)
    assert not rig.pin(27)
    rig.run(30)
    assert rig.pin(27)


def test_a_refused_bulk_conversion_is_said(tmp_path):
    import structlog

    from drivers.w1 import read_all

    master = tmp_path / "w1_bus_master1"
    master.mkdir()
    (master / "therm_bulk_read").mkdir()  # cannot be written: as a read-only /sys
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):  # five rounds: said once, not a line a second
            read_all(tmp_path, ["28-000000000001"])
    assert [e["event"] for e in logs].count("w1.bulk_refused") == 1


async def test_a_room_inside_the_band_is_not_a_stuck_sensor(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.plant.room_c = 3.0  # an unheated lobby in winter: nothing to do, for hours
    rig.locker.cabinets[1].occupied = True
    rig.run(4 * 3600, dt_s=60)
    assert rig.thermal.units[1].verdict.status == "ok"
    assert "food_time_exceeded" not in rig.alarms(1)


async def test_downtime_is_settled_at_the_first_reading_empty_or_not(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.run(600)  # empty and safe
    await rig.thermal.close()
    rig.plant.advance(3 * 3600, {1: (False, False)}, {})  # a 3 h power cut
    rig.now += 3 * 3600
    rig.thermal = rig.new_thermal()
    rig.run(300)
    rig.locker.cabinets[1].occupied = True  # fresh food, after the restart
    rig.run(10)
    assert rig.thermal.units[1].food.out_s < 600


async def test_a_lost_first_read_after_a_restart_neither_bills_nor_alarms(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    rig.locker.cabinets[1].occupied = True
    rig.run(600)
    await rig.thermal.close()
    rig.now += 1800
    rig.thermal = rig.new_thermal()
    real, first = rig.thermal._read, [True]

    def lose_first(w1, sensors):
        out = dict(real(w1, sensors))
        if first[0]:
            first[0] = False
            out = {s: SensorFault("crc") for s in out}
        return out

    rig.thermal._read = lose_first
    rig.run(60)
    assert rig.thermal.units[1].food.out_s < 120
    assert rig.events().count("temperature_sensor_failed") == 0


async def test_with_assume_occupied_a_pickup_empties_the_cabinet_and_ambient_does_not(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0, assume_occupied=True)
    rig.run(3600, dt_s=30)
    for _day in range(20):  # three weeks of deliveries and pickups, 10 min door open
        await rig.door(1, True)
        rig.run(600, dt_s=10)
        await rig.door(1, False)
        rig.run(6 * 3600, dt_s=300)
    assert "food_time_exceeded" not in rig.alarms(1)
    rig.plant.body(1).cooler_failed = True
    rig.run(100 * 60, dt_s=60)
    before = rig.thermal.units[1].food.out_s
    assert before > 0
    rig.thermal.reset(1, "a technician")  # the dead cooler latched it off
    for mode in ("ambient", "chill"):  # no new clock for spoilt food
        await set_mode(rig, 1, mode)
        rig.run(60)
    assert rig.thermal.units[1].food.out_s >= before


async def test_a_saved_mode_the_hardware_no_longer_gives_is_dropped(rigs):
    from agent.app import Agent
    from simulator.mock_pins import mock_factory

    rig = await rigs({0: "heat"})  # cabinet 0 has a heater only
    rig.agent.store.save_settings(0, enabled=True, size="mini", thermal_mode="chill")
    again = Agent(rig.config, gpio_factory=mock_factory())
    try:
        assert again.locker.cabinets[0].thermal_mode == "ambient"
    finally:
        again.thermal.records.close()
        again.outbox.close()
        again.store.close()


async def test_a_line_losing_two_reads_in_three_is_said(rigs):
    rig = await rigs({1: "chill"}, 3.0, compressor_min_off_s=0)
    real, n = rig.thermal._read, [0]

    def read(w1, sensors):
        n[0] += 1
        out = dict(real(w1, sensors))
        return out if n[0] % 3 == 1 else {s: SensorFault("crc") for s in out}

    rig.thermal._read = read
    rig.run(3600, dt_s=10)
    assert any("sensor loses" in p for p in rig.thermal.problems())


async def test_a_mode_change_to_ambient_clears_its_alarms_at_once(rigs):
    rig = await rigs({1: "chill"}, 20.0, compressor_min_off_s=0)
    rig.run(60)
    assert "temperature_out_of_band" in rig.alarms(1)
    await set_mode(rig, 1, "ambient")
    rig.run(10)
    assert "temperature_out_of_band" not in rig.alarms(1)


def test_the_clock_is_known_right_only_when_something_says_so(tmp_path):
    from agent.thermal import clock

    assert clock.timesyncd(tmp_path / "no-timesyncd") is None  # cannot tell: not "yes"
    (tmp_path / "timesync").mkdir()
    assert clock.timesyncd(tmp_path / "timesync") is False  # a Pi just booted
    (tmp_path / "timesync" / "synchronized").touch()
    assert clock.timesyncd(tmp_path / "timesync") is True
    nobody = {"a": lambda: None, "b": lambda: None}
    assert clock.synchronized(nobody)[0] is None  # chrony alone, before: trusted at once
    assert clock.synchronized({"a": lambda: False, "b": lambda: None}) == (
        False,
        "not synchronised by a",
    )
    assert clock.synchronized({"a": lambda: False, "chrony": lambda: True}) == (True, "chrony")


def test_an_excursion_begun_before_since_and_still_open_is_served(tmp_path):
    records = Records(tmp_path / "r.sqlite3")
    now = 1.8e9
    records.excursion_started(0, now - 30 * 3600, 9.0, "chill")
    assert records.excursions(0, since=now - 86400) != []


async def test_the_peak_since_the_last_log_survives_a_stop(rigs):
    rig = await rigs({1: "chill"}, 9.0, compressor_min_off_s=0, log_every_s=300)
    rig.plant.body(1).cooler_failed = True
    rig.run(300, dt_s=10)
    rig.doors[1] = True  # the worst comes between two logs
    rig.run(280, dt_s=10)
    worst = round(rig.thermal.units[1].peak_c, 1)
    await rig.thermal.close()
    records = Records(rig.tmp_path / "thermal.sqlite3")
    assert records.excursions(1, 0)[-1]["peak_c"] == worst


async def test_a_valveless_cabinet_shows_the_cold_its_compressor_gives(tmp_path: Path, rig_class):
    rig = rig_class(tmp_path, {1: "freeze"}, 10.0, compressor_min_off_s=0)
    await rig.close()  # only its config is wanted: a valve-less pair on one compressor
    from agent.app import Agent
    from simulator.mock_pins import mock_factory

    data = rig.config.model_dump(mode="json", exclude={"cloud": {"api_key_file"}})
    data["cloud"]["api_key"], data["api"] = "k", {"token": "t"}
    data["thermal"]["compressors"] = [{"name": "c", "bus": "gpio", "pin": 20}]
    data["cabinets"] = [
        {"key": k, "front": {"bus": "gpio", "switch": 4 + k, "lock": 8 + k},
         "thermal": {"sensor": f"28-00000000000{k}", "compressor": "c"}}
        for k in (1, 2)
    ]  # fmt: skip
    config = parse_config(data, tmp_path)
    agent = Agent(config, gpio_factory=mock_factory())
    await agent.hardware.start()
    for key, mode in ((1, "freeze"), (2, "chill")):
        agent.locker.cabinets[key].thermal_mode = mode
    thermal = agent.thermal
    try:
        thermal.step({1: 10.0, 2: 2.0})
        thermal.step({1: 10.0, 2: 2.0})
        assert thermal.outputs.compressor_on("c")  # cabinet 1 calls for cold
        assert agent.locker.cabinets[2].as_cloud()["thermal"]["cooling"]  # 2 gets it too
    finally:
        thermal.outputs.all_off()
        thermal.records.close()
        await agent.hardware.close()
        agent.outbox.close()
        agent.store.close()


async def test_a_relay_welded_on_in_ambient_is_caught_and_latched(rigs):
    """A fresh user's find: ambient has no band, and a welded heater went to 111 C."""
    rig = await rigs({0: "ambient"}, over_limit_c=120)
    rig.plant.body(0).stuck_on = "heater"
    rig.run(3 * 3600, dt_s=60)
    assert "thermal_not_converging" in rig.alarms(0)
    assert "heater relay stuck on" in rig.thermal.units[0].latches["thermal_not_converging"].why
    rig.plant.body(0).stuck_on = None  # mended: it cools back toward the room
    rig.run(6 * 3600, dt_s=120)
    assert "thermal_not_converging" in rig.alarms(0)  # until a technician says so
    rig.thermal.reset(0, "a technician")
    rig.run(120)
    assert "thermal_not_converging" not in rig.alarms(0)


async def test_a_full_disk_does_not_queue_the_same_alarm_every_round(rigs):
    """While the outbox refuses, the journal holds an alarm and the cabinet lags; a
    round must not publish it again (48 cabinets a second would fill the backlog)."""
    from agent.storage.outbox import OutboxError

    rig = await rigs({1: "chill"}, 20.0, compressor_min_off_s=0)
    real = rig.agent.outbox.append

    def full(*args, **kwargs):
        raise OutboxError("database or disk is full")

    rig.agent.outbox.append = full
    rig.run(600, dt_s=10)
    assert rig.locker.journal.waiting <= 2  # the alarm once, not sixty times
    rig.agent.outbox.append = real
    rig.locker.journal._drain()
    assert rig.events().count("temperature_out_of_band") == 1
