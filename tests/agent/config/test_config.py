"""The config layer: every problem a technician can make is named by its key path."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.config import (
    ApiConfig,
    ConfigError,
    KerongDoorWiring,
    load_config,
    parse_config,
    summary,
)
from drivers.gpio.pins import PinSpec
from tests.conftest import as_installed

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "config"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))

API_KEY = "cloud-key-Zq81xT"
TOKEN = "local-token-Hw27pL"

MINIMAL = f"""
[cloud]
url = "https://lockers.example.com"
api_key = "{API_KEY}"

[api]
token = "{TOKEN}"

[[buses]]
name = "rs485"
port = "/dev/ttyUSB0"
boards = [0, 1]

[[cabinets]]
key = 0
front = {{ bus = "rs485", board = 0, channel = 1 }}
"""


def base() -> dict[str, Any]:
    return tomllib.loads(MINIMAL)


def door(bus: str = "rs485", board: int = 0, channel: int = 1) -> dict[str, Any]:
    return {"bus": bus, "board": board, "channel": channel}


def problems_of(data: dict[str, Any], base_dir: Path = Path("/nonexistent")) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir)
    assert caught.value.problems, "a ConfigError always has at least one problem"
    return caught.value.problems


def only_problem(data: dict[str, Any]) -> str:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    return problems[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- valid input


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "locker.toml", MINIMAL))

    assert config.locker.name is None
    assert config.locker.timer_s == 15
    assert config.cloud.url == "https://lockers.example.com"
    assert config.cloud.api_key.get_secret_value() == API_KEY
    assert config.cloud.api_key_file is None
    assert config.cloud.heartbeat_s == 60
    assert config.cloud.timeout_s == 10
    assert config.api.token.get_secret_value() == TOKEN
    assert config.api.listen == "127.0.0.1:8080"
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.storage.dir == Path("/var/lib/locker-agent")
    bus = config.bus("rs485")
    assert (bus.driver, bus.baud, bus.boards, bus.locked_bit) == ("kerong-cu16", 19200, [0, 1], 1)
    assert (bus.reply_timeout_s, bus.poll_interval_s) == (0.1, 0.005)
    cabinet = config.cabinet(0)
    assert cabinet.size == "mini"
    assert cabinet.front == KerongDoorWiring(bus="rs485", board=0, channel=1)
    assert cabinet.rear is None


def test_helpers_find_buses_cabinets_and_doors() -> None:
    data = base()
    data["cabinets"].append({"key": 7, "front": door(channel=2), "rear": door(board=1)})
    config = parse_config(data, Path("/etc/locker-agent"))

    assert list(config.door_refs()) == [
        (0, "front", KerongDoorWiring(bus="rs485", board=0, channel=1)),
        (7, "front", KerongDoorWiring(bus="rs485", board=0, channel=2)),
        (7, "rear", KerongDoorWiring(bus="rs485", board=1, channel=1)),
    ]
    assert config.cabinet(7).rear is not None
    with pytest.raises(KeyError):
        config.bus("nope")
    with pytest.raises(KeyError):
        config.cabinet(99)


def test_url_loses_its_trailing_slash_and_may_have_a_base_path() -> None:
    data = base()
    data["cloud"]["url"] = "http://10.0.0.5:8000/synq/"
    assert parse_config(data, Path("/")).cloud.url == "http://10.0.0.5:8000/synq"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("0.0.0.0:9000", "0.0.0.0", 9000), ("[::1]:8443", "::1", 8443), ("pi.lan:1", "pi.lan", 1)],
)
def test_listen_gives_host_and_port(listen: str, host: str, port: int) -> None:
    data = base()
    data["api"]["listen"] = listen
    api = parse_config(data, Path("/")).api
    assert (api.host, api.port) == (host, port)


def test_models_are_frozen() -> None:
    config = parse_config(base(), Path("/"))
    with pytest.raises(ValidationError):
        config.locker.timer_s = 30  # type: ignore[misc]


def test_summary_names_everything_but_secrets(tmp_path: Path) -> None:
    data = base()
    data["locker"] = {"name": "Lobby A"}
    data["cabinets"].append({"key": 1, "front": door(channel=2), "rear": door(board=1)})
    text = summary(parse_config(data, tmp_path))

    for expected in (
        "Lobby A",
        "cabinets: 2 (1 with a rear door)",
        "bus rs485: kerong-cu16 on /dev/ttyUSB0, 19200 baud, boards 0, 1",
        "https://lockers.example.com",
        "heartbeat every 60 s",
        "127.0.0.1:8080",
        "/var/lib/locker-agent",
    ):
        assert expected in text
    assert API_KEY not in text and TOKEN not in text


# --------------------------------------------------------------------------- examples


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


def load_example(name: str, folder: Path):
    """An example as a technician loads it: copied beside install.sh's api.key and api.token."""
    return load_config(as_installed(EXAMPLES_DIR / name, folder))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path: Path, tmp_path: Path) -> None:
    config = load_config(as_installed(path, tmp_path))
    assert config.cloud.api_key_file == tmp_path / "api.key"  # the file, never inline
    assert config.api.token_file == tmp_path / "api.token"
    doors = [w.model_dump_json() for _, _, w in config.door_refs()]
    assert len(doors) == len(set(doors))
    assert summary(config)


