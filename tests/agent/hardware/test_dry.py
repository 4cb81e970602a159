"""parse_config and a dry Hardware.build() give the same verdict.

Generated configs, valid and subtly invalid (pins with "^" and "!", a pin used twice,
mixed-polarity indicators, boards and channels at and past their bounds, supplies
that disagree, GPIO2/3 floating), are held to: if parse_config accepts, every driver
builds. The other way round, what the drivers refuse is what the config refuses: part
by part for pins (the same spec on a fresh bus), and for the cross checks the drivers
also make (a pin claimed twice, one supply with two budgets).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from agent.config import Config, ConfigError, IndicatorWiring, parse_config
from agent.hardware import dry as drybuild
from drivers.gpio import GpioBus
from drivers.gpio.config import InputPin, OutputPin
from drivers.gpio.mock import mock_factory
from drivers.gpio.pins import FIXED_PULL_UP, MAX_PIN
from drivers.kerong.codec import CHANNELS, MAX_BOARD

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

BUDGET = st.tuples(st.sampled_from([1, 2]), st.sampled_from([0.0, 0.1]))


def spelled(draw: st.DrawFn, number: int, prefix: str) -> int | str:
    """A pin written one of the ways the grammar takes."""
    if not prefix and draw(st.booleans()):
        return number
    return prefix + draw(st.sampled_from(["", "GPIO", "gpio"])) + str(number)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A config that should pass: distinct pins, boards and channels in range, the
    right prefixes for each role, one polarity per indicator, agreeing supplies."""
    pool = iter(draw(st.permutations(range(MAX_PIN + 1))))

    def input_pin() -> int | str:
        number = next(pool)
        prefixes = ["^", "^!", "!^"] if number in FIXED_PULL_UP else ["", "!", "^", "^!"]
        return spelled(draw, number, draw(st.sampled_from(prefixes)))

    def output_pin(prefix: str | None = None) -> int | str:
        return spelled(
            draw, next(pool), draw(st.sampled_from(["", "!"])) if prefix is None else prefix
        )

    boards = draw(st.lists(st.integers(0, MAX_BOARD), min_size=1, max_size=3, unique=True))
    free = [(b, c) for b in boards for c in range(1, CHANNELS + 1)]
    free_channels = iter(draw(st.permutations(free)))
    budget = draw(BUDGET)
    buses: list[dict[str, Any]] = [
        {"name": "rs485", "port": "/dev/ttyUSB0", "boards": boards},
        {"name": "gpio", "driver": "gpio", "pin_factory": "mock"},
    ]
    if draw(st.booleans()):
        buses.append({"name": "gpio2", "driver": "gpio", "pin_factory": "mock"})
    for bus in buses:
        if draw(st.booleans()):
            bus.update(supply="psu", max_concurrent=budget[0], stagger_s=budget[1])
    gpio_buses = [b["name"] for b in buses if b.get("driver") == "gpio"]

    cabinets = []
    for key in draw(st.lists(st.integers(0, 99), min_size=1, max_size=4, unique=True)):
        cabinet: dict[str, Any] = {"key": key}
        for side in ("front", "rear"):
            if side == "rear" and draw(st.booleans()):
                continue
            if draw(st.booleans()):
                board, channel = next(free_channels)
                cabinet[side] = {"bus": "rs485", "board": board, "channel": channel}
                continue
            door: dict[str, Any] = {"bus": draw(st.sampled_from(gpio_buses))}
            door["switch"] = input_pin()
            motor, lock = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
            if motor:
                door.update(motor_open=output_pin(), motor_close=output_pin())
                door["open_switch"] = input_pin()
            if lock:
                door["lock"] = output_pin()
            if draw(st.booleans()):
                door["beam"] = input_pin()
            cabinet[side] = door
        if draw(st.booleans()):
            cabinet["item"] = {"bus": draw(st.sampled_from(gpio_buses)), "pin": input_pin()}
        if draw(st.booleans()):
            prefix = draw(st.sampled_from(["", "!"]))
            cabinet["indicator"] = {"bus": draw(st.sampled_from(gpio_buses))} | {
                colour: output_pin(prefix) for colour in ("red", "green", "blue")
            }
        cabinets.append(cabinet)
    return {
        "cloud": {"url": "https://lockers.example.com", "api_key": "k"},
        "api": {"token": "t"},
        "buses": buses,
        "cabinets": cabinets,
    }


