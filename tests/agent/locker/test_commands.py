import pytest

from agent.locker.commands import error_body, parse_command
from agent.locker.errors import LockerError


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "resize"}, "size"),
        ({"command": "set_thermal_mode"}, "thermal_mode"),
        ({"command": "set_thermal_mode", "thermal_mode": "lukewarm"}, "thermal_mode"),
        ({"command": "explode"}, "command"),
        ({}, "command"),
        ({"command": "open", "rearload": "perhaps"}, "rearload"),
        ({"command": "close", "delay": -1}, "delay"),
        ({"command": "open", "colour": "red"}, "colour"),
        ({"command": "open", "acted_by": "bob"}, "acted_by"),
    ],
)
def test_bad_bodies_name_the_field(body, field):
    with pytest.raises(LockerError) as err:
        parse_command(body)
    assert error_body(err.value)[0] == 422
    assert error_body(err.value)[1]["type"] == "INVALID_REQUEST"
    assert field in err.value.errors


def test_resize_error_text():
    with pytest.raises(LockerError) as err:
        parse_command({"command": "resize"})
    assert err.value.errors == {"size": ["required when command is resize"]}


@pytest.mark.parametrize("body", [[], "open", 5, None])
def test_body_must_be_an_object(body):
    with pytest.raises(LockerError):
        parse_command(body)


def test_full_cloud_body():
    cmd = parse_command(
        {
            "command": "open",
            "rearload": True,
            "acted_by": 1201,
            "order_id": None,
            "reason": None,
            "size": None,
            "thermal_mode": None,
            "delay": 2,
        }
    )
    assert cmd.rearload and cmd.acted_by == 1201


# --- fuzzing: any JSON body ---------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agent.locker.commands import CabinetCommand  # noqa: E402
from agent.locker.errors import Invalid  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "command": st.sampled_from(
            ["open", "close", "enable", "disable", "resize", "set_thermal_mode", "OPEN", ""]
        )
        | _json,
        "rearload": _json,
        "delay": st.integers(-10, 5000) | _json,
        "size": st.text(max_size=80) | _json,
        "thermal_mode": st.sampled_from(["ambient", "heat", "chill", "freeze", "hot"]) | _json,
        "acted_by": _json,
        "order_id": _json,
        "reason": st.text(max_size=600) | _json,
        "extra": _json,
    },
)


@settings(max_examples=400, deadline=None)
@given(_json | _fields)
def test_any_body_is_a_command_or_a_clean_422(body):
    try:
        command = parse_command(body)
    except Invalid as err:
        status, answer = error_body(err)
        assert status == 422 and answer["type"] == "INVALID_REQUEST"
        assert answer["message"]
        return
    assert isinstance(command, CabinetCommand)
    if command.command == "resize":
        assert command.size
    if command.command == "set_thermal_mode":
        assert command.thermal_mode