def test_examples_show_what_they_promise(tmp_path: Path) -> None:
    three = load_example("kerong-3-boards.toml", tmp_path / "a")
    assert len(three.cabinets) == 48 and three.buses[0].boards == [0, 1, 2]
    assert three.buses[0].port.startswith("/dev/serial/by-id/")
    rear = load_example("kerong-rear-load.toml", tmp_path / "b")
    assert all(c.front.board == 0 and c.rear and c.rear.board == 1 for c in rear.cabinets)
    tcp = load_example("kerong-tcp-gateway.toml", tmp_path / "c")
    assert tcp.buses[0].port == "socket://REPLACE-WITH-THE-GATEWAY-ADDRESS:5000"
    shared = load_example("kerong-and-gpio-one-supply.toml", tmp_path / "d")
    assert [(b.driver, b.supply) for b in shared.buses] == [("kerong-cu16", "24v"), ("gpio", "24v")]
    assert "power: supply 24v (buses rs485, gpio): at most 2 actuations at once" in summary(shared)


# --------------------------------------------------------------------------- field errors


@pytest.mark.parametrize("channel", [0, 17])
def test_channel_out_of_range(channel: int) -> None:
    data = base()
    data["cabinets"].append({"key": 1, "front": door(channel=2)})
    data["cabinets"].append({"key": 2, "front": door(channel=3)})
    data["cabinets"].append({"key": 3, "front": door(channel=channel)})
    assert only_problem(data) == (
        f"cabinets[3].front.channel: must be between 1 and 16 (got {channel})"
    )


def test_board_out_of_range_in_a_door_and_in_a_bus() -> None:
    data = base()
    data["cabinets"][0]["rear"] = door(board=16)
    data["buses"][0]["boards"] = [0, 1, 99]
    assert problems_of(data) == [
        "buses[0].boards[2]: must be between 0 and 15 (got 99)",
        "cabinets[0].rear.board: must be between 0 and 15 (got 16)",
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("buses", "baud", 12345, "buses[0].baud: must be one of 1200, 2400"),
        ("buses", "locked_bit", 2, "buses[0].locked_bit: must be one of 0 or 1"),
        ("buses", "reply_timeout_s", 0, "buses[0].reply_timeout_s: must be between 0.01 and 5"),
        ("buses", "poll_interval_s", 10, "buses[0].poll_interval_s: must be between 0.005 and 5"),
        ("buses", "boards", [], "buses[0].boards: must not be empty"),
        ("buses", "driver", "modbus", "buses[0].driver: must be one of 'kerong-cu16'"),
        ("cabinets", "key", -1, "cabinets[0].key: must be between 0 and"),
        ("cabinets", "size", "", "cabinets[0].size: must not be empty"),
        ("cloud", "heartbeat_s", 1, "cloud.heartbeat_s: must be between 5 and 3600 (got 1)"),
        ("locker", "timer_s", 601, "locker.timer_s: must be between 1 and 600 (got 601)"),
        ("storage", "dir", "", "storage.dir: must not be empty"),
    ],
)
def test_bounded_values(section: str, key: str, value: Any, expected: str) -> None:
    data = base()
    table = data.setdefault(section, {})
    (table[0] if isinstance(table, list) else table)[key] = value
    assert only_problem(data).startswith(expected)


