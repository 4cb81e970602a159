"""The config file's shape: the agent's own sections and the composition of the drivers'.

``[locker]``, ``[cloud]``, ``[api]`` and ``[storage]`` are the agent's and live here;
``[thermal]`` and a cabinet's ``thermal`` unit are thermal control's (``agent/thermal``).
``[[buses]]`` entries and the wiring inside ``[[cabinets]]`` belong to the drivers
(``drivers/kerong/config.py``, ``drivers/gpio/config.py``): a bus is a discriminated
union of the driver bus models, picked by its ``driver`` key, a door one of the
driver door wirings. Every value is typed and bounded, and an unknown key is an
error. A field validator looks at one value on its own (a URL, the listen address);
checks between entries are in ``checks.py``, and ``secrets.py`` turns ``x`` /
``x_file`` into one ``SecretStr`` before these models see the data.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.config.text import plain
from agent.thermal.config import ThermalConfig, ThermalWiring
from drivers.config import StrictModel
from drivers.gpio.config import (
    GpioBusConfig,
    GpioDoorWiring,
    GpioInputWiring,
    IndicatorWiring,
)
from drivers.kerong.config import KerongBusConfig, KerongDoorWiring
from drivers.readers.config import AnyReader

# Discriminated unions (bus drivers, door kinds) tag error locations with these.
_TAGS = frozenset({"kerong-cu16", "gpio"})


Side = Literal["front", "rear"]
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_STORAGE_DIR = Path("/var/lib/locker-agent")
RUNTIME_DIR = Path("/run/locker-agent")
"""The unit's ``RuntimeDirectory=``: the technicians' socket lives there on a locker."""
SOCKET_NAME = "agent.sock"
SOCKET_NAME_MAX = 64  # bytes: bound through /proc/self/fd/N/, in 108 bytes of sun_path
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


def _non_empty_secret(value: Any) -> Any:
    if isinstance(value, str):
        value = SecretStr(value)
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        raise ValueError("must not be empty")
    return value


class LockerConfig(StrictModel):
    """What the locker is called and how it behaves as a whole."""

    name: str | None = Field(None, min_length=1, max_length=100)
    # The cloud's locker.timer: auto-close time of motorised doors, seconds.
    timer_s: int = Field(15, ge=1, le=600)
    # A door open longer than this raises the door_left_open alarm, seconds.
    left_open_s: int = Field(120, ge=1, le=86400)
    # Board and bus health events: at most one per board (or bus) this often, seconds.
    health_interval_s: float = Field(60.0, ge=0, le=3600)
    # How long an unlock waits for the door switch to confirm, seconds.
    confirm_s: float = Field(2.0, ge=0.2, le=30)
    # Pause before the one retry of an unlock whose switch never moved, seconds.
    jam_retry_s: float = Field(1.0, ge=0.1, le=30)
    # A motorised door shows blue ("about to open") this long before it moves, seconds.
    announce_s: float = Field(0.5, ge=0, le=5)
    # A lock is pulsed at most once this often, whoever asks (its solenoid's duty), seconds.
    min_pulse_gap_s: float = Field(2.0, ge=0.5, le=30)


class CloudConfig(StrictModel):
    """Where feedback goes ({url}/api/lockers/cabinet/status) and with which key."""

    url: str
    api_key: SecretStr
    # Where api_key was read from, absolute; None when it was written inline.
    api_key_file: Path | None = None
    heartbeat_s: float = Field(60.0, ge=5, le=3600)
    timeout_s: float = Field(10.0, ge=0.5, le=120)
    # Optional websocket the cloud sends commands on (ws:// or wss://).
    commands_url: str | None = None
    # A private CA (PEM) to verify the cloud's certificate with, instead of the
    # system's; relative to the config file. TLS verification is never off.
    ca_file: Annotated[Path, Field(strict=False)] | None = None

    @field_validator("ca_file")
    @classmethod
    def _readable_ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = value if value.is_absolute() or base is None else Path(base) / value
        try:
            ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use {path} as a CA file: {exc}") from None
        return path

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


class ApiConfig(StrictModel):
    """The local HTTP API; it always requires the bearer token."""

    listen: str = DEFAULT_LISTEN
    token: SecretStr
    token_file: Path | None = None
    # Names a request's Host may carry besides the listen address, localhost and the
    # address it arrived on (the locker's DNS name); any other Host is refused.
    allowed_hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=32
    )
    # Connections open at once, well below the unit's LimitNOFILE.
    max_connections: int = Field(64, ge=1, le=512)
    # Seconds to send a request head (from connecting or the previous answer), and
    # then its body.
    head_timeout_s: float = Field(10.0, ge=1, le=120)
    body_timeout_s: float = Field(10.0, ge=1, le=120)
    # The Unix socket the technicians' commands (status, open, selftest) reach the
    # agent on, relative to the config file; default: see Config.api_socket.
    socket: Annotated[Path, Field(strict=False)] | None = None

    @field_validator("socket", mode="before")
    @classmethod
    def _plain_path(cls, value: Any) -> Any:
        if isinstance(value, str) and (not value.strip() or value.endswith("/")):
            raise ValueError('must name a file, like "/run/locker-agent/agent.sock"')
        return plain(value)

    @field_validator("socket")
    @classmethod
    def _socket_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        if base is not None and not value.is_absolute():
            value = Path(base) / value
        if len(value.name.encode()) > SOCKET_NAME_MAX:
            raise ValueError(f"the file name is at most {SOCKET_NAME_MAX} bytes")
        if value.is_dir():
            raise ValueError(f"{value} is a directory: name the socket file in it")
        return value

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
        """TCP port part of ``listen`` (1-65535)."""
        return _split_listen(self.listen)[1]


class StorageConfig(StrictModel):
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
        return plain(value)

    @field_validator("dir")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if base is not None and not value.is_absolute():
            value = Path(base) / value
        existing = next((p for p in (value, *value.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ValueError(f"{existing} is a file: the storage needs a directory")
        return value


def _bus_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "gpio" if value.get("driver") == "gpio" else "kerong-cu16"
    return "gpio" if isinstance(value, GpioBusConfig) else "kerong-cu16"


AnyBus = Annotated[
    Annotated[KerongBusConfig, Tag("kerong-cu16")] | Annotated[GpioBusConfig, Tag("gpio")],
    Discriminator(_bus_tag),
]
"""A ``[[buses]]`` entry: its ``driver`` key picks the driver's model (Kerong by default)."""


