"""Configuration: the TOML file a field technician writes, validated strictly.

The file format is a contract (``shared/DESIGN.md``, "Config file"); this module turns
it into frozen pydantic models or into a :class:`ConfigError` that lists *every*
problem at once, one line each, as ``key.path[index]: what is wrong``. A technician on
a ladder fixes the file in one go instead of one error per restart, and
``locker-agent check-config`` prints those lines as they are.

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
  keys, bus names, ports or boards) run even when other parts of the file are
  invalid, on whatever parts are valid, so they are reported together.
- ``load_config`` raises only :class:`ConfigError`; ``parse_config`` does the same
  checks on an already-parsed dict (the simulator embeds its own config).
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

__all__ = [
    "BAUD_RATES",
    "ApiConfig",
    "BusConfig",
    "CabinetConfig",
    "CloudConfig",
    "Config",
    "ConfigError",
    "DoorWiring",
    "GpioBusConfig",
    "GpioDoorWiring",
    "GpioInputWiring",
    "IndicatorWiring",
    "LockerConfig",
    "Side",
    "StorageConfig",
    "load_config",
    "parse_config",
    "pin_number",
    "summary",
]

# Discriminated unions (bus drivers, door kinds) tag error locations with these.
_TAGS = frozenset({"kerong-cu16", "gpio"})

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]
Side = Literal["front", "rear"]

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_STORAGE_DIR = Path("/var/lib/locker-agent")
# A secret file bigger than this is the wrong file (or /dev/zero), not a key.
MAX_SECRET_FILE_BYTES = 64 * 1024

_Loc = tuple[str | int, ...]
_Problem = tuple[_Loc, str]

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


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


class _Model(BaseModel):
    # strict: TOML is typed, so "1" for an int or true for a channel is a mistake.
    # hide_input_in_errors: a ValidationError logged by someone else must not carry
    # a secret.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)


def _non_empty_secret(value: Any) -> Any:
    if isinstance(value, str):
        value = SecretStr(value)
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        raise ValueError("must not be empty")
    return value


class LockerConfig(_Model):
    """What the locker is called and how it behaves as a whole."""

    name: str | None = Field(None, min_length=1, max_length=100)
    # The cloud's locker.timer: auto-close time of motorised doors, seconds.
    timer_s: int = Field(15, ge=1, le=600)
    # A door open longer than this raises the door_left_open alarm, seconds.
    left_open_s: int = Field(120, ge=1, le=86400)
    # How long an unlock waits for the door switch to confirm, seconds.
    confirm_s: float = Field(2.0, ge=0.2, le=30)
    # Pause before the one retry of an unlock whose switch never moved, seconds.
    jam_retry_s: float = Field(1.0, ge=0.1, le=30)
    # A motorised door shows blue ("about to open") this long before it moves, seconds.
    announce_s: float = Field(0.5, ge=0, le=5)


class CloudConfig(_Model):
    """Where feedback goes ({url}/api/lockers/cabinet/status) and with which key."""

    url: str
    api_key: SecretStr
    # Where api_key was read from, absolute; None when it was written inline.
    api_key_file: Path | None = None
    heartbeat_s: float = Field(60.0, ge=5, le=3600)
    timeout_s: float = Field(10.0, ge=0.5, le=120)
    # Optional websocket the cloud sends commands on (ws:// or wss://).
    commands_url: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("commands_url")
    @classmethod
    def _check_commands_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, schemes=("ws", "wss"))

    @field_validator("api_key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        return _non_empty_secret(value)


class ApiConfig(_Model):
    """The local HTTP API; it always requires the bearer token."""

    listen: str = DEFAULT_LISTEN
    token: SecretStr
    token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        _split_listen(value)
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _check_token(cls, value: Any) -> Any:
        return _non_empty_secret(value)

    @property
    def host(self) -> str:
        """Host part of ``listen``, without IPv6 brackets (what aiohttp wants)."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


