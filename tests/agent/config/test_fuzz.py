"""Fuzzing the config loader: any file, any TOML is a clean error or a config that starts.

"Starts" is what ``check-config`` checks: every driver builds dry on mock pins.
A clean error is a ``ConfigError`` whose lines each name a key path or the file.
"""

from __future__ import annotations

import asyncio
import copy
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import Config, ConfigError, load_config, parse_config
from agent.hardware.dry import build_dry

BASE = tomllib.loads(
    """
[locker]
timer_s = 15
[cloud]
url = "https://cloud.lockers.test"
api_key = "k-9f3Qx1"
heartbeat_s = 60
[api]
listen = "127.0.0.1:8080"
token = "t-7Hq2Lw"
[storage]
dir = "state"
[[buses]]
name = "rs485"
port = "/dev/ttyUSB0"
boards = [0, 1]
[[buses]]
name = "gpio"
driver = "gpio"
pin_factory = "mock"
[[cabinets]]
key = 0
front = { bus = "rs485", board = 0, channel = 1 }
rear = { bus = "rs485", board = 1, channel = 1 }
[[cabinets]]
key = 1
size = "large"
front = { bus = "gpio", switch = "^!4", lock = 17 }
indicator = { bus = "gpio", red = 5, green = 6, blue = 13 }
"""
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)

_scalars = (
    st.none().map(lambda _: "")
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=True)
    | st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """The base config with a few values replaced, keys added or removed."""
    document = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        parent: Any = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(_values)
    return document


def _verdict(load: Any) -> Config | None:
    try:
        return load()
    except ConfigError as err:
        assert err.problems
        assert all(isinstance(line, str) and line for line in err.problems)
        return None


@FUZZ
@given(mutated())
def test_any_config_is_a_clean_error_or_one_that_starts(document):
    config = _verdict(lambda: parse_config(document, Path("/tmp")))
    if config is not None:
        assert asyncio.run(build_dry(config)) == []


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_file_is_a_clean_error_or_a_config(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "agent.toml"
    path.write_bytes(raw)
    _verdict(lambda: load_config(path))