def _door_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "gpio" if "switch" in value else "kerong-cu16"
    return "gpio" if isinstance(value, GpioDoorWiring) else "kerong-cu16"


AnyDoor = Annotated[
    Annotated[KerongDoorWiring, Tag("kerong-cu16")] | Annotated[GpioDoorWiring, Tag("gpio")],
    Discriminator(_door_tag),
]
"""A door's wiring: a GPIO door has a ``switch``; anything else is read as a Kerong lock."""


CabinetKey = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""The cloud's cabinet key within this locker."""


class CabinetConfig(StrictModel):
    """One compartment: the cloud's ``key``, ``size``, its doors, sensors and units.

    ``front`` and optional ``rear`` (rear-load) door; an optional GPIO ``item``
    sensor (lock boards report their own), RGB ``indicator`` and ``thermal`` unit.
    """

    key: CabinetKey
    size: str = Field("mini", min_length=1, max_length=32)
    front: AnyDoor
    rear: AnyDoor | None = None  # rear-load door, when the cabinet has one
    item: GpioInputWiring | None = None  # item sensor on GPIO (lock boards report their own)
    indicator: IndicatorWiring | None = None
    thermal: ThermalWiring | None = None


def _missing_is_empty(data: Any, *sections: str) -> Any:
    """Let an absent section fail on its required keys, which says what to add."""
    if isinstance(data, dict):
        data = dict(data)
        for section in sections:
            data.setdefault(section, {})
    return data


class Config(StrictModel):
    """The whole validated config: the agent's sections, ``buses`` and ``cabinets``.

    Each bus is a ``KerongBusConfig`` or a ``GpioBusConfig``. Build it with
    ``parse_config`` / ``load_config``, which add the checks between entries.
    """

    locker: LockerConfig = Field(default_factory=LockerConfig)
    cloud: CloudConfig
    api: ApiConfig
    storage: StorageConfig = Field(default_factory=StorageConfig)
    buses: list[AnyBus] = Field(min_length=1)
    cabinets: list[CabinetConfig] = Field(min_length=1)
    thermal: ThermalConfig = Field(default_factory=ThermalConfig)
    # Pickup-code readers (drivers/readers/config.py), each owning its section.
    readers: list[AnyReader] = Field(default_factory=list, max_length=16)

    @field_validator("readers")
    @classmethod
    def _unique_readers(cls, readers: list[Any]) -> list[Any]:
        names = [r.name for r in readers]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"reader name {twice[0]!r} is used twice")
        return readers

    @model_validator(mode="before")
    @classmethod
    def _default_sections(cls, data: Any) -> Any:
        return _missing_is_empty(data, "cloud", "api")

    def bus(self, name: str) -> KerongBusConfig | GpioBusConfig:
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

    @property
    def api_socket(self) -> Path:
        """The technicians' Unix socket, a function of the file alone (the agent up or down).

        ``[api] socket`` when given; else, with the service's storage
        (``/var/lib/locker-agent``), ``/run/locker-agent/agent.sock`` (the unit's
        RuntimeDirectory); else ``agent.sock`` in ``[storage] dir``. The agent and the CLI
        reading the same file name the same path.
        """
        if self.api.socket is not None:
            return self.api.socket
        if self.storage.dir == DEFAULT_STORAGE_DIR:
            return RUNTIME_DIR / SOCKET_NAME
        return self.storage.dir / SOCKET_NAME

    def door_refs(self) -> Iterator[tuple[int, Side, KerongDoorWiring | GpioDoorWiring]]:
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
