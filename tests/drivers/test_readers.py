"""Code readers: bytes and key events to codes, bounded; fake transports that split,
drop and repeat bytes; a real pseudo-terminal that vanishes and comes back."""

import asyncio
import os
import random
import tty
import typing

import pytest

from drivers.readers.base import GRACE_S, STABLE_S, Reader
from drivers.readers.keys import KEY_ENTER, KEY_LEFTSHIFT, KEYMAP, KeyDecoder
from drivers.readers.limits import RateLimit
from drivers.readers.lines import MAX_LINE, LineReader
from drivers.readers.serial import SerialReader

CODE = "YzQwNWNhZGYtZWJlZS00ZjgzLWE0YjAtMGE4OTBjMzU4MDNl"  # the spec's open_code


# --- lines -----------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n", b"\n\r\n"])
def test_one_code_a_line_whatever_the_ending(ending):
    lines = LineReader()
    assert lines.feed(CODE.encode() + ending + b"  12345 " + ending) == [CODE, "12345"]


def test_split_at_every_byte_gives_the_same_codes():
    lines = LineReader()
    data = f"{CODE}\r\n123\n".encode()
    out = [code for byte in data for code in lines.feed(bytes([byte]))]
    assert out == [CODE, "123"]


def test_an_over_long_line_is_dropped_whole_and_the_next_is_read():
    lines = LineReader()
    assert lines.feed(b"x" * 10_000) == []
    assert len(lines._buffer) <= 4 * MAX_LINE  # bounded while it grows
    assert lines.feed(b"tail\n" + CODE.encode() + b"\n") == [CODE]
    assert lines.dropped["too_long"] == 1


@pytest.mark.parametrize("line", [b"\xff\xfe\n", b"ab\x1bcd\n", b"ab\x00\n"])
def test_a_garbled_line_is_dropped(line):
    lines = LineReader()
    assert lines.feed(line + b"ok\n") == ["ok"]
    assert lines.dropped["garbled"] == 1