def test_bus_name_is_a_plain_word() -> None:
    data = base()
    data["buses"][0]["name"] = data["cabinets"][0]["front"]["bus"] = "rs 485"
    assert only_problem(data) == "buses[0].name: use only letters, digits, '-', '_' and '.'"


@pytest.mark.parametrize(
    ("loc", "value", "expected"),
    [
        (("cabinets", 0, "front", "channel"), "1", "must be an integer (got a string)"),
        (("locker", "timer_s"), True, "must be an integer (got a boolean)"),
        (("locker", "timer_s"), 1.5, "must be an integer (got a float)"),
        (("cloud", "heartbeat_s"), "60", "must be a number (got a string)"),
        (("buses", 0, "boards"), 0, "must be an array (got an integer)"),
        (("buses", 0, "port"), 1, "must be a string (got an integer)"),
        (("cabinets", 0, "front"), "rs485", "must be a table (got a string)"),
        (("locker",), [1], "must be a table (got an array)"),
    ],
)
def test_wrong_type(loc: tuple[Any, ...], value: Any, expected: str) -> None:
    data = base()
    target: Any = data
    for part in loc[:-1]:
        target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
    target[loc[-1]] = value
    path = ".".join(str(p) for p in loc).replace(".0", "[0]")
    assert only_problem(data) == f"{path}: {expected}"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://lockers.example.com",
        "lockers.example.com",
        "https://",
        "https:///api",
        "https://user:pw@lockers.example.com",
        "https://lockers.example.com/?x=1",
        "https://lockers.example.com:99999",
        " https://lockers.example.com",
    ],
)
def test_bad_url(url: str) -> None:
    data = base()
    data["cloud"]["url"] = url
    problem = only_problem(data)
    assert problem.startswith("cloud.url: ")
    assert "pw" not in problem


@pytest.mark.parametrize(
    "listen",
    ["8080", "localhost", ":8080", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "a b:80"],
)
def test_bad_listen(listen: str) -> None:
    data = base()
    data["api"]["listen"] = listen
    assert only_problem(data).startswith("api.listen: ")


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("cloud", "heartbeat"), "cloud.heartbeat: unknown key (did you mean 'heartbeat_s'?)"),
        (("locker", "timer"), "locker.timer: unknown key (did you mean 'timer_s'?)"),
        (("buses", 0, "boudrate"), "buses[0].boudrate: unknown key"),
        (("buses", 0, "board"), "buses[0].board: unknown key (did you mean 'boards'?)"),
        (
            ("cabinets", 0, "front", "chanel"),
            "cabinets[0].front.chanel: unknown key (did you mean 'channel'?)",
        ),
        (("webhooks",), "webhooks: unknown key"),
        (("cabinet",), "cabinet: unknown key (did you mean 'cabinets'?)"),
    ],
)
def test_unknown_key(loc: tuple[Any, ...], expected: str) -> None:
    data = base()
    target: Any = data
    for part in loc[:-1]:
        target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
    target[loc[-1]] = 1
    assert expected in problems_of(data)


# --------------------------------------------------------------------------- cross checks


def test_cabinet_on_an_undeclared_bus() -> None:
    data = base()
    data["cabinets"] += [{"key": 1, "front": door(channel=2)}, {"key": 2, "front": door("x")}]
    assert only_problem(data) == "cabinets[2].front.bus: no bus named 'x' (declared: rs485)"


