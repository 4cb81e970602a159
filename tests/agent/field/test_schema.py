"""``locker-agent config schema``: a JSON Schema editors can use, which every example
config satisfies and which refuses what check-config refuses on a key's own."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import run_agent

ROOT = Path(__file__).resolve().parents[3]
FILES = [*sorted((ROOT / "config").glob("*.toml")), ROOT / "systemd" / "agent.toml"]


@pytest.fixture(scope="module")
def validator():
    result = run_agent("config", "schema", timeout=30)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return Draft202012Validator(schema)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_satisfies_the_schema(validator, path):
    errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text()))]
    assert errors == []


def example():
    return tomllib.loads((ROOT / "config" / "kerong-and-gpio-one-supply.toml").read_text())


def broken(change):
    data = copy.deepcopy(example())
    change(data)
    return data


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["cloud"].update(api_kye="x"),  # a typo
        lambda d: d["cloud"].pop("api_key_file"),  # neither api_key nor api_key_file
        lambda d: d["cloud"].update(api_key="k-9f3Qx1"),  # both
        lambda d: d["api"].pop("token_file"),
        lambda d: d["buses"][0].update(baud=19201),
        lambda d: d["buses"][0].update(boards=[16]),
        lambda d: d["cabinets"][0]["front"].update(channel=17),
        lambda d: d["cabinets"][0]["rear"].update(lock="^17"),  # an output takes no "^"
        lambda d: d["cabinets"][0]["rear"].update(switch="up"),
        lambda d: d["cabinets"][0].update(key="0"),
    ],
)
def test_the_schema_refuses_what_a_key_alone_shows_wrong(validator, change):
    assert validator.is_valid(example())
    assert not validator.is_valid(broken(change))


def test_a_secret_may_be_a_file_or_inline(validator):
    data = example()
    assert "api_key_file" in data["cloud"] and "token_file" in data["api"]  # as installed
    data["cloud"]["api_key"] = "k-9f3Qx1"
    data["api"]["token"] = "t-7Hq2Lw"
    del data["cloud"]["api_key_file"], data["api"]["token_file"]
    assert validator.is_valid(data)
