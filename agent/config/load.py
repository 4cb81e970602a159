"""Loading: a TOML file or parsed dict becomes a Config, or a ConfigError with every problem.

Also ``summary``: the few lines ``check-config`` and the start-up log print.

The file format is a contract (``shared/DESIGN.md``, "Config file"); this package turns
it into frozen pydantic models or into a :class:`ConfigError` that lists *every*
problem at once, one line each, as ``key.path[index]: what is wrong``. A technician on
a ladder fixes the file in one go instead of one error per restart, and
``locker-agent check-config`` prints those lines as they are.

The drivers own their sections (``drivers/kerong/config.py``: ``KerongBusConfig``,
``KerongDoorWiring``; ``drivers/gpio/config.py``: ``GpioBusConfig``,
``GpioDoorWiring``, ``GpioInputWiring``, ``IndicatorWiring``), with the bounds and
the pin grammar the drivers themselves use; they are exported here too.

Decisions worth knowing:

- Like Klipper's typed getters, every value is typed (no silent ``"1"`` -> ``1`` or
  ``true`` -> ``1``) and bounded, and an unknown key is an error naming the nearest
  valid key: a typo must stop start-up, not fall back to a default.
- ``[locker]`` and ``[storage]`` may be left out (defaults below). ``[cloud]`` needs
  ``url`` and a key. The local HTTP API always runs, so ``[api]`` may be left out
  only in the sense that ``listen`` defaults to ``127.0.0.1:8080``: a token is always
  required (``api.token`` or ``api.token_file``), because the local API must never be
  open without auth. Without one the config is invalid.
- Secrets: exactly one of ``api_key`` / ``api_key_file`` (and ``token`` /
  ``token_file``). Files are read at load, whitespace stripped; a relative path is
  taken from the config file's directory (the directory of the path given, symlinks
  not followed), as is a relative ``storage.dir``. Secrets end up as ``SecretStr``;
  no problem line or repr ever contains one, and unknown keys never echo their
  value (a misspelt ``api_kye = "..."`` carries the secret).
- Cross checks (undeclared bus or board, two doors on one channel, duplicate cabinet
  keys, bus names or ports, a GPIO pin used twice, a door on the wrong kind of bus,
  buses on one ``supply`` that disagree) run even when other parts of the file are
  invalid, on whatever parts are valid, so they are reported together.
- A config that passes ``parse_config`` also builds: ``locker-agent check-config``
  then builds every driver dry (``agent.hardware.bridge.Hardware.build``, no port opened).
- ``load_config`` raises only :class:`ConfigError`; ``parse_config`` does the same
  checks on an already-parsed dict (the simulator embeds its own config).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.config.checks import _cross_check
from agent.config.entries import validate_buses, validate_cabinets
from agent.config.messages import _format_loc, _kind, _Problem, _problems_of
from agent.config.placeholders import raw_placeholders
from agent.config.schema import Config, GpioBusConfig, GpioDoorWiring, _missing_is_empty
from agent.config.secrets import _resolve_secrets


class ConfigError(Exception):
    """The config cannot be used; ``problems`` has one ``key.path: message`` line each.

    Problems with the file itself (missing, unreadable, TOML syntax) do not repeat
    the file name, which is in ``source``: the CLI prefixes every line with it.
    """

    def __init__(self, problems: Sequence[str], source: str | Path | None = None) -> None:
        self.problems: list[str] = list(problems)
        self.source = str(source) if source is not None else None
        super().__init__("\n".join(self.problems))

    def __repr__(self) -> str:
        return f"ConfigError({self.problems!r})"


_SECTION_ORDER = {name: i for i, name in enumerate(Config.model_fields)}


def _sort_key(problem: _Problem) -> tuple[int, int]:
    loc = problem[0]
    top = _SECTION_ORDER.get(loc[0], len(_SECTION_ORDER)) if loc else -1
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
    return top, index


def parse_config(data: dict[str, Any], base_dir: Path) -> Config:
    """Validate an already-parsed TOML document; relative paths resolve against base_dir.

    Returns the frozen ``Config``; raises ``ConfigError`` listing every problem. Each
    ``[[buses]]`` and ``[[cabinets]]`` entry is validated on its own with its model,
    then the cross checks run on what is valid of every entry.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): must be a table (got {_kind(data)})"])
    data = _missing_is_empty(data, "cloud", "api")
    problems = _resolve_secrets(data, Path(base_dir))
    buses, cabinets = validate_buses(data.get("buses")), validate_cabinets(data.get("cabinets"))
    document = dict(data)
    for key, entries in (("buses", buses), ("cabinets", cabinets)):
        problems += [p for entry in entries for p in entry.problems]
        if entries:
            # Valid entries go in as their models (not validated again), invalid ones as
            # written: their problems are collected already, so the ones the whole-file
            # validation finds inside an entry are left out below.
            document[key] = [e.raw if e.model is None else e.model for e in entries]
    config: Config | None = None
    try:
        config = Config.model_validate(document, context={"base_dir": Path(base_dir)})
    except ValidationError as e:
        problems += [p for p in _problems_of(e) if not _inside_entry(p[0])]
    problems += _cross_check(buses, cabinets, data.get("thermal"))
    if problems or config is None:
        problems.sort(key=_sort_key)
        lines = list(dict.fromkeys(f"{_format_loc(loc)}: {msg}" for loc, msg in problems))
        # What is left from the example, too: all in one round, not after the first fix.
        said = {line.partition(": ")[0] for line in lines}
        lines += [line for line in raw_placeholders(data) if line.partition(": ")[0] not in said]
        raise ConfigError(lines or ["(top level): invalid"])
    return config


