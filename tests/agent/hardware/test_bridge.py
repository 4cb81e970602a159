"""Hardware: the address map between doors and drivers, and board health read from the
buses. Real parts: the Kerong bus over a real TCP socket (pyserial's socket:// URL) to
boards answering with the real codec, GPIO on gpiozero's mock pins."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from agent.config import Config, ConfigError, parse_config
from agent.hardware.bridge import Hardware
from agent.locker.errors import Unavailable
from drivers.gpio import GREEN
from drivers.gpio.mock import mock_factory
from drivers.kerong import codec
from tests.conftest import EXAMPLES, as_installed

WAIT = 5.0


async def eventually(predicate, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


class TcpBoards:
    """KR-CU16 boards behind a TCP serial gateway: real socket, real frames."""

    def __init__(self, boards: list[int]) -> None:
        self.locked = {b: [True] * 16 for b in boards}  # lock bit 1 = locked
        self.items = {b: [False] * 16 for b in boards}
        self.dead: set[int] = set()
        self.unlocks: list[tuple[float, int, int]] = []  # (monotonic, board, channel)
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"socket://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        parser = codec.FrameParser()
        try:
            while data := await reader.read(1024):
                for frame in parser.feed(data):
                    writer.write(self._answer(frame))
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _answer(self, frame: codec.Frame) -> bytes:
        board = frame.board
        if board not in self.locked or board in self.dead:
            return b""
        if frame.cmd == codec.CMD_UNLOCK:
            self.unlocks.append((time.monotonic(), board, frame.channel))
            self.locked[board][frame.channel - 1] = False
            return b""
        if frame.cmd == codec.CMD_STATUS:
            return codec.status_reply(board, tuple(self.locked[board]), tuple(self.items[board]))
        return b""


class Sink:
    """The locker's side, recording every reading in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def door_sensed(self, key, side, is_open) -> None:
        self.calls.append(("door", key, side, is_open))

    def door_fully_open(self, key, side, is_open) -> None:
        self.calls.append(("fully_open", key, side, is_open))

    def item_sensed(self, key, present) -> None:
        self.calls.append(("item", key, present))

    def board_health(self, bus, board, online) -> None:
        self.calls.append(("health", bus, board, online))

    def last(self, kind: str, *head: Any) -> tuple[Any, ...] | None:
        matching = [c for c in self.calls if c[0] == kind and c[1 : 1 + len(head)] == head]
        return matching[-1] if matching else None


def make_config(port: str, switch: str = "^!4", **bus_changes: Any) -> Config:
    kerong = {
        "name": "rs485",
        "port": port,
        "boards": [0, 1],
        "reply_timeout_s": 0.05,
        "poll_interval_s": 0.01,
        "pulse_s": 0.05,
    }
    gpio = {"name": "gpio", "driver": "gpio", "pin_factory": "mock", "debounce_s": 0.0}
    for key, value in bus_changes.items():
        target, name = key.split("__")
        (kerong if target == "kerong" else gpio)[name] = value
    data = {
        "cloud": {"url": "https://lockers.example.com", "api_key": "k"},
        "api": {"token": "t"},
        "buses": [kerong, gpio],
        "cabinets": [
            {
                "key": 0,
                "front": {"bus": "rs485", "board": 0, "channel": 1},
                "rear": {"bus": "rs485", "board": 1, "channel": 1},
            },
            {
                "key": 7,
                "front": {
                    "bus": "gpio",
                    "switch": switch,
                    "open_switch": "^!17",
                    "motor_open": 27,
                    "motor_close": 22,
                    "beam": "^!10",
                },
                "rear": {"bus": "gpio", "switch": "^!9", "lock": 11},
                "item": {"bus": "gpio", "pin": "^!5"},
                "indicator": {"bus": "gpio", "red": 12, "green": 13, "blue": 19},
            },
        ],
    }
    return parse_config(data, Path("/nonexistent"))


@pytest.fixture
async def boards():
    bank = TcpBoards([0, 1])
    await bank.start()
    yield bank
    await bank.close()


@pytest.fixture
def pins():
    factory = mock_factory()
    yield factory
    factory.close()


@pytest.fixture
async def hardware(boards, pins):
    made: list[Hardware] = []

    def make(config: Config | None = None, sink: Sink | None = None) -> Hardware:
        hw = Hardware(config or make_config(boards.url), sink or Sink(), gpio_factory=pins)
        made.append(hw)
        return hw

    yield make
    for hw in made:
        await hw.close()


def level(factory: MockFactory, number: int) -> float:
    return factory.pin(number).state


# ------------------------------------------------------------------ address map