def test_cabinet_on_an_undeclared_board() -> None:
    data = base()
    data["cabinets"][0]["rear"] = door(board=5)
    assert only_problem(data) == (
        "cabinets[0].rear.board: bus 'rs485' has no board 5 (its boards: 0, 1)"
    )


def test_two_doors_on_one_channel_names_both() -> None:
    data = base()
    data["cabinets"].append({"key": 4, "front": door(channel=2), "rear": door(channel=1)})
    assert only_problem(data) == (
        "cabinets[1].rear.channel: bus 'rs485' board 0 channel 1 is also wired to "
        "cabinets[0].front (key 0)"
    )


def test_same_channel_number_on_other_boards_or_buses_is_fine() -> None:
    data = base()
    data["buses"].append({"name": "second", "port": "/dev/ttyUSB1", "boards": [0]})
    data["cabinets"].append({"key": 1, "front": door(board=1)})
    data["cabinets"].append({"key": 2, "front": door("second")})
    assert len(parse_config(data, Path("/")).cabinets) == 3


def test_duplicate_cabinet_keys() -> None:
    data = base()
    data["cabinets"].append({"key": 0, "front": door(channel=2)})
    assert only_problem(data) == "cabinets[1].key: key 0 is already used by cabinets[0]"


def test_duplicate_bus_names_and_ports() -> None:
    data = base()
    data["buses"].append({"name": "rs485", "port": "/dev/ttyUSB0", "boards": [2]})
    assert problems_of(data) == [
        "buses[1].name: bus 'rs485' is already declared by buses[0]",
        "buses[1].port: port '/dev/ttyUSB0' is already used by buses[0]",
    ]


def test_duplicate_boards_in_a_bus() -> None:
    data = base()
    data["buses"][0]["boards"] = [0, 1, 0]
    assert only_problem(data) == "buses[0].boards: board 0 is listed twice"


def test_empty_or_missing_lists() -> None:
    data = base()
    data["buses"] = []
    del data["cabinets"]
    assert problems_of(data) == [
        "buses: must not be empty",
        "cabinets: missing: add at least one [[cabinets]] table",
    ]


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(("section", "key"), [("cloud", "api_key"), ("api", "token")])
def test_secret_given_twice(section: str, key: str, tmp_path: Path) -> None:
    write(tmp_path / "secret", "from-file")
    data = base()
    data[section][f"{key}_file"] = "secret"
    assert problems_of(data, tmp_path) == [
        f"{section}.{key}: give either {key} or {key}_file, not both"
    ]


@pytest.mark.parametrize(("section", "key"), [("cloud", "api_key"), ("api", "token")])
def test_secret_missing(section: str, key: str) -> None:
    data = base()
    del data[section][key]
    assert only_problem(data) == f"{section}.{key}: missing: set {key} or {key}_file"


def test_api_section_left_out_is_an_error_not_an_open_api() -> None:
    data = base()
    del data["api"]
    assert only_problem(data) == "api.token: missing: set token or token_file"


def test_cloud_section_left_out() -> None:
    data = base()
    del data["cloud"]
    assert problems_of(data) == [
        "cloud.api_key: missing: set api_key or api_key_file",
        "cloud.url: missing (required)",
    ]


def test_empty_inline_secret() -> None:
    data = base()
    data["api"]["token"] = "   "
    assert only_problem(data) == "api.token: must not be empty"


