"""The KR-CU16 emulator, driven through a real pyserial port on its pty."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import serial

from drivers.kerong import codec
from simulator.kerong_board import KerongBoardEmulator

WAIT = 5.0  # generous: only reached when something is broken

ALL_CLOSED_B0 = bytes.fromhex("02 00 35 FF FF 00 00 03 38")
LOCK1_OPEN_ITEM3_B0 = bytes.fromhex("02 00 35 FE FF 04 00 03 3B")
STATUS_B0 = bytes.fromhex("02 00 30 03 35")
STATUS_B1 = bytes.fromhex("02 10 30 03 45")
UNLOCK_B0_CH6 = bytes.fromhex("02 05 31 03 3B")
UNLOCK_ALL_B0 = bytes.fromhex("02 00 33 03 38")
BUS_STATUS = bytes.fromhex("02 F0 32 03 27")


@pytest.fixture
async def emu():
    emulator = KerongBoardEmulator([0, 1])
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest.fixture
def port(emu):
    ser = serial.Serial(emu.port, 19200, timeout=WAIT)
    yield ser
    ser.close()


async def transact(ser: serial.Serial, request: bytes, size: int) -> bytes:
    """Write a request and read exactly ``size`` bytes (or what came before the timeout)."""

    def run() -> bytes:
        ser.write(request)
        return ser.read(size)

    return await asyncio.to_thread(run)


def frame_for(board: int, **overrides: bool) -> bytes:
    """Expected status reply of ``board``: all closed, no items, with channel overrides."""
    lock_bits = [True] * 16
    items = [False] * 16
    for key, value in overrides.items():
        kind, channel = key.split("_")
        (lock_bits if kind == "closed" else items)[int(channel) - 1] = value
    return codec.status_reply(board, tuple(lock_bits), tuple(items))


async def test_status_all_closed_matches_protocol_vector(emu, port):
    assert await transact(port, STATUS_B0, 9) == ALL_CLOSED_B0
    assert await transact(port, STATUS_B1, 9) == frame_for(1)
    assert emu.received == [STATUS_B0, STATUS_B1]


async def test_unlock_channel_6_opens_door(emu, port):
    changes = []
    emu.on_change = lambda board, channel: changes.append((board, channel))
    await asyncio.to_thread(port.write, UNLOCK_B0_CH6)
    await emu.wait_for_frame(UNLOCK_B0_CH6, WAIT)
    assert emu.received[-1] == UNLOCK_B0_CH6
    state = emu.state(0, 6)
    assert state.door_open and not state.latched
    assert changes == [(0, 6)]
    assert await transact(port, STATUS_B0, 9) == frame_for(0, closed_6=False)

    emu.shut_door(0, 6)
    assert await transact(port, STATUS_B0, 9) == ALL_CLOSED_B0


async def test_lock1_open_item3_matches_protocol_vector(emu, port):
    await asyncio.to_thread(port.write, codec.unlock_request(0, 1))
    await emu.wait_for_frame(codec.unlock_request(0, 1), WAIT)
    emu.set_item(0, 3, True)
    assert await transact(port, STATUS_B0, 9) == LOCK1_OPEN_ITEM3_B0


async def test_unlock_all_opens_every_channel_of_that_board_only(emu, port):
    await asyncio.to_thread(port.write, UNLOCK_ALL_B0)
    await emu.wait_for_frame(UNLOCK_ALL_B0, WAIT)
    reply = await transact(port, STATUS_B0, 9)
    assert codec.decode_status(codec.FrameParser().feed(reply)[0]).lock_bits == (False,) * 16
    assert await transact(port, STATUS_B1, 9) == frame_for(1)


async def test_bus_status_answers_0x36_from_each_online_board():
    emu = KerongBoardEmulator([0, 2, 5])
    await emu.start()
    try:
        ser = serial.Serial(emu.port, 19200, timeout=WAIT)
        try:
            emu.set_offline(2)
            emu.force_open(5, 16)
            frames = codec.FrameParser().feed(await transact(ser, BUS_STATUS, 18))
        finally:
            ser.close()
    finally:
        await emu.close()
    assert [(f.board, f.cmd) for f in frames] == [(0, 0x36), (5, 0x36)]
    replies = [codec.decode_status(f) for f in frames]
    assert replies[0].lock_bits == (True,) * 16
    assert replies[1].lock_bits == (True,) * 15 + (False,)


async def test_door_model_latch_jam_and_force(emu, port):
    assert emu.open_door(0, 1) is False  # latched: a pull does nothing
    assert emu.feedback_closed(0, 1)

    emu.jam(0, 2)
    await asyncio.to_thread(port.write, codec.unlock_request(0, 2))
    await emu.wait_for_frame(codec.unlock_request(0, 2), WAIT)
    state = emu.state(0, 2)
    assert not state.door_open and state.latched  # a jammed lock does not release
    assert emu.feedback_closed(0, 2)
    emu.jam(0, 2, on=False)
    await asyncio.to_thread(port.write, codec.unlock_request(0, 2))
    async with asyncio.timeout(WAIT):
        while emu.received.count(codec.unlock_request(0, 2)) < 2:
            await asyncio.sleep(0.005)
    assert emu.state(0, 2).door_open and not emu.feedback_closed(0, 2)

    emu.force_open(0, 3)
    assert emu.state(0, 3).door_open and not emu.feedback_closed(0, 3)
    emu.shut_door(0, 3)
    assert emu.feedback_closed(0, 3)


async def test_inverted_polarity_and_no_item_sensors():
    inverted = KerongBoardEmulator([0], locked_bit=0, has_items=False)
    await inverted.start()
    try:
        inverted.set_item(0, 1, True)  # no sensors: never reported
        inverted.force_open(0, 2)
        ser = serial.Serial(inverted.port, 19200, timeout=WAIT)
        try:
            reply = await transact(ser, STATUS_B0, 9)
        finally:
            ser.close()
        status = codec.decode_status(codec.FrameParser().feed(reply)[0])
        assert status.lock_bits == (False, True) + (False,) * 14
        assert status.items == (False,) * 16
    finally:
        await inverted.close()


async def test_echo_sends_request_back_before_reply(emu, port):
    emu.echo = True
    assert await transact(port, STATUS_B0, 5 + 9) == STATUS_B0 + ALL_CLOSED_B0


async def test_echo_does_not_wait_for_the_reply_delay(emu, port):
    emu.echo = True
    emu.reply_delay_s = 0.5

    def run() -> tuple[bytes, float, bytes, float]:
        started = time.monotonic()
        port.write(STATUS_B0)
        echo = port.read(5)
        echoed_s = time.monotonic() - started
        reply = port.read(9)
        return echo, echoed_s, reply, time.monotonic() - started

    echo, echoed_s, reply, replied_s = await asyncio.to_thread(run)
    assert (echo, reply) == (STATUS_B0, ALL_CLOSED_B0)
    assert echoed_s < 0.4
    assert replied_s >= 0.5


async def test_reply_delay_still_answers(emu, port):
    emu.reply_delay_s = 0.05
    started = time.monotonic()
    assert await transact(port, STATUS_B0, 9) == ALL_CLOSED_B0
    assert time.monotonic() - started >= 0.05


async def test_replies_keep_their_order_when_the_delay_shrinks(emu, port):
    emu.reply_delay_s = 0.2
    await asyncio.to_thread(port.write, STATUS_B0)
    await emu.wait_for_frame(STATUS_B0, WAIT)
    emu.force_open(0, 1)
    emu.reply_delay_s = 0.0  # the second reply may not overtake the first on the wire
    data = await transact(port, STATUS_B0, 18)
    assert data == ALL_CLOSED_B0 + frame_for(0, closed_1=False)


async def test_offline_and_unknown_boards_stay_silent(emu, port):
    emu.set_offline(1)
    # Silent boards first, then board 0: if either answered, its reply would come first.
    request = STATUS_B1 + codec.status_request(7) + codec.unlock_request(1, 1) + STATUS_B0
    assert await transact(port, request, 9) == ALL_CLOSED_B0
    assert emu.state(1, 1).latched  # an offline board does not pulse either
    assert len(emu.received) == 4

    emu.set_offline(1, False)
    assert await transact(port, STATUS_B1, 9) == frame_for(1)


async def test_garbage_in_both_directions(emu, port):
    # From the agent: noise, a frame with a wrong SUM, then a good request.
    bad_sum = bytes.fromhex("02 10 30 03 3E")
    assert await transact(port, b"\xff\x00\x02\x02junk" + bad_sum + STATUS_B0, 9) == ALL_CLOSED_B0
    assert emu.received == [STATUS_B0]

    # Towards the agent: injected noise before the reply; the reply survives.
    emu.inject(b"\x02\x00\x35\xaa")
    data = await transact(port, STATUS_B0, 4 + 9)
    assert data.endswith(ALL_CLOSED_B0)
    assert [f.raw for f in codec.FrameParser().feed(data)] == [ALL_CLOSED_B0]


async def test_auto_shut_after_s(emu, port):
    emu.auto_shut_after_s = 0.05
    shut = asyncio.Event()

    def changed(board: int, channel: int) -> None:
        if (board, channel) == (0, 6) and emu.feedback_closed(0, 6):
            shut.set()

    emu.on_change = changed
    await asyncio.to_thread(port.write, UNLOCK_B0_CH6)
    await emu.wait_for_frame(UNLOCK_B0_CH6, WAIT)
    await asyncio.wait_for(shut.wait(), WAIT)
    assert await transact(port, STATUS_B0, 9) == ALL_CLOSED_B0


async def test_port_can_be_reopened(emu):
    for _ in range(2):
        ser = serial.Serial(emu.port, 19200, timeout=WAIT)
        try:
            assert await transact(ser, STATUS_B0, 9) == ALL_CLOSED_B0
        finally:
            ser.close()


async def test_wait_for_frame_times_out(emu):
    with pytest.raises(TimeoutError):
        await emu.wait_for_frame(UNLOCK_B0_CH6, 0.01)


async def test_snapshot_is_json_and_observer_errors_are_contained(emu):
    emu.on_change = lambda board, channel: 1 / 0
    emu.set_item(1, 4, True)  # must not raise
    snap = json.loads(json.dumps(emu.snapshot()))
    assert [b["board"] for b in snap["boards"]] == [0, 1]
    channel = snap["boards"][1]["channels"][3]
    assert channel == {
        "channel": 4,
        "closed": True,
        "door_open": False,
        "latched": True,
        "item": True,
        "jammed": False,
    }


async def test_bad_arguments_and_idempotent_close():
    with pytest.raises(ValueError):
        KerongBoardEmulator([16])
    emu = KerongBoardEmulator([0])
    with pytest.raises(RuntimeError):
        _ = emu.port
    for renamed in ("reply_delay", "auto_shut_after"):  # now *_s: setting the old name raises
        with pytest.raises(AttributeError):
            setattr(emu, renamed, 0.05)
    await emu.start()
    with pytest.raises(ValueError):
        emu.shut_door(3, 1)
    with pytest.raises(ValueError):
        emu.shut_door(0, 17)
    await emu.close()
    await emu.close()