async def test_board_bits_become_doors_and_items(boards, hardware):
    sink = Sink()
    hw = hardware(sink=sink)
    await hw.start()
    assert await hw.wait_ready(WAIT)
    assert sink.last("door", 0, "front") == ("door", 0, "front", False)
    assert sink.last("door", 0, "rear") == ("door", 0, "rear", False)

    boards.locked[0][0] = False  # board 0 channel 1: cabinet 0's front door
    boards.items[0][0] = True
    boards.items[1][0] = True  # a rear board's item bit is not an item sensor
    await eventually(lambda: sink.last("door", 0, "front") == ("door", 0, "front", True))
    await eventually(lambda: sink.last("item", 0) == ("item", 0, True))
    await asyncio.sleep(0.05)
    assert sink.last("door", 0, "rear") == ("door", 0, "rear", False)
    assert [c for c in sink.calls if c[0] == "item" and c[1] == 0][-1] == ("item", 0, True)


async def test_gpio_doors_items_and_indicator_on_mock_pins(hardware, pins):
    sink = Sink()
    hw = hardware(sink=sink)
    hw.build()
    pins.pin(4).drive_low()  # front door shut (switch to ground)
    pins.pin(5).drive_low()  # an item in cabinet 7
    await asyncio.sleep(0.01)
    assert not [c for c in sink.calls if c[1] == 7]  # nothing reported before start
    await hw.start()
    assert sink.last("door", 7, "front") == ("door", 7, "front", False)
    assert sink.last("door", 7, "rear") == ("door", 7, "rear", True)  # switch 9 not active
    assert sink.last("fully_open", 7, "front") == ("fully_open", 7, "front", False)
    assert sink.last("item", 7) == ("item", 7, True)

    opening = asyncio.create_task(hw.drive(7, "front", opening=True))
    await eventually(lambda: level(pins, 27) == 1)
    assert level(pins, 22) == 0
    pins.pin(4).drive_high()  # the door leaves its closed switch...
    pins.pin(17).drive_low()  # ...and reaches the open one
    async with asyncio.timeout(WAIT):
        assert await opening is True
    assert level(pins, 27) == 0
    assert sink.last("door", 7, "front") == ("door", 7, "front", True)
    assert sink.last("fully_open", 7, "front") == ("fully_open", 7, "front", True)

    pulse = asyncio.create_task(hw.release(7, "rear"))
    await eventually(lambda: level(pins, 11) == 1)
    async with asyncio.timeout(WAIT):
        await pulse
    assert level(pins, 11) == 0

    hw.indicate(7, "open")
    assert (level(pins, 12), level(pins, 13), level(pins, 19)) == GREEN
    hw.indicate(0, "open")  # no indicator: nothing


async def test_closing_stops_for_the_beam(hardware, pins):
    hw = hardware()
    await hw.start()
    pins.pin(10).drive_low()  # something in the doorway
    assert await hw.drive(7, "front", opening=False) is False
    assert level(pins, 22) == 0


# ------------------------------------------------------------------- health


async def test_health_is_the_bus_own(boards, hardware):
    sink = Sink()
    hw = hardware(sink=sink)
    await hw.start()
    assert await hw.wait_ready(WAIT)
    assert hw.problems() == []

    boards.dead.add(1)
    await eventually(lambda: sink.last("health", "rs485", 1) is not None)
    # The board's doors are unknown first, then the board is reported.
    assert sink.calls[-2:] == [("door", 0, "rear", None), ("health", "rs485", 1, False)]
    assert hw.problems() == ["bus rs485 board 1: not answering"]

    boards.dead.clear()
    await eventually(lambda: sink.last("health", "rs485", 1)[3] is True)
    assert sink.calls[-2:] == [("door", 0, "rear", False), ("health", "rs485", 1, True)]
    assert hw.problems() == []
    assert not [c for c in sink.calls if c[0] == "health" and c[2] == 0]


async def test_ready_counts_silent_boards(boards, hardware):
    boards.dead.add(1)
    sink = Sink()
    hw = hardware(sink=sink)
    await hw.start()
    assert await hw.wait_ready(WAIT)
    assert hw.problems() == ["bus rs485 board 1: not answering"]
    assert ("health", "rs485", 1, False) in sink.calls


async def test_a_port_that_does_not_open(hardware):
    sink = Sink()
    hw = hardware(make_config("socket://127.0.0.1:9"), sink)  # nothing listens there
    await hw.start()
    assert await hw.wait_ready(WAIT)
    assert hw.problems() == [
        "bus rs485: port socket://127.0.0.1:9 not open: the gateway refuses the connection"
    ]
    assert sink.last("door", 0, "front") == ("door", 0, "front", None)
    with pytest.raises(Unavailable) as refused:
        await hw.release(0, "front")
    assert refused.value.message == (
        "bus rs485: port socket://127.0.0.1:9 not open: the gateway refuses the connection"
    )


async def test_not_ready_within_the_timeout(hardware):
    hw = hardware()
    hw.build()  # built, not started: no board is ever heard
    started = time.monotonic()
    assert await hw.wait_ready(0.05) is False
    assert time.monotonic() - started < 1