def test_secret_files_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    write(etc / "secrets" / "api-key", f"\n  {API_KEY}  \n")
    write(tmp_path / "abs-token", TOKEN + "\n")
    config_text = (
        MINIMAL.replace(f'api_key = "{API_KEY}"', 'api_key_file = "secrets/api-key"')
        .replace(f'token = "{TOKEN}"', f'token_file = "{tmp_path / "abs-token"}"')
        .replace("[api]", '[storage]\ndir = "state"\n\n[api]')
    )
    path = write(etc / "locker.toml", config_text)
    monkeypatch.chdir(write(tmp_path / "elsewhere" / "x", "").parent)

    config = load_config(path)

    assert config.cloud.api_key.get_secret_value() == API_KEY
    assert config.cloud.api_key_file == etc / "secrets" / "api-key"
    assert config.api.token.get_secret_value() == TOKEN
    assert config.api.token_file == tmp_path / "abs-token"
    assert config.storage.dir == etc / "state"
    assert API_KEY not in repr(config) and API_KEY not in summary(config)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read {path}: No such file or directory"), ("  \n", "{path} is empty")],
)
def test_bad_secret_file(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        write(path, content)
    data = base()
    del data["cloud"]["api_key"]
    data["cloud"]["api_key_file"] = "key"
    assert problems_of(data, tmp_path) == [
        f"cloud.api_key_file: {expected.format(path=path)}: put the locker's api-key in it,"
        " alone (install.sh makes the file, root:locker-agent 640)"
    ]


def test_secret_file_that_is_a_directory(tmp_path: Path) -> None:
    data = base()
    del data["api"]["token"]
    data["api"]["token_file"] = str(tmp_path)
    (problem,) = problems_of(data, tmp_path)
    assert problem.startswith(f"api.token_file: cannot read {tmp_path}")


def test_secrets_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    secret_in_file = "file-secret-Pk93"
    write(tmp_path / "token", secret_in_file)
    data = base()
    data["cloud"]["api_kye"] = API_KEY  # a typo in the key name still hides the value
    data["cloud"]["api_key_file"] = "token"  # and api_key is also set: both
    del data["api"]["token"]
    data["api"]["token_file"] = "token"  # read, while other parts are wrong
    data["api"]["listen"] = "nope"
    data["cabinets"][0]["front"]["channel"] = 99

    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)

    error = caught.value
    rendered = [str(error), repr(error), *error.problems]
    for secret in (API_KEY, TOKEN, secret_in_file):
        assert all(secret not in text for text in rendered), secret
    assert len(error.problems) == 4

    config = parse_config(base(), tmp_path)
    for text in (repr(config), str(config), summary(config), config.model_dump_json()):
        assert API_KEY not in text and TOKEN not in text


def test_validation_errors_from_code_hide_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        ApiConfig(token=TOKEN, listen="bad", extra=TOKEN)  # type: ignore[call-arg]
    assert TOKEN not in str(caught.value)


# --------------------------------------------------------------------------- all at once


def test_many_problems_are_reported_together() -> None:
    data = base()
    data["locker"] = {"timer_s": 0}
    data["cloud"]["url"] = "ftp://x"
    data["cloud"]["heartbeat"] = 60
    data["api"]["listen"] = "127.0.0.1"
    data["buses"][0]["baud"] = 1234
    data["cabinets"] += [
        {"key": 0, "front": door(channel=17)},
        {"key": 2, "front": door("x", channel=3)},
        {"key": 3, "front": door(channel=1)},
    ]

    problems = problems_of(data)

    paths = [line.split(":", 1)[0] for line in problems]
    assert paths == [
        "locker.timer_s",
        "cloud.url",
        "cloud.heartbeat",
        "api.listen",
        "buses[0].baud",
        "cabinets[1].front.channel",
        "cabinets[1].key",
        "cabinets[2].front.bus",
        "cabinets[3].front.channel",
    ]
    assert str(ConfigError(problems)) == "\n".join(problems)


# --------------------------------------------------------------------------- files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert caught.value.problems == ["no such file"]
    assert caught.value.source == str(tmp_path / "nope.toml")


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    (problem,) = caught.value.problems
    assert problem.startswith("cannot read: ")


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", '[cloud]\nurl = "https://x"\napi_key = oops\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.startswith("line 3, column 11: TOML syntax error: ")
    assert "oops" not in problem


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"name = '\xff'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == ["not UTF-8 text"]


def test_top_level_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config([1, 2], Path("/"))  # type: ignore[arg-type]
    assert caught.value.problems == ["(top level): must be a table (got an array)"]


