"""[thermal] and a cabinet's thermal unit: typed, bounded, cross-checked by key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "cloud": {"url": "https://lockers.example.com", "api_key": "k"},
    "api": {"token": "t"},
    "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
    "cabinets": [
        {
            "key": 0,
            "front": {"bus": "gpio", "switch": 4, "lock": 5},
            "thermal": {"sensor": "28-00000a1b2c3d", "bus": "gpio", "heater": 17, "cooler": 27},
        }
    ],
}


def data(**thermal: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    if thermal:
        out["thermal"] = thermal
    return out


def problems(d: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(d, Path("/nonexistent"))
    return caught.value.problems


def test_defaults_follow_the_food_code():
    uk = parse_config(data(), Path("/x")).thermal
    assert uk.food_code == "uk" and uk.time_limit_s() == 7200
    assert uk.alarm_lines().chill_max_c == 8.0 and uk.alarm_lines().hot_min_c == 63.0
    fda = parse_config(data(food_code="fda"), Path("/x")).thermal
    assert fda.time_limit_s() == 4 * 3600 and fda.alarm_lines().hot_min_c == 57.0
    assert fda.held_bands()["heat"].low >= 57.0
    assert parse_config(data(), Path("/x")).cabinets[0].thermal.modes() == {
        "ambient",
        "heat",
        "chill",
        "freeze",
    }


@pytest.mark.parametrize(
    ("thermal", "expected"),
    [
        ({"food_code": "eu"}, "thermal.food_code"),
        ({"log_every_s": 0}, "thermal.log_every_s"),
        ({"compressor_min_off_s": 3600}, "thermal.compressor_min_off_s"),
        ({"bands": {"heat": [40, 45]}}, "under 50 C"),
        ({"bands": {"freeze": [-5, 2]}}, "above 0 C"),
        ({"bands": {"chill": [4, 4.2]}}, "0.5 C above low"),
        ({"bands": {"chill": [6, 9]}}, "beyond the alarm line"),
        ({"lines": {"hot_min_c": 30}}, "thermal.lines.hot_min_c"),
        ({"sample_s": "2"}, "thermal.sample_s"),
        ({"tempo": 1}, "thermal.tempo: unknown key"),
        ({"over_limit_c": 60}, "thermal.over_limit_c"),
        ({"over_limit_c": 130}, "thermal.over_limit_c"),
        ({"over_limit_c": 72}, "within 5 C of the heat band's top"),
        ({"sensor_grace_s": 1}, "thermal.sensor_grace_s"),
        ({"alarm_raise_s": -1}, "thermal.alarm_raise_s"),
        ({"drift_max_c_per_h": 0}, "thermal.drift_max_c_per_h"),
        ({"stall_s": 1}, "thermal.stall_s"),
        ({"fallback": {"freeze": 1.5}}, "thermal.fallback.freeze"),
        ({"fallback": {"cycle_s": 10}}, "thermal.fallback.cycle_s"),
        ({"fallback": {"heat": 0.5}}, "thermal.fallback.heat: unknown key"),
        ({"cutoff": {"bus": "gpio", "pin": 17}}, "GPIO17"),
        ({"cutoff": {"bus": "nowhere", "pin": 26}}, "thermal.cutoff.bus: no bus named"),
    ],
)
def test_nonsense_is_refused_by_key(thermal, expected):
    assert any(expected in p for p in problems(data(**thermal))), problems(data(**thermal))


def test_cabinet_unit_checks():
    d = data()
    d["cabinets"][0]["thermal"]["sensor"] = "10-xyz"
    assert any(p.startswith("cabinets[0].thermal.sensor") for p in problems(d))
    d = data()
    d["cabinets"][0]["thermal"]["heater"] = 5  # the lock's pin
    assert any("GPIO5" in p and "cabinets[0].thermal.heater" in p for p in problems(d))
    d = data()
    d["cabinets"][0]["thermal"]["bus"] = "nowhere"
    assert any("cabinets[0].thermal.bus: no bus named 'nowhere'" in p for p in problems(d))
    d = data()
    del d["cabinets"][0]["thermal"]["bus"]
    assert any("bus: required" in p for p in problems(d))


def test_compressors_are_declared_once_on_gpio_and_named_right():
    d = data(compressors=[{"name": "bank", "bus": "gpio", "pin": 17}])
    d["cabinets"][0]["thermal"]["compressor"] = "other"
    found = problems(d)
    assert any("thermal.compressors[0].pin" in p and "GPIO17" in p for p in found), found
    assert any("no compressor named 'other'" in p for p in found), found
    d = data(compressors=[{"name": "bank", "bus": "gpio", "pin": 20}] * 2)
    assert any("declared twice" in p for p in problems(d))
    ok = data(compressors=[{"name": "bank", "bus": "gpio", "pin": 20}])
    ok["cabinets"][0]["thermal"] = {"sensor": "28-00000a1b2c3d", "compressor": "bank"}
    cabinet = parse_config(ok, Path("/x")).cabinets[0]
    assert cabinet.thermal.modes() == {"ambient", "chill", "freeze"}


def test_the_new_safety_keys_default_and_show_in_the_summary():
    from agent.config import summary

    thermal = parse_config(data(), Path("/x")).thermal
    assert (thermal.over_limit_c, thermal.cutoff, thermal.stall_s) == (90.0, None, 30.0)
    assert (thermal.fallback.duty("chill"), thermal.fallback.duty("heat")) == (0.35, 0.0)
    fitted = parse_config(data(cutoff={"bus": "gpio", "pin": 26}), Path("/x"))
    assert fitted.thermal.cutoff is not None and fitted.thermal.cutoff.pin.number == 26
    said = summary(fitted)
    assert "at 90 C or over a cabinet's outputs are cut, the heaters' cutoff GPIO26" in said
    assert "35% (chill) / 60% (freeze) of 1800 s" in said


def test_the_food_locker_example_shows_every_new_key():
    text = (Path(__file__).resolve().parents[3] / "config" / "food-locker.toml").read_text()
    for key in ("over_limit_c", "cutoff", "sensor_grace_s", "alarm_raise_s",
                "drift_max_c_per_h", "stall_s", "[thermal.fallback]"):  # fmt: skip
        assert key in text, key