# ---------------------------------------------------------------- actuation


async def test_release_on_a_lock_board_returns_after_the_pulse(boards, hardware):
    hw = hardware()
    await hw.start()
    assert await hw.wait_ready(WAIT)
    await hw.release(0, "rear")
    done = time.monotonic()
    ((sent, board, channel),) = boards.unlocks
    assert (board, channel) == (1, 1)
    assert done - sent >= 0.05 - 0.01  # the board's pulse (the clock read is after the write)


async def test_buses_on_one_supply_never_actuate_together(boards, hardware, pins):
    config = make_config(
        boards.url,
        kerong__supply="psu",
        kerong__max_concurrent=1,
        kerong__stagger_s=0.0,
        kerong__pulse_s=0.2,
        gpio__supply="psu",
        gpio__max_concurrent=1,
        gpio__stagger_s=0.0,
        gpio__pulse_s=0.2,
    )
    hw = hardware(config)
    await hw.start()
    assert await hw.wait_ready(WAIT)
    relay_on: list[float] = []
    pin = pins.pin(11)
    original = pin._change_state

    def noting(value):
        if value:
            relay_on.append(time.monotonic())
        return original(value)

    pin._change_state = noting
    async with asyncio.timeout(WAIT):
        await asyncio.gather(hw.release(0, "front"), hw.release(7, "rear"))
    ((unlock_at, _, _),) = boards.unlocks
    (relay_at,) = relay_on
    assert abs(relay_at - unlock_at) >= 0.2 - 0.01  # one after the other, never together


async def test_actions_the_hardware_cannot_do(boards, hardware):
    hw = hardware()
    with pytest.raises(Unavailable):
        await hw.release(0, "front")  # not started
    await hw.start()
    with pytest.raises(Unavailable, match="no motor"):
        await hw.drive(0, "front", opening=True)  # a lock board door
    with pytest.raises(Unavailable, match="no lock relay"):
        await hw.release(7, "front")  # motorised, no latch
    with pytest.raises(Unavailable):
        await hw.release(3, "front")  # no such cabinet
    await hw.close()
    with pytest.raises(Unavailable, match="bus gpio: closed"):
        await hw.release(7, "rear")
    with pytest.raises(Unavailable, match="bus rs485"):
        await hw.release(0, "front")


# ---------------------------------------------------------------- dry build


async def test_build_claims_every_pin_and_opens_no_port(boards, pins):
    hw = Hardware(make_config(boards.url), Sink(), gpio_factory=pins)
    try:
        hw.build()
        hw.build()  # once only
        claimed = {n for n in (4, 17, 27, 22, 10, 9, 11, 5, 12, 13, 19)}
        assert all(pins.pin(n).function in ("input", "output") for n in claimed)
        assert [pins.pin(n).function for n in (27, 22, 11)] == ["output"] * 3
        assert [level(pins, n) for n in (27, 22, 11, 12, 13, 19)] == [0] * 6  # all off
        assert pins.pin(4).pull == "up"
        await asyncio.sleep(0.05)
        assert boards.connections == 0
    finally:
        await hw.close()
    assert boards.connections == 0


def test_build_needs_a_running_loop(boards, pins):
    hw = Hardware(make_config(boards.url), Sink(), gpio_factory=pins)
    with pytest.raises(RuntimeError):
        hw.build()


async def test_what_a_driver_refuses_at_build_names_the_config_key(boards):
    # A 40-pin Raspberry Pi header (gpiozero's stock mock board: GPIO 0-27) where the
    # config says GPIO40, and an indicator pin some other program holds already.
    factory = MockFactory(pin_class=MockPWMPin)
    held = DigitalOutputDevice(13, pin_factory=factory)
    hw = Hardware(make_config(boards.url, switch="^!40"), Sink(), gpio_factory=factory)
    try:
        with pytest.raises(ConfigError) as caught:
            hw.build()
    finally:
        await hw.close()
        held.close()
        factory.close()
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith("cabinets[1].front.switch: ^!GPIO40: refused by the pin factory")
    assert problems[1].startswith("cabinets[1].indicator: GPIO12/GPIO13/GPIO19: refused")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_every_example_builds_dry(path, tmp_path):
    from agent.config import load_config

    config = load_config(as_installed(path, tmp_path))
    factory = mock_factory()
    hw = Hardware(config, Sink(), gpio_factory=factory)
    try:
        hw.build()
        kerong = [b.name for b in config.buses if b.driver == "kerong-cu16"]
        ports = [(b.name, b.port) for b in config.buses if b.driver == "kerong-cu16"]
        assert [b for b, _ in ports] == kerong
        assert hw.problems() == [f"bus {n}: port {p} not open: not open yet" for n, p in ports]
    finally:
        await hw.close()
        factory.close()
