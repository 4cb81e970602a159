"""The config file's shape: strict, frozen pydantic models, their field validators.

Every value is typed and bounded, and an unknown key is an error. A field validator
looks at one value on its own (a URL, the listen address, a bus name, a pin spec);
checks between entries are in ``checks.py``, and ``secrets.py`` turns ``x`` /
``x_file`` into one ``SecretStr`` before these models see the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Discriminated unions (bus drivers, door kinds) tag error locations with these.
_TAGS = frozenset({"kerong-cu16", "gpio"})


BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]


Side = Literal["front", "rear"]


DEFAULT_LISTEN = "127.0.0.1:8080"


DEFAULT_STORAGE_DIR = Path("/var/lib/locker-agent")


_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


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


# --------------------------------------------------------------------------- value checks


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
