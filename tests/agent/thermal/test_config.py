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