# --------------------------------------------------------------------------- fuzz

TOML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _leaf_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _leaf_paths(child, (*prefix, index))
    return paths


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_mangled_config_gives_config_or_config_error(data: st.DataObject) -> None:
    document = copy.deepcopy(base())
    document["cabinets"].append({"key": 1, "front": door(channel=2), "rear": door(board=1)})
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_leaf_paths(document)))
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = data.draw(TOML_VALUES)
    try:
        config = parse_config(document, Path("/nonexistent"))
    except ConfigError as e:
        assert e.problems and all(": " in line for line in e.problems)
        assert all(API_KEY not in line and TOKEN not in line for line in e.problems)
    else:
        assert summary(config)


# --------------------------------------------------------------------------- GPIO


def gpio_base() -> dict[str, Any]:
    data = base()
    data["buses"].append({"name": "gpio", "driver": "gpio", "pin_factory": "mock"})
    data["cabinets"].append(
        {
            "key": 1,
            "front": {
                "bus": "gpio",
                "switch": "^!4",
                "open_switch": "^!17",
                "motor_open": 27,
                "motor_close": 22,
            },
            "rear": {"bus": "gpio", "switch": "^!9", "lock": 11},
            "item": {"bus": "gpio", "pin": "^5"},
            "indicator": {"bus": "gpio", "red": 12, "green": 13, "blue": 19},
        }
    )
    return data


def test_gpio_locker_beside_a_kerong_bank() -> None:
    config = parse_config(gpio_base(), Path("/nonexistent"))
    front = config.cabinet(1).front
    # Pins hold the parsed spec of the one pin grammar (drivers.gpio.pins.parse_pin).
    assert front.motorised and front.pins()["switch"] == PinSpec(4, pull_up=True, active_low=True)
    assert str(front.pins()["switch"]) == "^!GPIO4"
    assert config.bus("gpio").max_concurrent == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("front", "switch", "GPIO99"), "cabinets[1].front.switch: must be a GPIO number 0-53"),
        (("front", "switch", "^^4"), "cabinets[1].front.switch: must be a GPIO number 0-53"),
        (("rear", "lock", 4), "cabinets[1].rear.lock: GPIO4 on bus 'gpio' is also used by"),
        (("front", "motor_close", None), "cabinets[1].front: a motor needs both"),
        (("front", "open_switch", None), "cabinets[1].front: a motorised door needs open_switch"),
        (("front", "bus", "rs485"), "cabinets[1].front.bus: bus 'rs485' is kerong-cu16"),
        (("front", "swich", "4"), "cabinets[1].front.swich: unknown key (did you mean 'switch'?)"),
    ],
)
def test_gpio_problems_name_the_key(change: tuple[str, str, Any], expected: str) -> None:
    data = gpio_base()
    side, key, value = change
    if value is None:
        del data["cabinets"][1][side][key]
    else:
        data["cabinets"][1][side][key] = value
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_door_without_lock_or_motor() -> None:
    data = gpio_base()
    del data["cabinets"][1]["rear"]["lock"]
    assert any("a door needs a lock or a motor" in p for p in problems_of(data))


def test_gpio_bus_keys_are_bounded() -> None:
    data = gpio_base()
    data["buses"][1]["pulse_s"] = 5
    data["buses"][1]["max_concurrent"] = 0
    problems = problems_of(data)
    assert "buses[1].pulse_s: must be between 0.05 and 2.0 (got 5)" in problems
    assert any(p.startswith("buses[1].max_concurrent: must be between 1 and 16") for p in problems)


def test_indicator_on_a_kerong_bus_is_refused() -> None:
    data = gpio_base()
    data["cabinets"][1]["indicator"]["bus"] = "rs485"
    assert any("cabinets[1].indicator.bus" in p for p in problems_of(data))