def _inside_entry(loc: tuple[str | int, ...]) -> bool:
    return len(loc) > 1 and loc[0] in ("buses", "cabinets") and isinstance(loc[1], int)


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raises ConfigError and nothing else."""
    try:
        return _load(Path(path))
    except ConfigError as e:
        e.source = str(path)
        raise
    except Exception as e:  # a bug here must still end as "exit 78", not a traceback
        raise ConfigError([f"cannot load the file ({type(e).__name__})"], path) from e


def _load(path: Path) -> Config:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(["no such file"]) from None
    except UnicodeDecodeError:
        raise ConfigError(["not UTF-8 text"]) from None
    except OSError as e:
        raise ConfigError([f"cannot read: {e.strerror or type(e).__name__}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        position = _TOML_POSITION.search(message)
        if position:
            message = message[: position.start()]
            message = f"line {position[1]}, column {position[2]}: TOML syntax error: {message}"
        else:
            message = f"TOML syntax error: {message}"
        raise ConfigError([message]) from None
    return parse_config(data, path.absolute().parent)


# --------------------------------------------------------------------------- summary


def summary(config: Config) -> str:
    """A few lines for check-config and the start-up log; never a secret.

    One line per bus, then one ``power:`` line per power budget: buses naming the same
    ``supply`` share one (at most ``max_concurrent`` actuations at once, starts
    ``stagger_s`` apart), a bus without ``supply`` has its own.
    """
    rear = sum(1 for c in config.cabinets if c.rear is not None)
    lines = [
        f"locker: {config.locker.name or '(unnamed)'} (auto-close timer {config.locker.timer_s} s)",
        f"cabinets: {len(config.cabinets)} ({rear} with a rear door)",
    ]
    supplies: dict[str, list[str]] = {}
    for bus in config.buses:
        if bus.supply is not None:
            supplies.setdefault(bus.supply, []).append(bus.name)
        if isinstance(bus, GpioBusConfig):
            motors = sum(
                1
                for c in config.cabinets
                for d in (c.front, c.rear)
                if isinstance(d, GpioDoorWiring) and d.bus == bus.name and d.motorised
            )
            lines.append(f"bus {bus.name}: gpio ({bus.pin_factory} pins), {motors} motorised doors")
            continue
        boards = ", ".join(str(b) for b in bus.boards)
        lines.append(
            f"bus {bus.name}: {bus.driver} on {bus.port}, {bus.baud} baud, boards {boards}"
        )
    for bus in config.buses:
        if bus.supply is None:
            who = f"bus {bus.name}, its own supply"
        elif supplies[bus.supply][0] == bus.name:
            who = f"supply {bus.supply} (buses {', '.join(supplies[bus.supply])})"
        else:
            continue
        lines.append(
            f"power: {who}: at most {bus.max_concurrent} actuation"
            f"{'s' if bus.max_concurrent > 1 else ''} at once, starts {bus.stagger_s:g} s apart"
        )
    for reader in config.readers:  # pickup-code readers (drivers/readers)
        where = getattr(reader, "port", None) or getattr(reader, "device", "")
        lines.append(f"reader {reader.name}: {reader.driver} on {where}")
    key_from = config.cloud.api_key_file or "inline"
    token_from = config.api.token_file or "inline"
    lines += [
        f"cloud: {config.cloud.url}, heartbeat every {config.cloud.heartbeat_s:g} s"
        f" (api key: {key_from})",
        f"api: listening on {config.api.listen} (token: {token_from}),"
        f" technicians' socket {config.api_socket}",
        f"storage: {config.storage.dir}",
    ]
    if config.cloud.commands_url:
        lines.insert(-2, f"cloud commands: {config.cloud.commands_url}")
    units = [c.thermal for c in config.cabinets if c.thermal is not None]
    if units:
        thermal = config.thermal
        heat = sum(1 for u in units if "heat" in u.modes())
        cold = sum(1 for u in units if "chill" in u.modes())
        shared = f", compressors {', '.join(c.name for c in thermal.compressors)}"
        lines.append(
            f"thermal: {len(units)} cabinets ({heat} can heat, {cold} can cool), food code"
            f" {thermal.food_code}, sensors in {thermal.w1_dir}"
            + (shared if thermal.compressors else "")
        )
        alarm = thermal.alarm_lines()
        bands = ", ".join(f"{mode} {band}" for mode, band in thermal.held_bands().items())
        lines.append(
            f"thermal: holds {bands}; alarms below {alarm.hot_min_c:g} C hot, above"
            f" {alarm.chill_max_c:g} C chilled, above {alarm.frozen_max_c:g} C frozen;"
            f" food out of temperature {thermal.time_limit_s() / 3600:g} h at most"
            + (", then the cabinet is disabled" if thermal.disable_when_unsafe else "")
        )
        lines.append(thermal.safety_summary())
    return "\n".join(lines)
