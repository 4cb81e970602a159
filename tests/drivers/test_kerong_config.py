"""The Kerong driver's own config sections: bounds from the protocol, written once."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.kerong import codec
from drivers.kerong.config import BAUD_RATES, KerongBusConfig, KerongDoorWiring


def bus(**changes: Any) -> dict[str, Any]:
    return {"name": "rs485", "port": "/dev/ttyUSB0", "boards": [0, 1], **changes}


def errors(model: type, data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [(e["loc"], e["type"]) for e in caught.value.errors()]


def test_defaults() -> None:
    config = KerongBusConfig.model_validate(bus())
    assert config.driver == "kerong-cu16"
    assert (config.baud, config.locked_bit, config.supply) == (19200, 1, None)
    assert (config.reply_timeout_s, config.poll_interval_s) == (0.1, 0.005)
    assert (config.pulse_s, config.max_concurrent, config.stagger_s) == (0.5, 1, 0.1)


def test_board_and_channel_bounds_are_the_protocols() -> None:
    top = codec.MAX_BOARD
    KerongBusConfig.model_validate(bus(boards=list(range(top + 1))))
    KerongDoorWiring(bus="rs485", board=top, channel=codec.CHANNELS)
    KerongDoorWiring(bus="rs485", board=0, channel=1)
    assert errors(KerongBusConfig, bus(boards=[top + 1])) == [(("boards", 0), "less_than_equal")]
    assert errors(KerongBusConfig, bus(boards=[-1])) == [(("boards", 0), "greater_than_equal")]
    for board, channel, loc in [
        (top + 1, 1, "board"),
        (-1, 1, "board"),
        (0, 0, "channel"),
        (0, codec.CHANNELS + 1, "channel"),
    ]:
        assert [
            e[0] for e in errors(KerongDoorWiring, {"bus": "x", "board": board, "channel": channel})
        ] == [(loc,)]


def test_boards_listed_once() -> None:
    with pytest.raises(ValidationError, match="board 1 is listed twice"):
        KerongBusConfig.model_validate(bus(boards=[0, 1, 1]))


@pytest.mark.parametrize("baud", BAUD_RATES)
def test_every_baud_rate_of_the_board(baud: int) -> None:
    timeout_s = max(0.1, 2 * codec.wire_cycle_s(1, baud))
    assert KerongBusConfig.model_validate(bus(baud=baud, reply_timeout_s=timeout_s)).baud == baud


def test_reply_timeout_no_shorter_than_a_read_on_the_wire() -> None:
    # A read takes 117 ms at 1200 baud: 0.1 s would time every board out.
    with pytest.raises(ValidationError) as caught:
        KerongBusConfig.model_validate(bus(baud=1200, reply_timeout_s=0.1))
    [error] = caught.value.errors()
    assert error["loc"] == ("reply_timeout_s",)
    assert "0.117 s" in error["msg"] and "1200 baud" in error["msg"]
    read_s = codec.wire_cycle_s(1, 1200)
    assert KerongBusConfig.model_validate(bus(baud=1200, reply_timeout_s=read_s)).baud == 1200
    # The same timeout is plenty at the default speed.
    assert KerongBusConfig.model_validate(bus(reply_timeout_s=0.01)).reply_timeout_s == 0.01


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"baud": 12345}, ("baud",)),
        ({"name": "rs 485"}, ("name",)),
        ({"name": "x" * 65}, ("name",)),
        ({"supply": "main supply"}, ("supply",)),
        ({"port": ""}, ("port",)),
        ({"pulse_s": 0.01}, ("pulse_s",)),
        ({"max_concurrent": 0}, ("max_concurrent",)),
        ({"stagger_s": -1}, ("stagger_s",)),
        ({"locked_bit": True}, ("locked_bit",)),
        ({"boards": "0"}, ("boards",)),
        ({"reply_timeout": 0.1}, ("reply_timeout",)),
    ],
)
def test_refused(changes: dict[str, Any], loc: tuple[str, ...]) -> None:
    assert [e[0] for e in errors(KerongBusConfig, bus(**changes))] == [loc]


def test_supply_is_a_name() -> None:
    assert KerongBusConfig.model_validate(bus(supply="psu-24V.1")).supply == "psu-24V.1"


def test_models_are_frozen() -> None:
    config = KerongBusConfig.model_validate(bus())
    with pytest.raises(ValidationError):
        config.baud = 9600  # type: ignore[misc]


@pytest.mark.parametrize(
    ("port", "baud", "timeout_s"),
    [
        ("/dev/ttyUSB0", 19200, 0.1),  # a USB adapter: a few ms, 16 ms latency timer
        ("/dev/serial/by-id/usb-FTDI-if00", 9600, 0.1),
        ("/dev/ttyAMA0", 1200, 0.233),  # never under two reads on the wire
        ("socket://10.0.0.7:5000", 19200, 0.5),  # a TCP gateway: tens to hundreds of ms
        ("SOCKET://gw:4000", 19200, 0.5),  # the scheme in any case
    ],
)
def test_reply_timeout_by_the_ports_kind(port: str, baud: int, timeout_s: float) -> None:
    config = KerongBusConfig.model_validate(bus(port=port, baud=baud))
    assert config.reply_timeout_s == timeout_s
    # Given, it is taken as given (the bus may wait longer: ADR 0014).
    assert (
        KerongBusConfig.model_validate(bus(port=port, reply_timeout_s=0.3)).reply_timeout_s == 0.3
    )


@pytest.mark.parametrize("port", ["rfc2217://gw:4000", "RFC2217://gw:4000", "loop://"])
def test_only_device_paths_and_socket_urls(port: str) -> None:
    # pyserial opens any other URL with blocking calls on the loop (a silent rfc2217://
    # peer held it 3.3 s a try, for good).
    with pytest.raises(ValidationError) as caught:
        KerongBusConfig.model_validate(bus(port=port))
    ((error,),) = [caught.value.errors()]
    assert error["loc"] == ("port",)
    scheme = port.split("://")[0]
    assert f"{scheme}:// ports are not supported" in error["msg"]
    assert "device path" in error["msg"] and "socket://host:port" in error["msg"]


def test_config_does_not_import_the_driver_stack() -> None:
    # The config is read by check-config and doctor: it must not pull in the poller.
    import subprocess
    import sys

    code = (
        "import sys, drivers.kerong.config; "
        "print(sorted(m for m in sys.modules if m.startswith('drivers.kerong.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    for module in ("poller", "sweep", "bus", "link", "transaction", "matcher", "status"):
        assert f"drivers.kerong.{module}'" not in loaded
