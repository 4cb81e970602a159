"""Cross checks between entries, which no single model can see.

``_cross_check_raw`` works on the raw document, on whatever parts of each entry are
valid on their own, so its problems (undeclared bus or board, two doors on one
channel, duplicate cabinet keys, bus names or ports) are reported together with the
others. ``_check_gpio`` needs a valid config: doors on the right kind of bus, and no
GPIO pin used twice on one header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.config.messages import _format_loc, _Loc, _Problem
from agent.config.schema import Config, GpioDoorWiring, pin_number


def _check_gpio(config: Config) -> list[_Problem]:
    """Doors on the right kind of bus, and no GPIO pin used twice on one header."""
    problems: list[_Problem] = []
    drivers = {b.name: b.driver for b in config.buses}
    used: dict[tuple[str, int], str] = {}

    def claim(loc: _Loc, bus: str, spec: str) -> None:
        where = (bus, pin_number(spec))
        if where in used:
            problems.append((loc, f"GPIO{where[1]} on bus '{bus}' is also used by {used[where]}"))
        else:
            used[where] = _format_loc(loc)

    for i, cab in enumerate(config.cabinets):
        for side in ("front", "rear"):
            door = getattr(cab, side)
            if door is None or door.bus not in drivers:
                continue
            want = "gpio" if isinstance(door, GpioDoorWiring) else "kerong-cu16"
            if drivers[door.bus] != want:
                problems.append(
                    (
                        ("cabinets", i, side, "bus"),
                        f"bus '{door.bus}' is {drivers[door.bus]}, this door is wired for {want}",
                    )
                )
            elif isinstance(door, GpioDoorWiring):
                for name, spec in door.pins().items():
                    claim(("cabinets", i, side, name), door.bus, spec)
        extras: list[tuple[str, str, dict[str, str]]] = []
        if cab.item is not None:
            extras.append(("item", cab.item.bus, {"pin": str(cab.item.pin)}))
        if cab.indicator is not None:
            ind = cab.indicator
            extras.append(
                (
                    "indicator",
                    ind.bus,
                    {"red": str(ind.red), "green": str(ind.green), "blue": str(ind.blue)},
                )
            )
        for part, bus, pins in extras:
            if drivers.get(bus) != "gpio":
                problems.append((("cabinets", i, part, "bus"), f"no GPIO bus named '{bus}'"))
                continue
            for name, spec in pins.items():
                claim(("cabinets", i, part, name), bus, spec)
    return problems


# (index, name, port, boards); None where that part of the entry is invalid.
_BusEntry = tuple[int, str | None, str | None, frozenset[int] | None]


# (bus, board, channel) of one door; None where that part is invalid.
_Door = tuple[str | None, int | None, int | None]


# (index, key, {"front"/"rear": door}); a side is absent when the cabinet has no such door.
_CabinetEntry = tuple[int, int | None, Mapping[str, _Door]]


def _cross_check(buses: Sequence[_BusEntry], cabinets: Sequence[_CabinetEntry]) -> list[_Problem]:
    """Problems between entries, on whatever parts of them are valid."""
    problems: list[_Problem] = []
    declared: dict[str, int] = {}  # bus name -> index of its first declaration
    boards: dict[str, frozenset[int] | None] = {}
    ports: dict[str, int] = {}
    for i, name, port, bus_boards in buses:
        if name is not None and name in declared:
            message = f"bus '{name}' is already declared by buses[{declared[name]}]"
            problems.append((("buses", i, "name"), message))
        elif name is not None:
            declared[name] = i
            boards[name] = bus_boards
        if port is not None and port in ports:
            message = f"port '{port}' is already used by buses[{ports[port]}]"
            problems.append((("buses", i, "port"), message))
        elif port is not None:
            ports[port] = i

    names = ", ".join(declared) if declared else "none"
    keys: dict[int, int] = {}
    wired: dict[tuple[str, int, int], str] = {}  # (bus, board, channel) -> "cabinets[i].side"
    for i, key, doors in cabinets:
        if key is not None and key in keys:
            message = f"key {key} is already used by cabinets[{keys[key]}]"
            problems.append((("cabinets", i, "key"), message))
        elif key is not None:
            keys[key] = i
        for side, (bus, board, channel) in doors.items():
            if bus is None:
                continue
            if bus not in declared:
                message = f"no bus named '{bus}' (declared: {names})"
                problems.append((("cabinets", i, side, "bus"), message))
            elif board is not None and (known := boards[bus]) is not None and board not in known:
                listed = ", ".join(str(b) for b in sorted(known))
                message = f"bus '{bus}' has no board {board} (its boards: {listed})"
                problems.append((("cabinets", i, side, "board"), message))
            if board is None or channel is None:
                continue
            where = (bus, board, channel)
            if where in wired:
                message = (
                    f"bus '{bus}' board {board} channel {channel} is also wired to {wired[where]}"
                )
                problems.append((("cabinets", i, side, "channel"), message))
            else:
                wired[where] = f"cabinets[{i}].{side}" + ("" if key is None else f" (key {key})")
    return problems


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _cross_check_raw(data: Mapping[str, Any]) -> list[_Problem]:
    """The cross checks on whatever parts of the raw input are valid on their own."""
    buses: list[_BusEntry] = []
    raw_buses = data.get("buses")
    for i, raw in enumerate(raw_buses if isinstance(raw_buses, list) else []):
        if not isinstance(raw, dict):
            continue
        name, port, raw_boards = raw.get("name"), raw.get("port"), raw.get("boards")
        valid_boards = (
            isinstance(raw_boards, list)
            and bool(raw_boards)  # empty: already a problem, not one per door
            and all(_int_in(b, 0, 15) for b in raw_boards)
        )
        buses.append(
            (
                i,
                name if isinstance(name, str) and name else None,
                port if isinstance(port, str) and port else None,
                frozenset(raw_boards) if valid_boards else None,
            )
        )
    cabinets: list[_CabinetEntry] = []
    raw_cabinets = data.get("cabinets")
    for i, raw in enumerate(raw_cabinets if isinstance(raw_cabinets, list) else []):
        if not isinstance(raw, dict):
            continue
        key = raw.get("key")
        doors: dict[str, _Door] = {}
        for side in ("front", "rear"):
            door = raw.get(side)
            if isinstance(door, dict):
                bus, board, channel = door.get("bus"), door.get("board"), door.get("channel")
                doors[side] = (
                    bus if isinstance(bus, str) and bus else None,
                    board if _int_in(board, 0, 15) else None,
                    channel if _int_in(channel, 1, 16) else None,
                )
        cabinets.append((i, key if _int_in(key, 0, 2**31 - 1) else None, doors))
    return _cross_check(buses, cabinets)