class StorageConfig(_Model):
    """Where the outbox and state live; must survive reboots and power cuts."""

    dir: Annotated[Path, Field(strict=False)] = DEFAULT_STORAGE_DIR
    # Bounds of the outbox; when full, heartbeats go first, then the oldest changes.
    outbox_max_rows: int = Field(100_000, ge=100, le=10_000_000)
    outbox_max_mb: int = Field(64, ge=1, le=4096)

    @field_validator("dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("dir")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if base is not None and not value.is_absolute():
            return Path(base) / value
        return value


class BusConfig(_Model):
    """One RS-485 line (or TCP gateway) with its lock boards."""

    name: str = Field(min_length=1, max_length=64)
    driver: Literal["kerong-cu16"] = "kerong-cu16"
    # Any pyserial URL: /dev/serial/by-id/..., /dev/ttyUSB0, socket://host:port, ...
    port: str = Field(min_length=1, max_length=512)
    baud: Baud = 19200
    boards: list[Annotated[int, Field(ge=0, le=15)]] = Field(min_length=1, max_length=16)
    reply_timeout_s: float = Field(0.1, ge=0.01, le=5)
    poll_interval_s: float = Field(0.05, ge=0.005, le=5)
    # Value of a lock-feedback bit that means "closed": 1 on most boards.
    locked_bit: Literal[0, 1] = 1
    # How long a board energises a lock (its own pulse time); an unlock holds one of
    # max_concurrent power slots that long, and two unlocks start stagger_s apart.
    pulse_s: float = Field(0.5, ge=0.05, le=5)
    max_concurrent: int = Field(1, ge=1, le=16)
    stagger_s: float = Field(0.1, ge=0, le=10)

    _check_name = field_validator("name")(lambda v: _check_name(v))

    @field_validator("boards")
    @classmethod
    def _unique_boards(cls, value: list[int]) -> list[int]:
        seen: set[int] = set()
        for board in value:
            if board in seen:
                raise ValueError(f"board {board} is listed twice")
            seen.add(board)
        return value


class GpioBusConfig(_Model):
    """The controller's own GPIO header: switches, relays, motors and LEDs."""

    name: str = Field(min_length=1, max_length=64)
    driver: Literal["gpio"]
    # gpiozero pin factory: "default" lets gpiozero choose (use "lgpio" on a Pi 5);
    # "mock" is for the simulator only.
    pin_factory: Literal["default", "lgpio", "rpigpio", "native", "mock"] = "default"
    # Actuations at once on this header's power supply, and the least time between two.
    max_concurrent: int = Field(2, ge=1, le=16)
    stagger_s: float = Field(0.3, ge=0, le=10)
    pulse_s: float = Field(0.5, ge=0.05, le=2.0)  # lock relay pulse
    motor_max_s: float = Field(8.0, ge=0.5, le=60)  # no motor run lasts longer
    debounce_s: float = Field(0.05, ge=0, le=1)

    _check_name = field_validator("name")(lambda v: _check_name(v))


def _bus_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "gpio" if value.get("driver") == "gpio" else "kerong-cu16"
    return "gpio" if isinstance(value, GpioBusConfig) else "kerong-cu16"


AnyBus = Annotated[
    Annotated[BusConfig, Tag("kerong-cu16")] | Annotated[GpioBusConfig, Tag("gpio")],
    Discriminator(_bus_tag),
]

# A GPIO pin, Klipper style: 17, "17", "GPIO17"; "^" pull-up, "!" active low: "^!GPIO5".
_PIN_RE = re.compile(r"([\^!]{0,2})(?:GPIO)?(\d{1,2})")
Pin = Annotated[int | str, Field(union_mode="left_to_right")]


def _check_pin(value: int | str) -> str:
    text = str(value).strip()
    match = _PIN_RE.fullmatch(text)
    if not match or len(set(match[1])) != len(match[1]) or not 0 <= int(match[2]) <= 53:
        raise ValueError('must be a GPIO number 0-53, optionally "^" (pull-up) "!" (active low)')
    return text


def pin_number(spec: str) -> int:
    """The GPIO number of a validated pin spec."""
    match = _PIN_RE.fullmatch(spec)
    assert match is not None
    return int(match[2])


class DoorWiring(_Model):
    """Which lock (bus, board, channel) opens and reports one door."""

    bus: str = Field(min_length=1, max_length=64)
    board: int = Field(ge=0, le=15)
    channel: int = Field(ge=1, le=16)


class GpioDoorWiring(_Model):
    """A door on GPIO: its closed switch, and a latch relay or a motor with end switch."""

    bus: str = Field(min_length=1, max_length=64)
    switch: Pin  # active when the door is shut
    lock: Pin | None = None  # latch relay, pulsed to open
    open_switch: Pin | None = None  # active when a motorised door is fully open
    motor_open: Pin | None = None
    motor_close: Pin | None = None
    beam: Pin | None = None  # active when something is in the doorway

    _pins = field_validator("switch", "lock", "open_switch", "motor_open", "motor_close", "beam")(
        lambda v: None if v is None else _check_pin(v)
    )

    @model_validator(mode="after")
    def _complete(self) -> GpioDoorWiring:
        if (self.motor_open is None) != (self.motor_close is None):
            raise ValueError("a motor needs both motor_open and motor_close")
        if self.motor_open is not None and self.open_switch is None:
            raise ValueError("a motorised door needs open_switch (its end switch)")
        if self.motor_open is None and self.lock is None:
            raise ValueError("a door needs a lock or a motor to open it")
        return self

    @property
    def motorised(self) -> bool:
        return self.motor_open is not None

    def pins(self) -> dict[str, str]:
        names = ("switch", "lock", "open_switch", "motor_open", "motor_close", "beam")
        return {n: str(getattr(self, n)) for n in names if getattr(self, n) is not None}


def _door_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "gpio" if "switch" in value else "kerong-cu16"
    return "gpio" if isinstance(value, GpioDoorWiring) else "kerong-cu16"


AnyDoor = Annotated[
    Annotated[DoorWiring, Tag("kerong-cu16")] | Annotated[GpioDoorWiring, Tag("gpio")],
    Discriminator(_door_tag),
]


class GpioInputWiring(_Model):
    """One GPIO input, e.g. an item sensor: active when an item is in the cabinet."""

    bus: str = Field(min_length=1, max_length=64)
    pin: Pin

    _pin = field_validator("pin")(lambda v: _check_pin(v))


class IndicatorWiring(_Model):
    """An RGB LED on three GPIO pins (PWM capable for dim colours)."""

    bus: str = Field(min_length=1, max_length=64)
    red: Pin
    green: Pin
    blue: Pin

    _pins = field_validator("red", "green", "blue")(lambda v: _check_pin(v))


class CabinetConfig(_Model):
    """One compartment: the cloud's cabinet key, its size, its door(s)."""

    key: int = Field(ge=0, le=2**31 - 1)
    size: str = Field("mini", min_length=1, max_length=32)
    front: AnyDoor
    rear: AnyDoor | None = None  # rear-load door, when the cabinet has one
    item: GpioInputWiring | None = None  # item sensor on GPIO (lock boards report their own)
    indicator: IndicatorWiring | None = None


def _missing_is_empty(data: Any, *sections: str) -> Any:
    """Let an absent section fail on its required keys, which says what to add."""
    if isinstance(data, dict):
        data = dict(data)
        for section in sections:
            data.setdefault(section, {})
    return data


class Config(_Model):
    """The whole validated config."""

    locker: LockerConfig = Field(default_factory=LockerConfig)
    cloud: CloudConfig
    api: ApiConfig
    storage: StorageConfig = Field(default_factory=StorageConfig)
    buses: list[AnyBus] = Field(min_length=1)
    cabinets: list[CabinetConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_sections(cls, data: Any) -> Any:
        return _missing_is_empty(data, "cloud", "api")

    def bus(self, name: str) -> BusConfig | GpioBusConfig:
        """The bus called ``name``; KeyError if there is none."""
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)

    def cabinet(self, key: int) -> CabinetConfig:
        """The cabinet with the cloud's ``key``; KeyError if there is none."""
        for cabinet in self.cabinets:
            if cabinet.key == key:
                return cabinet
        raise KeyError(key)

    def door_refs(self) -> Iterator[tuple[int, Side, DoorWiring | GpioDoorWiring]]:
        """Every wired door as (cabinet key, "front"/"rear", wiring), in file order."""
        for cabinet in self.cabinets:
            yield cabinet.key, "front", cabinet.front
            if cabinet.rear is not None:
                yield cabinet.key, "rear", cabinet.rear


# --------------------------------------------------------------------------- checks


def _check_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    if value != value.strip() or any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must start with {' or '.join(f'{s}://' for s in reversed(schemes))}")
    if not parts.hostname:
        raise ValueError(f"must name a host, like {schemes[-1]}://lockers.example.com")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user or password (use api_key)")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("must not have a ?query or #fragment (paths are appended to it)")
    return value.rstrip("/")


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError("use only letters, digits, '-', '_' and '.'")
    return value


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
                problems.append(((("cabinets", i, part, "bus")), f"no GPIO bus named '{bus}'"))
                continue
            for name, spec in pins.items():
                claim(("cabinets", i, part, name), bus, spec)
    return problems


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError('must be "host:port", like "127.0.0.1:8080"')
    if not _HOST_RE.fullmatch(host):
        raise ValueError('host must be an IP address or a host name, like "127.0.0.1:8080"')
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError('port must be a number, like "127.0.0.1:8080"')
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535 (got {port})")
    return host.removeprefix("[").removesuffix("]"), port


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


# --------------------------------------------------------------------------- secrets

_SECRETS = (("cloud", "api_key"), ("api", "token"))


def _resolve_secrets(data: dict[str, Any], base_dir: Path) -> list[_Problem]:
    """Turn ``x`` / ``x_file`` into one SecretStr in ``data`` (in place); problems."""
    problems: list[_Problem] = []
    for section, key in _SECRETS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            continue  # pydantic reports "must be a table"
        file_key = f"{key}_file"
        table = dict(table)
        data[section] = table
        has_value, has_file = key in table, file_key in table
        problem: _Problem | None = None
        secret: SecretStr | None = None
        file_path: Path | None = None
        if has_value and has_file:
            problem = ((section, key), f"give either {key} or {file_key}, not both")
        elif not has_value and not has_file:
            problem = ((section, key), f"missing: set {key} or {file_key}")
        elif has_value:
            value = table[key]
            if not isinstance(value, str):
                problem = ((section, key), f"must be a string (got {_kind(value)})")
            elif not value.strip():
                problem = ((section, key), "must not be empty")
            else:
                secret = SecretStr(value)
        else:
            raw = table[file_key]
            if not isinstance(raw, str) or not raw.strip():
                problem = ((section, file_key), "must be a file path (a non-empty string)")
            else:
                file_path = Path(raw).expanduser()
                if not file_path.is_absolute():
                    file_path = base_dir / file_path
                text, error = _read_secret_file(file_path)
                if error is not None:
                    problem = ((section, file_key), error)
                else:
                    secret = SecretStr(text)
        if problem is not None:
            problems.append(problem)
            # A stand-in so pydantic does not report the same key again; the
            # ConfigError raised for `problem` means it never escapes.
            secret = SecretStr("-")
        table.pop(file_key, None)
        table[key] = secret
        table[file_key] = file_path
    return problems


def _read_secret_file(path: Path) -> tuple[str, str | None]:
    """(stripped text, None) or ("", a message naming the path, never the content)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as e:
        return "", f"cannot read {path}: {e.strerror or type(e).__name__}"
    if len(raw) > MAX_SECRET_FILE_BYTES:
        return "", f"{path} is larger than {MAX_SECRET_FILE_BYTES} bytes: not a key file"
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "", f"{path} is not UTF-8 text"
    if not text:
        return "", f"{path} is empty"
    return text, None


# --------------------------------------------------------------------------- messages


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _kind(value: Any) -> str:
    """A value's type in TOML words (never the value: it might be a secret)."""
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case dict():
            return "a table"
        case _:
            return type(value).__name__


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> X; ``Annotated[X, ...]`` stays (its metadata has bounds)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _walk(loc: Sequence[str | int]) -> tuple[Any, list[Any]]:
    """The type at ``loc`` inside Config and its bound metadata (best effort)."""
    tp: Any = Config
    metadata: list[Any] = []
    for part in loc:
        tp = _unwrap(tp)
        if get_origin(tp) is Annotated:
            tp = _unwrap(get_args(tp)[0])
        if part in _TAGS and get_origin(tp) in (Union, types.UnionType):
            tp = _tagged_member(tp, str(part))
            continue
        if isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                return None, []
            tp, metadata = field.annotation, list(field.metadata)
        elif isinstance(part, int) and get_origin(tp) is list:
            tp, metadata = get_args(tp)[0], []
        else:
            return None, []
    tp = _unwrap(tp)
    if get_origin(tp) is Annotated:
        for extra in get_args(tp)[1:]:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
        tp = _unwrap(get_args(tp)[0])
    return tp, metadata


def _tagged_member(union: Any, tag: str) -> Any:
    for member in get_args(union):
        if get_origin(member) is Annotated and any(
            isinstance(m, Tag) and m.tag == tag for m in get_args(member)[1:]
        ):
            return get_args(member)[0]
    return None


def _bounds(loc: Sequence[str | int]) -> tuple[Any, Any]:
    low = high = None
    for item in _walk(loc)[1]:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return low, high


def _is_secret(loc: Sequence[str | int]) -> bool:
    return any(part in ("api_key", "token", "api_key_file", "token_file") for part in loc)


def _message(error: Mapping[str, Any]) -> str:
    """A human line for one pydantic error; the input is shown only when harmless."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
    value = error.get("input")
    secret = _is_secret(loc)
    got = "" if secret else f" (got {value!r})"

    if kind == "extra_forbidden":
        parent, _ = _walk(loc[:-1])
        message = "unknown key"
        if isinstance(parent, type) and issubclass(parent, BaseModel) and isinstance(loc[-1], str):
            close = difflib.get_close_matches(loc[-1], list(parent.model_fields), n=1)
            if close:
                message += f" (did you mean '{close[0]}'?)"
        return message
    if kind == "missing":
        field_type, _ = _walk(loc)
        if isinstance(field_type, type) and issubclass(field_type, BaseModel):
            return "missing (a required table)"
        if get_origin(field_type) is list:
            return f"missing: add at least one [[{loc[-1]}]] table"
        return "missing (required)"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(loc)
        if low is not None and high is not None:
            return f"must be between {low} and {high}{got}"
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">"}
        return f"must be {word.get(kind, '<')} {bound}{got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}{got}"
    if kind in ("too_short", "string_too_short"):
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"too short: at least {ctx.get('min_length')}"
    if kind in ("too_long", "string_too_long"):
        return f"too long: at most {ctx.get('max_length')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    expected = {
        "int_type": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "string_type": "a string",
        "bool_type": "true or false",
        "list_type": "an array",
        "model_type": "a table",
        "model_attributes_type": "a table",
        "dict_type": "a table",
        "path_type": "a path (a string)",
    }.get(kind)
    if expected is not None:
        return f"must be {expected} (got {_kind(value)})"
    if secret:
        return "invalid"
    return str(error["msg"])


def _problems_of(error: ValidationError) -> list[_Problem]:
    # Discriminated unions put their tag in the location (the message needs it to find
    # the model); the file has no such key, so the reported path leaves it out.
    return [(tuple(p for p in e["loc"] if p not in _TAGS), _message(e)) for e in error.errors()]


# --------------------------------------------------------------------------- loading

_SECTION_ORDER = {name: i for i, name in enumerate(Config.model_fields)}


def _sort_key(problem: _Problem) -> tuple[int, int]:
    loc = problem[0]
    top = _SECTION_ORDER.get(loc[0], len(_SECTION_ORDER)) if loc else -1
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
    return top, index


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


def parse_config(data: dict[str, Any], base_dir: Path) -> Config:
    """Validate an already-parsed TOML document; relative paths resolve against base_dir."""
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): must be a table (got {_kind(data)})"])
    data = _missing_is_empty(data, "cloud", "api")
    problems = _resolve_secrets(data, Path(base_dir))
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": Path(base_dir)})
    except ValidationError as e:
        problems += _problems_of(e)
    problems += _cross_check_raw(data)
    if config is not None:
        problems += _check_gpio(config)
    if problems or config is None:
        problems.sort(key=_sort_key)
        lines = list(dict.fromkeys(f"{_format_loc(loc)}: {msg}" for loc, msg in problems))
        raise ConfigError(lines or ["(top level): invalid"])
    return config


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
    """A few lines for check-config and the start-up log; never a secret."""
    rear = sum(1 for c in config.cabinets if c.rear is not None)
    lines = [
        f"locker: {config.locker.name or '(unnamed)'} (auto-close timer {config.locker.timer_s} s)",
        f"cabinets: {len(config.cabinets)} ({rear} with a rear door)",
    ]
    for bus in config.buses:
        if isinstance(bus, GpioBusConfig):
            motors = sum(
                1
                for c in config.cabinets
                for d in (c.front, c.rear)
                if isinstance(d, GpioDoorWiring) and d.bus == bus.name and d.motorised
            )
            lines.append(
                f"bus {bus.name}: gpio ({bus.pin_factory} pins), {motors} motorised doors,"
                f" at most {bus.max_concurrent} actuations at once"
            )
            continue
        boards = ", ".join(str(b) for b in bus.boards)
        lines.append(
            f"bus {bus.name}: {bus.driver} on {bus.port}, {bus.baud} baud, boards {boards}"
        )
    key_from = config.cloud.api_key_file or "inline"
    token_from = config.api.token_file or "inline"
    lines += [
        f"cloud: {config.cloud.url}, heartbeat every {config.cloud.heartbeat_s:g} s"
        f" (api key: {key_from})",
        f"api: listening on {config.api.listen} (token: {token_from})",
        f"storage: {config.storage.dir}",
    ]
    if config.cloud.commands_url:
        lines.insert(-2, f"cloud commands: {config.cloud.commands_url}")
    return "\n".join(lines)
