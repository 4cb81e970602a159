"""The KR-CU16 bank core: bytes in, bytes out, checked against the protocol's test vectors."""

from __future__ import annotations

import json

import pytest

from drivers.kerong import codec
from simulator.kerong_core import KerongBank

STATUS_B0 = bytes.fromhex("02 00 30 03 35")
STATUS_B1 = bytes.fromhex("02 10 30 03 45")
UNLOCK_B0_CH1 = bytes.fromhex("02 00 31 03 36")
UNLOCK_B0_CH6 = bytes.fromhex("02 05 31 03 3B")
UNLOCK_ALL_B0 = bytes.fromhex("02 00 33 03 38")
BUS_STATUS = bytes.fromhex("02 F0 32 03 27")
ALL_CLOSED_B0 = bytes.fromhex("02 00 35 FF FF 00 00 03 38")
LOCK1_OPEN_ITEM3_B0 = bytes.fromhex("02 00 35 FE FF 04 00 03 3B")


def test_protocol_vectors():
    bank = KerongBank([0, 1])
    assert bank.feed(STATUS_B0) == ALL_CLOSED_B0
    assert bank.feed(UNLOCK_B0_CH1) == b""  # no reply to rely on
    bank.set_item(0, 3, True)
    assert bank.feed(STATUS_B0) == LOCK1_OPEN_ITEM3_B0
    assert bank.received == [STATUS_B0, UNLOCK_B0_CH1, STATUS_B0]
    assert bank.unlocked == [(0, 1)]
    assert bank.status_reads == {0: 2}


