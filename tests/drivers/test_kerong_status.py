"""StatusTracker.heard: a status frame no read waited for is a fresh reading, on terms."""

from __future__ import annotations

from collections import Counter

from drivers.kerong import codec
from drivers.kerong.matcher import ReplyMatcher
from drivers.kerong.status import BoardStatus, StatusTracker
from drivers.kerong.timing import ReplyClock

NO_ITEMS = (False,) * codec.CHANNELS


def frame(*open_channels: int, addr: int = 0x00) -> codec.Frame:
    bits = tuple(ch not in open_channels for ch in range(1, codec.CHANNELS + 1))
    raw = codec.encode(addr, codec.REPLY_STATUS, codec.status_reply(0, bits, NO_ITEMS)[3:7])
    return codec.FrameParser().feed(raw)[0]


def tracker(reported: list) -> StatusTracker:
    matcher = ReplyMatcher("t", ReplyClock(0.1), Counter(), boards=[0])
    return StatusTracker(
        None,  # heard() never reads: it says when a read should follow
        matcher,
        [0],
        lambda board, status: reported.append(status),
        on_health=None,
        locked_bit=1,
        offline_after=3,
        online_after=2,
        offline_poll_interval_s=1.0,
        name="t",
    )


async def test_a_reading_of_one_door_is_reported_two_are_read_again():
    reported: list[BoardStatus | None] = []
    status = tracker(reported)
    assert status.heard(frame()) is True  # never reported: a read brings it in
    status._report(0, status._status_of(0, frame()))
    assert status.heard(frame(6, addr=0x05)) is False  # the unlock's answer: door 6 open
    assert [s.closed[5] for s in reported] == [True, False]
    assert status.heard(frame(9, 12)) is True  # three doors at once: a read confirms
    assert len(reported) == 2


async def test_a_stray_is_never_reported_as_it_stands():
    reported: list[BoardStatus | None] = []
    status = tracker(reported)
    status._report(0, status._status_of(0, frame()))
    assert status.heard(frame(3), confirm=True) is True  # differs: read the board
    assert status.heard(frame(), confirm=True) is False  # the same: nothing to do
    assert len(reported) == 1
