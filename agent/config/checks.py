"""Cross checks between entries, which no single model can see.

They run on what is valid of every entry (``entries.Part``), so their problems are
reported together with the entries' own, and they never judge a value the models
refused: an undeclared bus, a board not on its bus, two doors on one channel,
duplicate cabinet keys, bus names or ports, a GPIO pin used twice, a door or a GPIO
part wired to the wrong kind of bus, and buses on one supply that disagree on its
power budget.

GPIO pins are unique across every GPIO bus: the buses are the controller's one
header, split by power supply, and a pin can be claimed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from agent.config.entries import Entry, Part
from agent.config.messages import _format_loc, _Problem
from agent.thermal.config import CompressorConfig, CutoffConfig
from drivers.gpio.pins import PinSpec

# The part of a cabinet on a GPIO bus other than a door, and what to call it.
_GPIO_PARTS = {"item": "an item sensor", "indicator": "an indicator", "thermal": "a thermal unit"}


def _cross_check(
    buses: Sequence[Entry], cabinets: Sequence[Entry], thermal: Any = None
) -> list[_Problem]:
    """Problems between entries, on whatever parts of them are valid; ``thermal`` is
    the ``[thermal]`` table as written (its compressors are checked too)."""
    problems: list[_Problem] = []
    declared = _check_buses(buses, problems)
    names = ", ".join(declared) if declared else "none"
    # Names written on buses but refused (e.g. "rs 485"): a door naming one is not
    # on an undeclared bus; the bus's own problem says what to change.
    refused = {
        e.raw["name"]
        for e in buses
        if e.part is not None and e.part.get("name") is None and isinstance(e.raw.get("name"), str)
    }
    keys: dict[int, int] = {}
    wired: dict[tuple[str, int, int], str] = {}  # (bus, board, channel) -> "cabinets[i].side"
    pins: dict[int, tuple[str, str]] = {}  # BCM number -> ("cabinets[i].side.field", bus)

    for entry in cabinets:
        cabinet, i = entry.part, entry.index
        if cabinet is None:
            continue
        key = cabinet.get("key")
        if key is not None and key in keys:
            message = f"key {key} is already used by cabinets[{keys[key]}]"
            problems.append((("cabinets", i, "key"), message))
        elif key is not None:
            keys[key] = i
        where_key = "" if key is None else f" (key {key})"

        for side in ("front", "rear"):
            door = cabinet.get(side)
            if not isinstance(door, Part) or (bus_name := door.get("bus")) is None:
                continue
            loc = ("cabinets", i, side)
            if bus_name in refused:
                continue
            if bus_name not in declared:
                problems.append(((*loc, "bus"), f"no bus named '{bus_name}' (declared: {names})"))
                continue
            bus = declared[bus_name]
            if bus.kind is None:
                continue  # its driver key is wrong: already a problem of its own
            if bus.kind != door.kind:
                message = f"bus '{bus_name}' is {bus.kind}, this door is wired for {door.kind}"
                problems.append(((*loc, "bus"), message))
            elif door.kind == "gpio":
                _claim_pins(loc, bus_name, door, pins, problems)
            else:
                _check_lock(loc, bus_name, bus, door, wired, f"{side}{where_key}", problems)

        for name, what in _GPIO_PARTS.items():
            part = cabinet.get(name)
            if not isinstance(part, Part) or (bus_name := part.get("bus")) is None:
                continue
            loc = ("cabinets", i, name)
            if bus_name in refused:
                continue
            if bus_name not in declared:
                problems.append(((*loc, "bus"), f"no bus named '{bus_name}' (declared: {names})"))
            elif (kind := declared[bus_name].kind) != "gpio" and kind is not None:
                message = f"bus '{bus_name}' is {kind}; {what} needs a gpio bus"
                problems.append(((*loc, "bus"), message))
            elif kind == "gpio":
                _claim_pins(loc, bus_name, part, pins, problems)
    _check_compressors(thermal, declared, cabinets, pins, problems)
    return problems


def _check_compressors(
    thermal: Any,
    declared: dict[str, Part],
    cabinets: Sequence[Entry],
    pins: dict[int, tuple[str, str]],
    problems: list[_Problem],
) -> None:
    """Each sensor on one cabinet only; each valid compressor on a declared GPIO bus, its
    pin claimed once, its name declared once; each cabinet's ``compressor`` declared."""
    sensors: dict[str, int] = {}
    for entry in cabinets:
        unit = entry.part.get("thermal") if entry.part is not None else None
        sensor = unit.get("sensor") if isinstance(unit, Part) else None
        if sensor is not None and sensor in sensors:
            message = f"sensor {sensor} is also cabinets[{sensors[sensor]}]'s: one sensor a cabinet"
            problems.append((("cabinets", entry.index, "thermal", "sensor"), message))
        elif sensor is not None:
            sensors[sensor] = entry.index
    raw = thermal.get("compressors") if isinstance(thermal, dict) else None
    names: set[str] = set()
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            comp = CompressorConfig.model_validate(item)
        except ValidationError:
            continue  # its own problems are reported by the model
        loc = ("thermal", "compressors", i)
        if comp.name in names:
            problems.append(((*loc, "name"), f"compressor '{comp.name}' is declared twice"))
        names.add(comp.name)
        bus = declared.get(comp.bus)
        if bus is None:
            problems.append(((*loc, "bus"), f"no bus named '{comp.bus}'"))
        elif bus.kind not in ("gpio", None):
            problems.append(((*loc, "bus"), f"bus '{comp.bus}' is {bus.kind}; needs a gpio bus"))
        else:
            part = Part("compressor", {"pin": comp.pin})
            _claim_pins(loc, comp.bus, part, pins, problems)
    _check_cutoff(thermal, declared, pins, problems)
    for entry in cabinets:
        unit = entry.part.get("thermal") if entry.part is not None else None
        name = unit.get("compressor") if isinstance(unit, Part) else None
        if name is not None and name not in names:
            known = ", ".join(sorted(names)) or "none"
            message = f"no compressor named '{name}' in [[thermal.compressors]] (declared: {known})"
            problems.append((("cabinets", entry.index, "thermal", "compressor"), message))


