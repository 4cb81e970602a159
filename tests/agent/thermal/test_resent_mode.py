"""A cloud re-sends its desired state: the same thermal mode again must keep what the
controller has found so far (a dead heater's run towards not converging, a welded
relay's coast), or a fault is never found while the cloud keeps sending."""

from __future__ import annotations

from agent.locker.commands import CabinetCommand, parse_command


def set_mode(mode: str) -> CabinetCommand:
    return parse_command({"command": "set_thermal_mode", "thermal_mode": mode})


async def test_a_dead_heater_is_latched_though_the_mode_is_resent_every_minute(rigs):
    rig = await rigs({0: "heat"}, 40.0)
    rig.plant.body(0).heater_failed = True  # or its probe fallen out of the cabinet
    on_s = 0
    for minute in range(120):
        if not rig.thermal.units[0].latched:  # once latched, the re-sends are refused
            await rig.locker.submit(0, set_mode("heat"), f"cloud:{minute}")
        for _ in range(6):
            rig.run(10, dt_s=10)
            on_s += 10 * rig.pin(17)
    assert rig.thermal.units[0].latched and "thermal_not_converging" in rig.alarms(0)
    assert on_s < 1800  # converge_s (1200 s) and a round or two, not two hours


async def test_a_welded_relay_is_found_though_the_mode_is_resent(rigs):
    rig = await rigs({0: "heat"}, cutoff={"bus": "gpio", "pin": 26})
    rig.run(3600, dt_s=10)
    rig.plant.body(0).stuck_on = "heater"
    peak = 0.0
    for minute in range(180):
        if not rig.thermal.units[0].latched:
            await rig.locker.submit(0, set_mode("heat"), f"cloud:{minute}")
        rig.run(60, dt_s=10)
        peak = max(peak, rig.temp(0))
    assert "thermal_not_converging" in rig.thermal.units[0].latches
    assert peak < 85  # cut by the cutoff once found, not by the over-limit line at 90


async def test_a_new_mode_still_rearms(rigs):
    rig = await rigs({1: "chill"}, 9.0, compressor_min_off_s=0)
    rig.run(600, dt_s=30)
    await rig.locker.submit(1, set_mode("freeze"), "cloud:1")
    rig.run(30)
    assert rig.thermal.units[1].control._mode == "freeze"