def test_commands_url_must_be_a_websocket() -> None:
    data = base()
    data["cloud"]["commands_url"] = "https://lockers.example.com/ws"
    assert only_problem(data).startswith("cloud.commands_url: must start with wss:// or ws://")
    data["cloud"]["commands_url"] = "wss://lockers.example.com/api/lockers/commands"
    assert parse_config(data, Path("/x")).cloud.commands_url.startswith("wss://")


def test_one_pin_grammar_takes_any_case_of_gpio() -> None:
    data = gpio_base()
    data["cabinets"][1]["rear"]["lock"] = "gpio11"
    assert parse_config(data, Path("/x")).cabinet(1).rear.lock == PinSpec(11, False, False)


@pytest.mark.parametrize(("side", "field"), [("rear", "lock"), ("front", "motor_open")])
def test_an_output_with_a_pull_up_names_the_key(side: str, field: str) -> None:
    data = gpio_base()
    data["cabinets"][1][side][field] = "^" + str(data["cabinets"][1][side][field])
    assert only_problem(data) == (
        f"cabinets[1].{side}.{field}: '^' (pull-up) is for inputs only;"
        " an output takes only '!' (active low)"
    )


def test_an_indicator_with_mixed_polarity_names_the_indicator() -> None:
    data = gpio_base()
    data["cabinets"][1]["indicator"]["green"] = "!13"
    assert only_problem(data) == (
        "cabinets[1].indicator: red, green and blue must share one polarity: '!' on all"
        " three (common anode) or on none (common cathode)"
    )


def test_a_floating_input_on_a_fixed_pull_up_pin() -> None:
    data = gpio_base()
    data["cabinets"][1]["item"]["pin"] = 3
    assert only_problem(data).startswith(
        "cabinets[1].item.pin: GPIO3 has a fixed pull-up resistor on a Raspberry Pi"
    )


def test_pins_are_unique_across_gpio_buses() -> None:
    data = gpio_base()
    data["buses"].append({"name": "gpio-b", "driver": "gpio", "pin_factory": "mock"})
    data["cabinets"].append({"key": 2, "front": {"bus": "gpio-b", "switch": "^!6", "lock": "!13"}})
    assert only_problem(data) == (
        "cabinets[2].front.lock: GPIO13 is also used by cabinets[1].indicator.green on bus"
        " 'gpio' (every GPIO bus is on the controller's one header)"
    )


def test_an_invalid_entry_does_not_hide_the_cross_problems_of_others() -> None:
    data = gpio_base()
    data["cabinets"][1]["size"] = ""  # cabinet 1 is invalid as a whole...
    del data["cabinets"][1]["front"]["motor_close"]  # ...and so is its front door
    data["cabinets"].append(
        {"key": 1, "front": {"bus": "gpio", "switch": "^!27", "lock": "^!4"}, "size": 5}
    )
    assert problems_of(data) == [
        "cabinets[1].size: must not be empty",
        "cabinets[1].front: a motor needs both motor_open and motor_close",
        "cabinets[2].size: must be a string (got an integer)",
        "cabinets[2].front.lock: '^' (pull-up) is for inputs only; an output takes only"
        " '!' (active low)",
        # The valid parts of the invalid entries still meet the cross checks:
        "cabinets[2].key: key 1 is already used by cabinets[1]",
        "cabinets[2].front.switch: GPIO27 on bus 'gpio' is also used by"
        " cabinets[1].front.motor_open",
    ]


def test_parts_on_the_wrong_kind_of_bus() -> None:
    data = gpio_base()
    data["cabinets"][0]["rear"] = {"bus": "gpio", "board": 0, "channel": 2}
    data["cabinets"][1]["item"]["bus"] = "rs485"
    data["cabinets"][1]["indicator"]["bus"] = "nowhere"
    assert problems_of(data) == [
        "cabinets[0].rear.bus: bus 'gpio' is gpio, this door is wired for kerong-cu16",
        "cabinets[1].item.bus: bus 'rs485' is kerong-cu16; an item sensor needs a gpio bus",
        "cabinets[1].indicator.bus: no bus named 'nowhere' (declared: rs485, gpio)",
    ]