def _check_cutoff(
    thermal: Any,
    declared: dict[str, Part],
    pins: dict[int, tuple[str, str]],
    problems: list[_Problem],
) -> None:
    """The heaters' cutoff contactor, when fitted: on a declared GPIO bus, its pin once."""
    raw = thermal.get("cutoff") if isinstance(thermal, dict) else None
    try:
        cutoff = CutoffConfig.model_validate(raw) if raw is not None else None
    except ValidationError:
        return  # its own problems are reported by the model
    if cutoff is None:
        return
    bus = declared.get(cutoff.bus)
    if bus is None:
        problems.append((("thermal", "cutoff", "bus"), f"no bus named '{cutoff.bus}'"))
    elif bus.kind not in ("gpio", None):
        message = f"bus '{cutoff.bus}' is {bus.kind}; needs a gpio bus"
        problems.append((("thermal", "cutoff", "bus"), message))
    else:
        _claim_pins(
            ("thermal", "cutoff"), cutoff.bus, Part("cutoff", {"pin": cutoff.pin}), pins, problems
        )


def _check_buses(buses: Sequence[Entry], problems: list[_Problem]) -> dict[str, Part]:
    """Duplicate names and ports, supplies that disagree; the declared buses by name."""
    declared: dict[str, Part] = {}
    first: dict[str, int] = {}  # bus name -> index of its first declaration
    ports: dict[str, int] = {}
    supplies: dict[str, tuple[int, Part]] = {}
    for entry in buses:
        bus, i = entry.part, entry.index
        if bus is None:
            continue
        name, port, supply = bus.get("name"), bus.get("port"), bus.get("supply")
        if name is not None and name in first:
            message = f"bus '{name}' is already declared by buses[{first[name]}]"
            problems.append((("buses", i, "name"), message))
        elif name is not None:
            first[name] = i
            declared[name] = bus
        if port is not None and port in ports:
            message = f"port '{port}' is already used by buses[{ports[port]}]"
            problems.append((("buses", i, "port"), message))
        elif port is not None:
            ports[port] = i
        if supply is None:
            continue
        if supply not in supplies:
            supplies[supply] = (i, bus)
            continue
        j, other = supplies[supply]
        for key in ("max_concurrent", "stagger_s"):
            mine, theirs = bus.get(key), other.get(key)
            if mine is not None and theirs is not None and mine != theirs:
                message = (
                    f"supply '{supply}' is shared with buses[{j}], whose {key} is {theirs:g}:"
                    " buses on one supply share its power budget, so give them the same"
                    " max_concurrent and stagger_s"
                )
                problems.append((("buses", i, key), message))
    return declared


def _check_lock(
    loc: tuple[str, int, str],
    bus_name: str,
    bus: Part,
    door: Part,
    wired: dict[tuple[str, int, int], str],
    label: str,
    problems: list[_Problem],
) -> None:
    """A Kerong door: its board is on the bus, and its channel is wired once."""
    board, channel = door.get("board"), door.get("channel")
    known = bus.get("boards")
    if board is not None and known is not None and board not in known:
        listed = ", ".join(str(b) for b in sorted(known))
        message = f"bus '{bus_name}' has no board {board} (its boards: {listed})"
        problems.append(((*loc, "board"), message))
    if board is None or channel is None:
        return
    where = (bus_name, board, channel)
    if where in wired:
        message = f"bus '{bus_name}' board {board} channel {channel} is also wired to "
        message += wired[where]
        problems.append(((*loc, "channel"), message))
    else:
        wired[where] = f"cabinets[{loc[1]}].{label}"


def _claim_pins(
    loc: tuple[str | int, ...],
    bus_name: str,
    part: Part,
    pins: dict[int, tuple[str, str]],
    problems: list[_Problem],
) -> None:
    """Claim each valid pin of ``part``; a pin claimed before is a problem naming both."""
    for name, spec in part.fields.items():
        if not isinstance(spec, PinSpec):
            continue
        number = spec.number
        if number in pins:
            user, other_bus = pins[number]
            if other_bus == bus_name:
                message = f"GPIO{number} on bus '{bus_name}' is also used by {user}"
            else:
                message = (
                    f"GPIO{number} is also used by {user} on bus '{other_bus}'"
                    " (every GPIO bus is on the controller's one header)"
                )
            problems.append(((*loc, name), message))
        else:
            pins[number] = (_format_loc((*loc, name)), bus_name)