def test_a_frame_split_over_feeds_and_garbage_between_frames():
    bank = KerongBank([0, 1])
    stream = b"\xff\x00" + bytes.fromhex("02 10 30 03 3E") + STATUS_B1 + b"junk" + STATUS_B0
    out = b"".join(bank.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert out == codec.status_reply(1, (True,) * 16, (False,) * 16) + ALL_CLOSED_B0
    assert bank.received == [STATUS_B1, STATUS_B0]  # the bad SUM frame is dropped


def test_unlock_pulses_open_the_door_unless_jammed():
    bank = KerongBank([0])
    changed = []
    bank.on_change = lambda board, channel: changed.append((board, channel))
    bank.jam(0, 2)
    bank.feed(UNLOCK_B0_CH6 + codec.unlock_request(0, 2))
    assert bank.state(0, 6).door_open and not bank.feedback_closed(0, 6)
    assert bank.feedback_closed(0, 2)  # jammed: the pulse happened, nothing moved
    assert bank.unlocked == [(0, 6), (0, 2)]
    assert changed == [(0, 2), (0, 6)]  # the jam, then the door

    bank.feed(UNLOCK_ALL_B0)
    assert bank.unlocked[-1] == (0, 0)
    assert bank.lock_bits(0) == (False, True) + (False,) * 14


def test_polarity_and_no_item_sensors():
    bank = KerongBank([0], locked_bit=0, has_items=False)
    bank.set_item(0, 1, True)
    bank.force_open(0, 2)
    assert bank.lock_bits(0) == (False, True) + (False,) * 14
    assert bank.item_bits(0) == (False,) * 16
    status = codec.decode_status(codec.FrameParser().feed(bank.feed(STATUS_B0))[0])
    assert status.lock_bits == bank.lock_bits(0)


def test_offline_and_unknown_boards_are_silent_and_do_not_pulse():
    bank = KerongBank([0, 1])
    bank.offline.add(1)
    assert not bank.is_online(1)
    assert bank.feed(STATUS_B1 + codec.status_request(7) + codec.unlock_request(1, 1)) == b""
    assert bank.unlocked == [] and bank.status_reads == {}
    assert bank.state(1, 1).latched
    assert len(bank.received) == 3  # heard on the line, answered by nobody
    bank.set_offline(1, False)
    assert bank.feed(STATUS_B1)[2] == codec.REPLY_STATUS


def test_bus_status_answers_from_each_online_board():
    bank = KerongBank([0, 2, 5])
    bank.set_offline(2)
    bank.force_open(5, 16)
    frames = codec.FrameParser().feed(bank.feed(BUS_STATUS))
    assert [(f.board, f.cmd) for f in frames] == [(0, 0x36), (5, 0x36)]
    assert codec.decode_status(frames[1]).lock_bits == (True,) * 15 + (False,)
    assert bank.feed(codec.encode(0x10, codec.CMD_BUS_STATUS)) == b""  # not the bus address


def test_echo_comes_back_before_the_reply():
    bank = KerongBank([0])
    bank.echo = True
    assert bank.feed(STATUS_B0) == STATUS_B0 + ALL_CLOSED_B0
    assert bank.feed(b"\x02\x00") == b"\x02\x00"  # half a frame is echoed, not answered
    assert bank.feed(b"\x30\x03\x35") == b"\x30\x03\x35" + ALL_CLOSED_B0


def test_garbage_and_corruption_are_counted_and_seeded():
    def run(seed: int) -> list[bytes]:
        bank = KerongBank([0], seed=seed)
        bank.garbage, bank.corrupt = 0.5, 0.5
        outs = [bank.feed(STATUS_B0) for _ in range(200)]
        assert 50 < bank.faults["garbage"] < 150
        assert 50 < bank.faults["corrupted"] < 150
        return outs

    outs = run(7)
    assert outs == run(7)
    clean = sum(out == ALL_CLOSED_B0 for out in outs)
    assert 20 < clean < 100  # neither fault on about a quarter of the replies
    # Whatever happened, the parser never takes a wrong status for a true one.
    for out in outs:
        for frame in codec.FrameParser().feed(out):
            if frame.cmd == codec.REPLY_STATUS:
                assert frame.raw == ALL_CLOSED_B0


def test_dropped_replies_are_lost_but_the_boards_still_act():
    bank = KerongBank([0], seed=3)
    bank.drop = 1.0
    pulsed = []
    bank.on_pulse = lambda board, channel: pulsed.append((board, channel, bank.state(0, 6).latched))
    assert bank.feed(STATUS_B0 + UNLOCK_B0_CH6) == b""
    assert bank.faults["dropped"] == 1
    assert bank.status_reads == {0: 1}  # answered; the line lost it
    assert pulsed == [(0, 6, True)]  # told before the latch moved
    assert not bank.state(0, 6).latched
    bank.drop = 0.5
    outs = [bank.feed(STATUS_B0) for _ in range(100)]
    assert 20 < outs.count(b"") < 80


def test_a_flapping_board_answers_two_then_misses_two():
    bank = KerongBank([0, 1])
    bank.set_flapping(1, answer=2, miss=2)
    answered = [bank.feed(STATUS_B1) != b"" for _ in range(8)]
    assert answered == [True, True, False, False] * 2
    assert bank.faults["missed"] == 4
    assert all(bank.feed(STATUS_B0) for _ in range(4))  # the other board is steady
    bank.feed(STATUS_B1 + STATUS_B1)  # two answered, then a pulse in a miss: nothing moves
    bank.feed(codec.unlock_request(1, 1))
    assert bank.unlocked == [] and bank.state(1, 1).latched
    assert json.loads(json.dumps(bank.snapshot()))["boards"][1]["flapping"] == [2, 2]
    bank.set_flapping(1, None)
    assert all(bank.feed(STATUS_B1) for _ in range(6))
    with pytest.raises(ValueError):
        bank.set_flapping(1, answer=0)
    with pytest.raises(ValueError):
        bank.set_flapping(2)


def test_no_faults_by_default():
    bank = KerongBank([0])
    assert all(bank.feed(STATUS_B0) == ALL_CLOSED_B0 for _ in range(100))
    assert bank.faults == {}


def test_snapshot_is_json_and_bad_arguments_raise():
    bank = KerongBank([1])
    bank.set_offline(1)
    snap = json.loads(json.dumps(bank.snapshot()))
    assert snap["boards"][0]["online"] is False
    assert snap["boards"][0]["channels"][0]["closed"] is True
    with pytest.raises(ValueError):
        KerongBank([16])
    with pytest.raises(ValueError):
        KerongBank([0], locked_bit=2)
    with pytest.raises(ValueError):
        bank.set_offline(0)
    with pytest.raises(ValueError):
        bank.shut_door(1, 0)
    with pytest.raises(AttributeError):
        bank.dead = {1}  # knobs are slots: an old name is an error, not a no-op


def test_an_observer_error_does_not_stop_a_pulse():
    bank = KerongBank([0])

    def broken(board: int, channel: int) -> None:
        raise RuntimeError("observer bug")

    bank.on_pulse = broken
    bank.feed(UNLOCK_ALL_B0)
    assert bank.unlocked == [(0, 0)] and not bank.state(0, 16).latched