def test_a_bus_with_a_wrong_driver_still_declares_its_name() -> None:
    data = base()
    data["buses"][0]["driver"] = "modbus"
    data["cabinets"].append({"key": 1, "front": door(board=7)})
    assert only_problem(data).startswith("buses[0].driver: must be one of 'kerong-cu16'")


# --------------------------------------------------------------------------- supplies


def shared_supply(**gpio: Any) -> dict[str, Any]:
    data = gpio_base()
    data["buses"][0].update(supply="24v", max_concurrent=2, stagger_s=0.3)
    data["buses"][1].update(supply="24v", **gpio)
    return data


def test_buses_on_one_supply() -> None:
    config = parse_config(shared_supply(), Path("/x"))
    assert config.bus("rs485").supply == config.bus("gpio").supply == "24v"
    text = summary(config)
    assert "power: supply 24v (buses rs485, gpio): at most 2 actuations at once, starts" in text
    assert "0.3 s apart" in text


def test_buses_on_one_supply_must_agree_on_its_budget() -> None:
    assert problems_of(shared_supply(max_concurrent=3, stagger_s=0.5)) == [
        "buses[1].max_concurrent: supply '24v' is shared with buses[0], whose max_concurrent"
        " is 2: buses on one supply share its power budget, so give them the same"
        " max_concurrent and stagger_s",
        "buses[1].stagger_s: supply '24v' is shared with buses[0], whose stagger_s is 0.3:"
        " buses on one supply share its power budget, so give them the same max_concurrent"
        " and stagger_s",
    ]


def test_defaults_count_when_buses_share_a_supply() -> None:
    data = gpio_base()
    data["buses"][0]["supply"] = data["buses"][1]["supply"] = "psu"  # kerong 1 / gpio 2
    problems = problems_of(data)
    assert [p.split(":")[0] for p in problems] == ["buses[1].max_concurrent", "buses[1].stagger_s"]


def test_a_bus_without_supply_has_its_own() -> None:
    data = gpio_base()
    data["buses"][0]["supply"] = "a"
    config = parse_config(data, Path("/x"))
    assert config.bus("gpio").supply is None
    assert "power: bus gpio, its own supply: at most 2 actuations at once" in summary(config)
    assert "power: supply a (buses rs485): at most 1 actuation at once" in summary(config)


def test_supply_is_a_plain_name() -> None:
    data = base()
    data["buses"][0]["supply"] = "24 V"
    assert only_problem(data) == "buses[0].supply: use only letters, digits, '-', '_' and '.'"


# --------------------------------------------------------------------------- typos of required keys


def test_a_misspelt_list_key_is_one_line_with_the_list_not_a_table() -> None:
    """``board = [0, 1]`` for ``boards``: one line, the typo's, giving the key as it
    should be written; never "add a [[boards]] table" (boards is a list of numbers)."""
    data = base()
    data["buses"][0]["board"] = data["buses"][0].pop("boards")
    assert problems_of(data) == [
        "buses[0].board: unknown key (did you mean 'boards'? it is required: boards = [0, 1])"
    ]


def test_a_missing_list_of_numbers_is_shown_as_a_list() -> None:
    data = base()
    del data["buses"][0]["boards"]
    assert problems_of(data) == ["buses[0].boards: missing: a list, e.g. boards = [0, 1]"]


def test_a_misspelt_required_key_inside_an_inline_table_is_one_line() -> None:
    data = base()
    data["cabinets"][0]["front"]["chanel"] = data["cabinets"][0]["front"].pop("channel")
    assert problems_of(data) == [
        "cabinets[0].front.chanel: unknown key (did you mean 'channel'? it is required:"
        " channel = 1)"
    ]


def test_a_misspelt_secret_never_shows_its_value() -> None:
    data = base()
    data["cloud"]["api_kye"] = data["cloud"].pop("api_key")
    problems = problems_of(data)
    assert all(API_KEY not in p for p in problems), problems
