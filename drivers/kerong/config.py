"""The config sections of the Kerong KR-CU16 driver: a bus, and a door's wiring on it.

```toml
[[buses]]
name = "rs485"
driver = "kerong-cu16"
port = "/dev/serial/by-id/usb-FTDI_..."   # a device path, or socket://host:port
baud = 19200
boards = [0, 1]

[[cabinets]]
front = { bus = "rs485", board = 0, channel = 1 }
```

Board and channel bounds come from the protocol (``codec.MAX_BOARD``,
``codec.CHANNELS``); nothing else writes them down.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.config import BAUD_RATES, Baud, Name, NameRef, StrictModel
from drivers.kerong.codec import CHANNELS, MAX_BOARD, wire_cycle_s
from drivers.kerong.timing import ACTIVE_HOLD_S, REST_INTERVAL_S

NETWORK_SCHEMES = ("socket://",)
"""pyserial URLs that reach the line through the network (a TCP serial gateway). The
only URLs a port may be: any other (``rfc2217://``, ``loop://``...) pyserial opens with
blocking calls on the event loop (a silent ``rfc2217://`` peer held it 3.3 s a try)."""

SERIAL_REPLY_TIMEOUT_S = 0.1
"""The default reply timeout on a local port (USB adapter, UART): a board answers in a
few ms, a USB adapter adds up to 16 ms (its latency timer); 0.1 s leaves five times
that (ADR 0014)."""

NETWORK_REPLY_TIMEOUT_S = 0.5
"""The default reply timeout through a ``socket://`` gateway, whose
replies take tens to hundreds of ms (``shared/protocols/kerong-cu16.md``; ADR 0014)."""


def is_network_port(port: str) -> bool:
    """Whether the pyserial URL ``port`` reaches the line through the network."""
    return port.lower().startswith(NETWORK_SCHEMES)


def _supported_port(port: str) -> str:
    # pyserial takes anything with "://" as a URL; only socket:// is opened without
    # blocking the loop (drivers/serialport.py open_port).
    if "://" in port and not is_network_port(port):
        scheme = port.split("://", 1)[0]
        raise ValueError(
            f"{scheme}:// ports are not supported: give a device path "
            "(/dev/serial/by-id/...) or socket://host:port"
        )
    return port


def default_reply_timeout_s(port: str, baud: int) -> float:
    """The reply timeout a bus starts with when its config gives none: by the port's kind,
    and never under twice a status read's time on the wire at ``baud``."""
    kind_s = NETWORK_REPLY_TIMEOUT_S if is_network_port(port) else SERIAL_REPLY_TIMEOUT_S
    return max(kind_s, round(2 * wire_cycle_s(1, baud), 3))


Board = Annotated[int, Field(ge=0, le=MAX_BOARD)]
"""A board address, as set on the board's switch: 0 to ``MAX_BOARD``."""


Channel = Annotated[int, Field(ge=1, le=CHANNELS)]
"""A lock connector of one board: 1 to ``CHANNELS``."""


def _not_a_boolean(value: object) -> object:
    # Literal[0, 1] takes True for 1 even when strict (True == 1); TOML's true is not 1.
    if isinstance(value, bool):
        raise ValueError("must be 0 or 1 (got a boolean)")
    return value


LockedBit = Annotated[Literal[0, 1], BeforeValidator(_not_a_boolean)]


def _unique_boards(boards: list[int]) -> list[int]:
    seen: set[int] = set()
    for board in boards:
        if board in seen:
            raise ValueError(f"board {board} is listed twice")
        seen.add(board)
    return boards


Boards = Annotated[
    list[Board], Field(min_length=1, max_length=MAX_BOARD + 1), AfterValidator(_unique_boards)
]


class KerongBusConfig(StrictModel):
    """One RS-485 line (or TCP serial gateway) with its KR-CU16 lock boards.

    Fields: ``name`` (what doors refer to), ``port`` (a device path or
    ``socket://host:port``; no other pyserial URL), ``baud`` (bit/s, one of
    ``BAUD_RATES``), ``boards`` (addresses 0 to ``MAX_BOARD``, each once),
    ``reply_timeout_s`` (seconds, no shorter than a status read takes on the wire at
    ``baud``; default by the port's kind,
    ``default_reply_timeout_s``; the bus waits longer when late replies show it must,
    ADR 0014), ``poll_interval_s`` (seconds between the starts of two poll cycles,
    never shorter than the wire's pace; the default polls back to back at that pace: see
    ``docs/benchmarks.md`` for what a larger value saves in CPU and costs in
    door-to-cloud time) while the bus is active, ``rest_poll_interval_s`` (seconds: at
    rest each board is read this often; no longer than ``poll_interval_s``: never at
    rest), ``active_hold_s`` (seconds the wire's pace lasts after a command or a change;
    a door held open keeps it), ``bus_status`` (at rest, read every board by one
    bus-wide status where the boards answer it: ADR 0015), ``locked_bit`` (the
    lock-feedback bit value that means "closed": 1 on most boards, 0 on some),
    ``pulse_s`` (seconds the board energises a lock; an unlock holds one power slot
    that long), ``max_concurrent`` and ``stagger_s`` (the power budget: unlocks at
    once, seconds between two starts),
    ``supply`` (optional: buses naming the same supply share one power budget, and
    must then give the same ``max_concurrent`` and ``stagger_s``), ``offline_after``
    (missed polls in a row before a board counts as silent) and ``online_after``
    (answers in a row before a silent board counts as back): a flapping board
    neither flickers its doors to unknown nor floods the cloud.

    Validation raises ``pydantic.ValidationError``; the agent turns it into lines.
    """

    name: Name
    driver: Literal["kerong-cu16"] = "kerong-cu16"
    port: Annotated[
        str,
        Field(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$"),
        AfterValidator(_supported_port),
    ]
    baud: Baud = 19200
    boards: Boards
    reply_timeout_s: float = Field(SERIAL_REPLY_TIMEOUT_S, ge=0.01, le=5)
    poll_interval_s: float = Field(0.005, ge=0.005, le=5)
    rest_poll_interval_s: float = Field(REST_INTERVAL_S, ge=0.005, le=5)
    active_hold_s: float = Field(ACTIVE_HOLD_S, ge=0, le=3600)
    bus_status: bool = True
    locked_bit: LockedBit = 1
    pulse_s: float = Field(0.5, ge=0.05, le=5)
    max_concurrent: int = Field(1, ge=1, le=16)
    stagger_s: float = Field(0.1, ge=0, le=10)
    offline_after: int = Field(3, ge=1, le=100)
    online_after: int = Field(2, ge=1, le=100)
    supply: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _reply_timeout_by_port(cls, data: object) -> object:
        # No timeout given: the port's kind chooses it (a gateway is slower than a wire).
        if isinstance(data, dict) and "reply_timeout_s" not in data:
            port, baud = data.get("port"), data.get("baud", 19200)
            if isinstance(port, str) and baud in BAUD_RATES and not isinstance(baud, bool):
                return {**data, "reply_timeout_s": default_reply_timeout_s(port, baud)}
        return data

    @field_validator("reply_timeout_s")
    @classmethod
    def _no_shorter_than_a_read(cls, value: float, info: ValidationInfo) -> float:
        # A timeout shorter than the read itself times every board out: silent boards
        # on a line that works (1200 baud takes 117 ms a read, the default is 0.1 s).
        baud = info.data.get("baud")
        if baud is not None and value < (read_s := wire_cycle_s(1, baud)):
            raise ValueError(
                f"must be at least {read_s:.3f} s: a status read takes that long "
                f"on the wire at {baud} baud"
            )
        return value


class KerongDoorWiring(StrictModel):
    """Which lock opens and reports one door: ``bus`` (a declared Kerong bus's name),
    ``board`` (0 to ``MAX_BOARD``, one of that bus's ``boards``) and ``channel`` (1 to
    ``CHANNELS``). Whether the bus and board exist is the agent's cross check."""

    bus: NameRef
    board: Board
    channel: Channel