class FakeTransport:
    """Delivers bytes to a protocol in random pieces, dropping or repeating some."""

    def __init__(self, protocol, rng, drop=0.0, repeat=0.0):
        self.protocol = protocol
        self.rng = rng
        self.drop = drop
        self.repeat = repeat

    def send(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            roll = self.rng.random()
            if roll < self.drop:
                continue
            out.append(byte)
            if roll > 1 - self.repeat:
                out.append(byte)
        while out:
            cut = self.rng.randint(1, 7)
            self.protocol.data_received(bytes(out[:cut]))
            del out[:cut]

    def close(self):
        self.protocol.connection_lost(None)

    def abort(self):
        self.close()


@pytest.mark.parametrize("seed", range(5))
async def test_a_lossy_line_never_turns_into_another_sent_code(seed):
    """What a noisy line makes of a code is the code or no sent code at all: a dropped
    or repeated byte changes the text, so the hash of another code cannot match it."""
    rng = random.Random(seed)
    sent = [f"{rng.getrandbits(64):016x}" for _ in range(200)]
    got = []
    transports = []

    async def connect(factory):
        protocol = factory()
        transport = FakeTransport(protocol, rng, drop=0.01, repeat=0.01)
        transports.append(transport)
        return transport, protocol

    reader = SerialReader(
        "s",
        "fake://",
        9600,
        lambda name, code: got.append(code),
        connect=connect,
        rate=RateLimit(rate=1e9, burst=10**9),
    )
    await reader.start()
    while not transports:
        await asyncio.sleep(0.001)
    for code in sent:
        transports[0].send(code.encode() + b"\r\n")
    await reader.close()
    intact = [c for c in got if c in sent]
    assert len(intact) > 100  # a lost byte costs its own line, never the next ones
    assert all(c and len(c) <= MAX_LINE for c in got)  # no empty code from a doubled CR
    order = [sent.index(c) for c in intact]
    assert order == sorted(order) and len(set(order)) == len(order)  # in order, each once


async def test_the_rate_is_bounded_and_counted():
    got = []
    reader = SerialReader("s", "x", 9600, lambda n, c: got.append(c))
    for i in range(100):
        reader._code(str(i))
    assert len(got) == 5 and reader.limited == 95 and reader.dropped["rate"] == 95


def test_rate_limit_refills():
    limit = RateLimit(rate=2.0, burst=2)
    assert [limit.take(0.0) for _ in range(3)] == [True, True, False]
    assert limit.take(0.5) and not limit.take(0.5)


# --- a real pseudo-terminal, vanishing and back ---------------------------------------


def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, os.ttyname(slave), slave


async def until(check, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_reader_that_vanishes_is_reopened_when_it_comes_back(tmp_path):
    """A USB scanner re-enumerated: its by-id link points at a new device."""
    link = tmp_path / "usb-Scanner-if00"
    master, path, slave = pty_pair()
    link.symlink_to(path)
    got = []
    clock = [0.0]
    reader = SerialReader(
        "front",
        str(link),
        9600,
        lambda n, c: got.append(c),
        reopen_min_s=0.02,
        reopen_max_s=0.1,
        clock=lambda: clock[0],
    )
    await reader.start()
    try:
        await until(lambda: reader.connected)
        os.write(master, b"first\r\n")
        await until(lambda: got == ["first"])
        os.close(master)  # unplugged
        os.close(slave)
        link.unlink()
        await until(lambda: not reader.connected)
        clock[0] += GRACE_S + 1
        [problem] = reader.problems()
        assert problem.startswith("reader front: not open for")
        master, path, slave = pty_pair()  # plugged in again, another tty
        link.symlink_to(path)
        await until(lambda: reader.connected)
        assert reader.problems() == [] and reader.opened == 2
        os.write(master, b"second\n")
        await until(lambda: got == ["first", "second"])
    finally:
        await reader.close()
        os.close(master)
        os.close(slave)


async def test_a_reader_never_found_says_so_once_it_failed(tmp_path):
    reader = SerialReader(
        "front",
        str(tmp_path / "absent"),
        9600,
        lambda n, c: None,
        reopen_min_s=0.02,
        reopen_max_s=0.05,
    )
    await reader.start()
    try:
        await until(lambda: reader.problems() != [])
        assert "absent" in reader.problems()[0] or "No such file" in reader.problems()[0]
    finally:
        await reader.close()
    assert reader.problems() == []


# --- keys ------------------------------------------------------------------------------


def typed(text: str) -> list[tuple[int, int]]:
    """The key events a US-layout scanner sends for ``text`` and Enter."""
    events = []
    for char in text:
        code, shifted = next(
            (code, pair[1] == char and pair[0] != char)
            for code, pair in KEYMAP.items()
            if char in pair
        )
        if shifted:
            events.append((KEY_LEFTSHIFT, 1))
        events += [(code, 1), (code, 0)]
        if shifted:
            events.append((KEY_LEFTSHIFT, 0))
    return [*events, (KEY_ENTER, 1), (KEY_ENTER, 0)]


@pytest.mark.parametrize("text", [CODE, "ABC-123_x", "0123456789", "a b/c.d*e+f"])
def test_keys_decode_to_the_text_typed(text):
    keys = KeyDecoder()
    out = [c for code, value in typed(text) if (c := keys.feed(code, value))]
    assert out == [text.strip()]


def test_caps_lock_and_autorepeat():
    keys = KeyDecoder()
    events = [(58, 1), (58, 0), (30, 1), (30, 2), (30, 0), (2, 1), (2, 0), (28, 1)]
    assert [c for code, value in events if (c := keys.feed(code, value))] == ["A1"]


def test_a_reopen_forgets_caps_lock():
    """Finding: one stray Caps Lock outlived a replug and turned every later code
    with letters wrong, until the reader was locked out."""
    keys = KeyDecoder()
    keys.feed(58, 1)
    keys.feed(58, 0)
    keys.reset()  # the device was reopened
    events = [(30, 1), (30, 0), (28, 1)]
    assert [c for code, value in events if (c := keys.feed(code, value))] == ["a"]


def test_an_unknown_key_garbles_the_line_and_an_endless_one_is_too_long():
    keys = KeyDecoder()
    assert keys.feed(59, 1) is None  # F1
    assert keys.feed(30, 1) is None and keys.feed(KEY_ENTER, 1) is None
    assert keys.dropped["garbled"] == 1
    for _ in range(MAX_LINE + 5):
        keys.feed(30, 1)
    assert keys.feed(KEY_ENTER, 1) is None and keys.dropped["too_long"] == 1
    assert len(keys._chars) == 0
    out = [c for code, value in typed("ok") if (c := keys.feed(code, value))]
    assert out == ["ok"]


def test_the_key_codes_are_the_kernels():
    ecodes = pytest.importorskip("evdev.ecodes")
    assert ecodes.KEY_ENTER == KEY_ENTER and ecodes.KEY_LEFTSHIFT == KEY_LEFTSHIFT
    for name, char in [
        ("KEY_A", "a"),
        ("KEY_Z", "z"),
        ("KEY_1", "1"),
        ("KEY_0", "0"),
        ("KEY_MINUS", "-"),
        ("KEY_SLASH", "/"),
        ("KEY_KP7", "7"),
        ("KEY_KPDOT", "."),
        ("KEY_SPACE", " "),
        ("KEY_KPSLASH", "/"),
    ]:
        assert KEYMAP[getattr(ecodes, name)][0] == char, name


async def test_a_keyboard_reader_without_its_device_says_why(tmp_path):
    from drivers.readers.keyboard import KeyboardReader

    reader = KeyboardReader(
        "usb", str(tmp_path / "event9"), lambda n, c: None, reopen_min_s=0.02, reopen_max_s=0.05
    )
    await reader.start()
    try:
        await until(lambda: reader.problems() != [])
        [line] = reader.problems()
        assert line.startswith("reader usb: not open") and ("event9" in line or "evdev" in line)
    finally:
        await reader.close()


class FakeInputDevice:
    """Stands in for ``evdev.InputDevice`` (no /dev/uinput here): key events from a
    queue; ``None`` in it is the device vanishing (ENODEV)."""

    opened: typing.ClassVar[list["FakeInputDevice"]] = []
    events: asyncio.Queue

    def __init__(self, path):
        self.path = path
        self.grabbed = False
        self.closed = False
        FakeInputDevice.opened.append(self)

    def grab(self):
        self.grabbed = True

    def ungrab(self):
        self.grabbed = False

    def close(self):
        self.closed = True

    async def async_read_loop(self):
        while True:
            event = await FakeInputDevice.events.get()
            if event is None:
                raise OSError(19, "No such device")
            yield event


async def test_a_keyboard_reader_grabs_decodes_and_reopens_after_vanishing(monkeypatch):
    import sys
    import types

    from drivers.readers.keyboard import EV_KEY, KeyboardReader

    FakeInputDevice.opened = []
    FakeInputDevice.events = asyncio.Queue()
    monkeypatch.setitem(sys.modules, "evdev", types.SimpleNamespace(InputDevice=FakeInputDevice))
    got = []
    reader = KeyboardReader(
        "usb",
        "/dev/input/by-id/usb-scanner-event-kbd",
        lambda n, c: got.append(c),
        reopen_min_s=0.01,
        reopen_max_s=0.02,
    )

    def type_(text):
        for code, value in typed(text):
            FakeInputDevice.events.put_nowait(
                types.SimpleNamespace(type=EV_KEY, code=code, value=value)
            )

    await reader.start()
    try:
        await until(lambda: reader.connected)
        assert FakeInputDevice.opened[0].grabbed  # its keys reach nothing else
        type_("Order-46188")
        await until(lambda: got == ["Order-46188"])
        FakeInputDevice.events.put_nowait(None)  # unplugged
        await until(lambda: len(FakeInputDevice.opened) == 2 and reader.connected)
        first = FakeInputDevice.opened[0]
        assert first.closed and not first.grabbed
        type_("again")
        await until(lambda: got == ["Order-46188", "again"])
    finally:
        await reader.close()


class Flapping(Reader):
    """Opens, then drops at once, or after ``held_s`` of its clock."""

    def __init__(self, clock):
        super().__init__(
            "front",
            "flap",
            lambda n, c: None,
            reopen_min_s=0.001,
            reopen_max_s=0.002,
            clock=lambda: clock[0],
        )
        self.clock, self.held_s, self.failed_at = clock, 0.0, []

    async def _session(self):
        self._up()
        self.clock[0] += self.held_s
        self.failed_at.append(self.failures)


async def test_a_reader_that_opens_and_drops_at_once_backs_off_further_each_time():
    """A failing hub: every open succeeds and drops at once. The backoff keeps growing
    (reopen_max_s bounds it); only a session held ``STABLE_S`` starts it again."""
    reader = Flapping([0.0])
    await reader.start()
    try:
        await until(lambda: reader.failures >= 5)
        assert reader.failed_at[:5] == [0, 1, 2, 3, 4]  # never back to 1 for an instant open
        reader.held_s = STABLE_S
        mark = len(reader.failed_at)
        await until(lambda: len(reader.failed_at) > mark + 1)
        assert reader.failed_at[mark + 1] == 1  # a stable session: the backoff starts again
    finally:
        await reader.close()
