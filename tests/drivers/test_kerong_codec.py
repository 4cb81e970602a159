"""KR-CU16 codec: every test vector of shared/protocols/kerong-cu16.md, and the parser's
resynchronisation."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.kerong import codec


def h(text: str) -> bytes:
    return bytes.fromhex(text)


ALL_CLOSED = (True,) * 16
NOTHING = (False,) * 16

# (what, builder, bytes) straight from the protocol file's table.
REQUEST_VECTORS = [
    ("status, board 0", lambda: codec.status_request(0), "02 00 30 03 35"),
    ("status, board 1", lambda: codec.status_request(1), "02 10 30 03 45"),
    ("unlock board 0, channel 1", lambda: codec.unlock_request(0, 1), "02 00 31 03 36"),
    ("unlock board 0, channel 6", lambda: codec.unlock_request(0, 6), "02 05 31 03 3B"),
    ("unlock board 0, channel 16", lambda: codec.unlock_request(0, 16), "02 0F 31 03 45"),
    ("unlock board 1, channel 1", lambda: codec.unlock_request(1, 1), "02 10 31 03 46"),
    ("unlock board 1, channel 16", lambda: codec.unlock_request(1, 16), "02 1F 31 03 55"),
    ("unlock all, board 0", lambda: codec.unlock_all_request(0), "02 00 33 03 38"),
    ("bus status", codec.bus_status_request, "02 F0 32 03 27"),
]

LOCK1_OPEN = (False,) + (True,) * 15
ITEM_IN_3 = (False, False, True) + (False,) * 13
REPLY_VECTORS = [
    ("board 0, all 16 closed, no items", 0, ALL_CLOSED, NOTHING, "02 00 35 FF FF 00 00 03 38"),
    ("board 0, lock 1 open, item in 3", 0, LOCK1_OPEN, ITEM_IN_3, "02 00 35 FE FF 04 00 03 3B"),
]
ALL_VECTORS = [v[2] for v in REQUEST_VECTORS] + [v[4] for v in REPLY_VECTORS]


@pytest.mark.parametrize(("what", "build", "wire"), REQUEST_VECTORS, ids=lambda v: v)
def test_request_vectors_encode(what, build, wire):
    assert build() == h(wire), what


@pytest.mark.parametrize(("what", "build", "wire"), REQUEST_VECTORS, ids=lambda v: v)
def test_request_vectors_parse(what, build, wire):
    frames = codec.FrameParser().feed(h(wire))
    assert len(frames) == 1, what
    frame = frames[0]
    assert frame.raw == h(wire)
    assert (frame.addr, frame.cmd, frame.data) == (h(wire)[1], h(wire)[2], b"")


def test_addresses_map_to_board_and_channel():
    frame = codec.FrameParser().feed(h("02 1F 31 03 55"))[0]
    assert (frame.board, frame.channel, frame.cmd) == (1, 16, codec.CMD_UNLOCK)
    frame = codec.FrameParser().feed(h("02 05 31 03 3B"))[0]
    assert (frame.board, frame.channel) == (0, 6)


@pytest.mark.parametrize(
    ("what", "board", "locks", "items", "wire"), REPLY_VECTORS, ids=lambda v: v
)
def test_reply_vectors_encode_and_decode(what, board, locks, items, wire):
    assert codec.status_reply(board, locks, items) == h(wire), what
    (frame,) = codec.FrameParser().feed(h(wire))
    assert frame.cmd == codec.REPLY_STATUS
    assert codec.decode_status(frame) == codec.StatusReply(board, locks, items)


def test_checksum_is_low_byte_of_sum_including_etx():
    assert codec.checksum(h("02 00 35 FF FF 00 00 03")) == 0x38
    assert codec.checksum(b"\xff" * 3) == 0xFD


@pytest.mark.parametrize(
    "call",
    [
        lambda: codec.status_request(16),
        lambda: codec.status_request(-1),
        lambda: codec.unlock_request(0, 0),
        lambda: codec.unlock_request(0, 17),
        lambda: codec.unlock_all_request(16),
        lambda: codec.status_reply(0, (True,) * 15, NOTHING),
    ],
)
def test_out_of_range_arguments_raise(call):
    with pytest.raises(codec.CodecError):
        call()


def test_decode_status_refuses_other_frames():
    (frame,) = codec.FrameParser().feed(h("02 00 30 03 35"))
    with pytest.raises(codec.CodecError):
        codec.decode_status(frame)


def test_all_vectors_in_one_stream():
    stream = b"".join(h(v) for v in ALL_VECTORS)
    frames = codec.FrameParser().feed(stream)
    assert [f.raw for f in frames] == [h(v) for v in ALL_VECTORS]


@pytest.mark.parametrize("wire", ALL_VECTORS)
def test_frame_split_byte_by_byte(wire):
    parser = codec.FrameParser()
    raw = h(wire)
    for b in raw[:-1]:
        assert parser.feed(bytes([b])) == []
    (frame,) = parser.feed(raw[-1:])
    assert frame.raw == raw
    assert parser.dropped == 0


def test_stream_split_byte_by_byte_with_garbage_between():
    stream = b"\x00\xff" + h(ALL_VECTORS[0]) + b"\x02\x02\x35" + h(ALL_VECTORS[-1]) + b"\x13"
    parser = codec.FrameParser()
    frames = []
    for b in stream:
        frames += parser.feed(bytes([b]))
    assert [f.raw for f in frames] == [h(ALL_VECTORS[0]), h(ALL_VECTORS[-1])]


def test_resync_after_garbage():
    garbage = bytes([0x00, 0x55, 0xFF, 0x03, 0x35, 0x02, 0x02, 0x99, 0x02, 0x00])
    reply = h("02 00 35 FE FF 04 00 03 3B")
    parser = codec.FrameParser()
    (frame,) = parser.feed(garbage + reply)
    assert frame.raw == reply
    assert parser.dropped == len(garbage)


def test_bad_sum_is_dropped_and_next_frame_parsed():
    bad = h("02 10 30 03 3E")  # the wrong SUM one public app hard-codes
    good = h("02 10 30 03 45")
    parser = codec.FrameParser()
    assert parser.feed(bad) == []
    assert parser.dropped == len(bad)
    (frame,) = parser.feed(good)
    assert frame.raw == good


def test_bad_sum_reply_then_good_reply_in_one_chunk():
    good = h("02 00 35 FF FF 00 00 03 38")
    bad = good[:-1] + b"\x39"
    (frame,) = codec.FrameParser().feed(bad + good)
    assert frame.raw == good


def test_missing_etx_is_dropped():
    no_etx = h("02 00 30 04 35")
    good = h("02 00 30 03 35")
    (frame,) = codec.FrameParser().feed(no_etx + good)
    assert frame.raw == good


def test_truncated_frame_followed_by_full_frame():
    good = h("02 00 35 FF FF 00 00 03 38")
    parser = codec.FrameParser()
    assert parser.feed(good[:4]) == []
    (frame,) = parser.feed(good)
    assert frame.raw == good


def test_buffer_is_capped_under_a_babbling_line():
    """A line that sends only noise (full of STX bytes) keeps at most one partial frame."""
    parser = codec.FrameParser()
    noise = bytes([0x02, 0x00, 0x35, 0x11, 0x02, 0x02, 0x30, 0xAA]) * 512
    fed = 0
    for _ in range(20):
        assert parser.feed(noise) == []
        fed += len(noise)
        kept = fed - parser.dropped
        assert 0 <= kept <= codec.MAX_BUFFER
        assert kept < 9  # never more than one frame's worth waits for more bytes
    good = h("02 00 35 FF FF 00 00 03 38")
    frames = parser.feed(good)
    assert [f.raw for f in frames] == [good]


def test_small_cap_drops_oldest_bytes():
    parser = codec.FrameParser(max_buffer=4)
    assert parser.feed(h("02 00 35 FF FF")) == []  # a partial reply longer than the cap
    assert parser.dropped == 1
    assert [f.raw for f in parser.feed(h("02 00 30 03 35"))] == [h("02 00 30 03 35")]


def test_reset_forgets_partial_frame():
    parser = codec.FrameParser()
    parser.feed(h("02 00 35 FF"))
    parser.reset()
    (frame,) = parser.feed(h("02 00 30 03 35"))
    assert frame.cmd == codec.CMD_STATUS


bits16 = st.tuples(*[st.booleans()] * 16)


@given(board=st.integers(0, 15), locks=bits16, items=bits16, cut=st.integers(0, 9))
def test_status_reply_roundtrip_any_split(board, locks, items, cut):
    raw = codec.status_reply(board, locks, items)
    parser = codec.FrameParser()
    frames = parser.feed(raw[:cut]) + parser.feed(raw[cut:])
    assert [codec.decode_status(f) for f in frames] == [codec.StatusReply(board, locks, items)]


no_stx = st.binary(max_size=40).map(lambda b: b.replace(b"\x02", b""))


@given(garbage=no_stx, board=st.integers(0, 15), locks=bits16, items=bits16)
def test_reply_found_after_any_noise_without_stx(garbage, board, locks, items):
    raw = codec.status_reply(board, locks, items)
    parser = codec.FrameParser()
    assert [f.raw for f in parser.feed(garbage + raw)] == [raw]
    assert parser.dropped == len(garbage)


# --- fuzzing: any byte stream -------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_boards = st.integers(0, codec.MAX_BOARD)
_bits16 = st.tuples(*[st.booleans()] * codec.CHANNELS)
_valid_frames = st.one_of(
    _boards.map(codec.status_request),
    st.tuples(_boards, st.integers(1, codec.CHANNELS)).map(lambda a: codec.unlock_request(*a)),
    _boards.map(codec.unlock_all_request),
    st.just(codec.bus_status_request()),
    st.tuples(_boards, _bits16, _bits16).map(lambda a: codec.status_reply(*a)),
)
_no_stx = st.binary(max_size=40).map(lambda b: b.replace(bytes([codec.STX]), b"\x00"))
_fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_valid(raw: bytes) -> bool:
    length = codec.FRAME_LENGTH.get(raw[2]) if len(raw) > 2 else None
    return (
        length == len(raw)
        and raw[0] == codec.STX
        and raw[-2] == codec.ETX
        and codec.checksum(raw[:-1]) == raw[-1]
    )


def _feed_in_chunks(data: bytes, cuts: list[int]) -> list[codec.Frame]:
    parser = codec.FrameParser()
    frames, last = [], 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        frames += parser.feed(data[last:cut])
        last = cut
    return frames


@_fuzz
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_any_byte_stream_gives_only_valid_frames(data, cuts):
    parser = codec.FrameParser()
    frames = parser.feed(data)
    assert all(_is_valid(f.raw) for f in frames)
    assert len(parser._buf) <= codec.MAX_BUFFER
    # However the line splits the bytes, the same frames come out.
    assert [f.raw for f in _feed_in_chunks(data, cuts)] == [f.raw for f in frames]


@_fuzz
@given(st.lists(st.tuples(_no_stx, _valid_frames), max_size=12), _no_stx, st.lists(st.integers()))
def test_every_valid_frame_inside_garbage_is_found(pieces, tail, cuts):
    stream = b"".join(garbage + frame for garbage, frame in pieces) + tail
    found = [f.raw for f in _feed_in_chunks(stream, cuts)]
    assert found == [frame for _, frame in pieces]


@_fuzz
@given(st.lists(_valid_frames, min_size=1, max_size=5))
def test_a_damaged_frame_is_never_accepted(frames):
    """Flip one byte of a valid frame: it is dropped, and the frames after it survive."""
    bad = bytearray(frames[0])
    bad[-1] ^= 0x5A  # a wrong SUM
    stream = bytes(bad) + b"".join(frames[1:])
    found = [f.raw for f in codec.FrameParser().feed(stream)]
    assert found == frames[1:]