def _gpio_parts(document: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
    """(table, field, role) of every pin in the document."""
    roles = {"switch": "in", "open_switch": "in", "beam": "in", "pin": "in"}
    out = []
    for cabinet in document["cabinets"]:
        for part in ("front", "rear", "item", "indicator"):
            table = cabinet.get(part)
            if table and "board" not in table:
                out += [(table, f, roles.get(f, "out")) for f in table if f != "bus"]
    return out


FLAWS = [
    "pull-up on an output",
    "mixed polarity",
    "floating GPIO2/3",
    "pin past the grammar",
    "doubled prefix",
    "pin used twice",
    "pin used on two buses",
    "board out of range",
    "channel out of range",
    "board not on the bus",
    "supplies disagree",
    "half a motor",
]


def flaw(draw: st.DrawFn, document: dict[str, Any], kind: str) -> None:
    """Make ``document`` subtly wrong in one way (when it has the part for it)."""
    pins = _gpio_parts(document)
    outputs = [p for p in pins if p[2] == "out"]
    inputs = [p for p in pins if p[2] == "in"]
    kerong = [
        c[s] for c in document["cabinets"] for s in ("front", "rear") if "board" in c.get(s, {})
    ]
    indicators = [c["indicator"] for c in document["cabinets"] if "indicator" in c]
    motors = [t for t, f, _ in pins if f == "motor_open"]
    if kind == "pull-up on an output" and outputs:
        table, field, _ = draw(st.sampled_from(outputs))
        table[field] = "^" + str(table[field])
    elif kind == "mixed polarity" and indicators:
        table = draw(st.sampled_from(indicators))
        colour = draw(st.sampled_from(["red", "green", "blue"]))
        text = str(table[colour])
        table[colour] = text[1:] if text.startswith("!") else "!" + text
    elif kind == "floating GPIO2/3" and inputs:
        table, field, _ = draw(st.sampled_from(inputs))
        table[field] = draw(st.sampled_from([2, 3, "!2", "GPIO3"]))
    elif kind == "pin past the grammar" and pins:
        table, field, _ = draw(st.sampled_from(pins))
        table[field] = draw(st.sampled_from([MAX_PIN + 1, "99", -1]))
    elif kind == "doubled prefix" and pins:
        table, field, _ = draw(st.sampled_from(pins))
        table[field] = draw(st.sampled_from(["^^", "!!"])) + str(table[field]).lstrip("^!")
    elif kind == "pin used twice" and len(pins) >= 2:
        (a, fa, _), (b, fb, role) = draw(st.permutations(pins))[:2]
        number = str(a[fa]).lstrip("^!").lower().removeprefix("gpio")
        b[fb] = ("^!" if role == "in" else "") + number
    elif kind == "pin used on two buses" and len({id(t) for t, _, _ in pins}) >= 2:
        (a, fa, _), *rest = draw(st.permutations(pins))
        b, fb, role = next(p for p in rest if p[0] is not a)
        if all(bus["name"] != "gpio2" for bus in document["buses"]):
            document["buses"].append({"name": "gpio2", "driver": "gpio", "pin_factory": "mock"})
        a["bus"], b["bus"] = "gpio", "gpio2"
        number = str(a[fa]).lstrip("^!").lower().removeprefix("gpio")
        b[fb] = ("^!" if role == "in" else "") + number
    elif kind == "board out of range" and kerong:
        draw(st.sampled_from(kerong))["board"] = draw(st.sampled_from([-1, MAX_BOARD + 1]))
    elif kind == "channel out of range" and kerong:
        draw(st.sampled_from(kerong))["channel"] = draw(st.sampled_from([0, CHANNELS + 1]))
    elif kind == "board not on the bus" and kerong:
        boards = document["buses"][0]["boards"]
        missing = [b for b in range(MAX_BOARD + 1) if b not in boards]
        draw(st.sampled_from(kerong))["board"] = draw(st.sampled_from(missing))
    elif kind == "supplies disagree":
        first, second = document["buses"][:2]
        first.update(supply="psu", max_concurrent=1, stagger_s=0.1)
        second.update(supply="psu", max_concurrent=2, stagger_s=0.1)
    elif kind == "half a motor" and motors:
        draw(st.sampled_from(motors)).pop("motor_close", None)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config, or one with one or two subtle flaws."""
    document = draw(valid_documents())
    # The flaws the drivers check too come up twice as often.
    twice = ["pin used twice", "pin used on two buses", "supplies disagree", "floating GPIO2/3"]
    kinds = st.sampled_from([*FLAWS, *twice])
    for kind in draw(st.lists(kinds, max_size=2)):
        flaw(draw, document, kind)
        event(f"flaw: {kind}")
    return document


def build_dry(config: Config) -> list[str]:
    """What check-config runs: every driver built on mock pins (``agent.hardware.dry``)."""
    return asyncio.run(drybuild.build_dry(config))


# Cross-check problems whose rule the drivers apply too at build.
DRIVER_CROSS_RULES = ("is also used by", "is shared with")


@SETTINGS
@given(documents())
def test_parse_config_and_a_dry_build_agree(document: dict[str, Any]) -> None:
    try:
        config = parse_config(document, Path("/nonexistent"))
    except ConfigError as refused:
        problems = refused.problems
    else:
        event("accepted: built dry")
        assert build_dry(config) == [], "parse_config accepted what a driver refuses"
        return
    # Refused. When only rules the drivers apply too refused it, the drivers refuse it.
    if all(any(rule in p for rule in DRIVER_CROSS_RULES) for p in problems):
        event("refused by the drivers' cross rules only: build refuses too")
        models_only = Config.model_validate(document)  # every entry valid on its own
        assert build_dry(models_only), f"a driver builds what parse_config refused: {problems}"


# --------------------------------------------------------------- part by part

# Any pin spec, right or wrong: 2/3 have fixed pull-ups, 27/28/53 sit at the edges of
# the header and of the grammar, 54 is past it; "^^" is no spec.
ANY_PIN_NUMBERS = st.integers(4, 9) | st.sampled_from([2, 3, 27, 28, MAX_PIN, MAX_PIN + 1])
ANY_PREFIX = st.sampled_from(["", "!", "^", "^!", "!^", "^^"])


@st.composite
def pins(draw: st.DrawFn) -> int | str:
    return spelled(draw, draw(ANY_PIN_NUMBERS), draw(ANY_PREFIX))


INPUT, OUTPUT = TypeAdapter(InputPin), TypeAdapter(OutputPin)


def driver_accepts(make: Any) -> bool:
    async def attempt() -> bool:
        factory = mock_factory()
        bus = GpioBus("g", pin_factory=factory)
        try:
            make(bus)
        except ValueError:
            return False
        finally:
            await bus.close()
            factory.close()
        return True

    return asyncio.run(attempt())


def config_accepts(adapter: Any, value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@SETTINGS
@given(pins(), st.sampled_from(["input", "relay"]))
def test_a_pin_the_config_takes_is_a_pin_the_driver_takes(pin: int | str, role: str) -> None:
    adapter = INPUT if role == "input" else OUTPUT
    accepted = config_accepts(adapter, pin)
    assert driver_accepts(lambda bus: getattr(bus, role)(pin)) == accepted, (pin, role)


@SETTINGS
@given(pins(), pins(), pins())
def test_an_indicator_the_config_takes_is_one_the_driver_takes(
    red: Any, green: Any, blue: Any
) -> None:
    numbers = {str(p).lstrip("^!").lower().removeprefix("gpio") for p in (red, green, blue)}
    if len(numbers) < 3:
        return  # one pin twice: the cross checks' affair
    accepted = config_accepts(
        TypeAdapter(IndicatorWiring), {"bus": "g", "red": red, "green": green, "blue": blue}
    )
    assert driver_accepts(lambda bus: bus.rgb(red, green, blue)) == accepted, (red, green, blue)
