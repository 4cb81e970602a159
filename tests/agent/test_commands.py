import pytest

from agent.commands import error_body, parse_command
from agent.errors import LockerError


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
