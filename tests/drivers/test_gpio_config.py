"""The GPIO driver's own config sections: pins read by the one pin grammar, and the
rules the bus applies when it builds the parts (no pull-up on an output, one polarity
per indicator, a pull-up where the board has a fixed one)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.gpio.config import (
    GpioBusConfig,
    GpioDoorWiring,
    GpioInputWiring,
    IndicatorWiring,
)
from drivers.gpio.outputs import PULSE_MAX_S
from drivers.gpio.pins import FIXED_PULL_UP, MAX_PIN, PinSpec, parse_pin


def messages(model: type, data: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {e["loc"]: e["msg"].removeprefix("Value error, ") for e in caught.value.errors()}


def latch(**changes: Any) -> dict[str, Any]:
    return {"bus": "gpio", "switch": "^!4", "lock": 11, **changes}


@pytest.mark.parametrize(
    "spec", [17, "17", "GPIO17", "gpio17", "^!GPIO17", "!^17", " ^17 ", 0, MAX_PIN]
)
def test_pins_are_read_by_parse_pin(spec: int | str) -> None:
    door = GpioDoorWiring.model_validate(latch(beam=spec))
    assert door.beam == parse_pin(spec)


@pytest.mark.parametrize("spec", ["GPIO99", MAX_PIN + 1, -1, "^^4", "4!", "BOARD11", True, 1.5, ""])
def test_what_parse_pin_refuses_the_config_refuses(spec: Any) -> None:
    with pytest.raises(ValueError):
        parse_pin(spec)
    message = messages(GpioDoorWiring, latch(beam=spec))[("beam",)]
    assert message.startswith(f"must be a GPIO number 0-{MAX_PIN}, optionally")


@pytest.mark.parametrize("field", ["lock", "motor_open", "motor_close"])
def test_outputs_refuse_a_pull_up(field: str) -> None:
    door = latch(open_switch="^!17", motor_open=27, motor_close=22)
    door[field] = "^5"
    assert messages(GpioDoorWiring, door) == {
        (field,): "'^' (pull-up) is for inputs only; an output takes only '!' (active low)"
    }
    door[field] = "!5"
    assert getattr(GpioDoorWiring.model_validate(door), field) == PinSpec(5, False, True)


@pytest.mark.parametrize("number", sorted(FIXED_PULL_UP))
def test_an_input_on_a_fixed_pull_up_says_so(number: int) -> None:
    for spec in (number, f"!{number}"):
        message = messages(GpioInputWiring, {"bus": "gpio", "pin": spec})[("pin",)]
        assert message.startswith(f"GPIO{number} has a fixed pull-up resistor")
    for spec in (f"^{number}", f"^!{number}"):
        GpioInputWiring.model_validate({"bus": "gpio", "pin": spec})
    GpioDoorWiring.model_validate(latch(lock=number))  # an output may use it


def test_indicator_pins_share_one_polarity() -> None:
    assert messages(IndicatorWiring, {"bus": "g", "red": "!10", "green": 11, "blue": 12}) == {
        (): "red, green and blue must share one polarity: '!' on all three (common anode)"
        " or on none (common cathode)"
    }
    anode = IndicatorWiring.model_validate(
        {"bus": "g", "red": "!10", "green": "!11", "blue": "!12"}
    )
    assert all(spec.active_low for spec in anode.pins().values())


def test_indicator_pins_are_outputs() -> None:
    problems = messages(IndicatorWiring, {"bus": "g", "red": "^10", "green": 11, "blue": 12})
    assert list(problems) == [("red",)]


@pytest.mark.parametrize(
    ("door", "expected"),
    [
        (latch(lock=None, motor_open=27), "a motor needs both motor_open and motor_close"),
        (latch(motor_open=27, motor_close=22), "a motorised door needs open_switch"),
        ({"bus": "gpio", "switch": 4}, "a door needs a lock or a motor to open it"),
    ],
)
def test_door_must_be_complete(door: dict[str, Any], expected: str) -> None:
    door = {k: v for k, v in door.items() if v is not None}
    (message,) = messages(GpioDoorWiring, door).values()
    assert message.startswith(expected)


def test_pins_in_field_order_and_dumped_as_specs() -> None:
    door = GpioDoorWiring.model_validate(
        {"bus": "g", "beam": "^!10", "switch": "^!4", "motor_close": 22, "motor_open": "!27",
         "open_switch": "^!17"}
    )  # fmt: skip
    assert list(door.pins()) == ["switch", "open_switch", "motor_open", "motor_close", "beam"]
    assert door.motorised
    assert door.model_dump()["motor_open"] == "!GPIO27"
    again = GpioDoorWiring.model_validate({**door.model_dump(exclude_none=True)})
    assert again == door


def test_bus_bounds() -> None:
    assert GpioBusConfig.model_validate({"name": "g", "driver": "gpio"}).pulse_s == 0.5
    GpioBusConfig.model_validate({"name": "g", "driver": "gpio", "pulse_s": PULSE_MAX_S})
    problems = messages(
        GpioBusConfig,
        {"name": "g", "driver": "gpio", "pulse_s": PULSE_MAX_S + 0.1, "supply": "a b"},
    )
    assert list(problems) == [("pulse_s",), ("supply",)]
