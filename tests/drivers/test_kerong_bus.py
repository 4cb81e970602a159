"""KerongBus: the real protocol code against fake transports (bellows-style), a real
pseudo-terminal and a real TCP socket (pyserial's socket:// URL)."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import termios
import time
import tty
from collections import Counter
from collections.abc import Callable

import pytest
import serial
import structlog
from pydantic import ValidationError

from drivers.kerong import codec
from drivers.kerong.bus import (
    BoardStatus,
    BoardTimeout,
    BusTuning,
    BusUnavailable,
    KerongBus,
    KerongBusConfig,
    wire_cycle_s,
)
from simulator.kerong_core import KerongBank

WAIT = 5.0  # generous: only bounds how long a broken test hangs


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


class FakeTransport(asyncio.Transport):
    """The host's end of a line to a board bank (the simulator's KerongBank core), with
    the transport's bad habits on demand: requests dropped, replies late, held, split
    into single bytes or delivered inside write(). The byte faults of the line itself
    (echo, garbage, corrupted replies) are the bank's knobs."""

    def __init__(
        self,
        bank: KerongBank,
        protocol: asyncio.Protocol,
        *,
        byte_by_byte: bool = False,
        delay: float = 0.0,
        drop: float = 0.0,
        sync: bool = False,
        hold: bool = False,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        self.bank = bank
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.byte_by_byte = byte_by_byte
        self.delay = delay
        self.drop = drop
        self.sync = sync
        self.held: list[bytes] | None = [] if hold else None
        self.rng = random.Random(seed)
        self.written: list[bytes] = []
        self.fail_next_write: Exception | None = None
        self.on_write: Callable[[FakeTransport], None] | None = None
        self.closing = False
        self.stats: Counter[str] = Counter()
        self.in_flight = 0  # delayed replies not delivered yet

    # -- transport API
    def write(self, data) -> None:
        if self.closing:
            return
        if self.fail_next_write is not None:
            exc, self.fail_next_write = self.fail_next_write, None
            raise exc
        data = bytes(data)
        self.written.append(data)
        if self.drop and self.rng.random() < self.drop:
            self.stats["dropped"] += 1
            return
        out = self.bank.feed(data)
        if not out:
            return
        if self.held is not None:
            self.held.append(out)
        elif self.sync:
            self.protocol.data_received(out)  # inside write(): the matcher must be ready
            if self.on_write is not None:
                self.on_write(self)
        elif self.delay:
            self.in_flight += 1
            self.loop.call_later(self.delay, self._deliver_late, out)
        else:
            self._deliver(out)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self._lose(None)

    def abort(self) -> None:
        self._lose(None)

    # -- test controls
    def release(self, *, keep_holding: bool = False) -> None:
        """Deliver the held replies; stop holding unless told otherwise."""
        held, self.held = self.held or [], [] if keep_holding else None
        for out in held:
            self._deliver(out)

    def unplug(self, exc: Exception) -> None:
        self._lose(exc)

    def _lose(self, exc: Exception | None) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, exc)

    def _deliver_late(self, out: bytes) -> None:
        self.in_flight -= 1
        self._deliver(out)

    def _deliver(self, out: bytes) -> None:
        chunks = [out[i : i + 1] for i in range(len(out))] if self.byte_by_byte else [out]
        self._drip(chunks)

    def _drip(self, chunks: list[bytes]) -> None:
        # One chunk per loop iteration, in order, so other tasks run in between.
        if chunks and not self.closing:
            self.protocol.data_received(chunks[0])
            self.loop.call_soon(self._drip, chunks[1:])


class FakePort:
    """An injectable ``connect``: opens FakeTransports on a bank, or fails to open."""

    OPEN_ERRORS = (
        lambda: OSError(errno.ENOENT, "No such file or directory: '/dev/ttyUSB0'"),
        lambda: serial.SerialException("could not open port /dev/ttyUSB0"),
        lambda: termios.error(5, "Input/output error"),
    )

    def __init__(
        self,
        bank: KerongBank,
        *,
        echo: bool | None = None,
        garbage: float | None = None,
        corrupt: float | None = None,
        seed: int = 1234,
        **transport_options,
    ) -> None:
        # The line's byte faults are the bank's knobs (None: leave the bank's as they are).
        for knob, value in (("echo", echo), ("garbage", garbage), ("corrupt", corrupt)):
            if value is not None:
                setattr(bank, knob, value)
        bank.rng.seed(seed)  # a noisy run replays
        self.bank = bank
        self.options = {"seed": seed, **transport_options}
        self.fail_next = 0
        self.unplugged = False
        self.hang = False
        self.attempts = 0
        self.transports: list[FakeTransport] = []

    async def __call__(self, factory):
        self.attempts += 1
        await asyncio.sleep(0)
        if self.hang:
            await asyncio.Event().wait()
        if self.unplugged or self.fail_next > 0:
            self.fail_next = max(self.fail_next - 1, 0)
            raise self.OPEN_ERRORS[self.attempts % len(self.OPEN_ERRORS)]()
        protocol = factory()
        transport = FakeTransport(self.bank, protocol, **self.options)
        protocol.connection_made(transport)
        self.transports.append(transport)
        return transport, protocol

    @property
    def transport(self) -> FakeTransport:
        return self.transports[-1]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, BoardStatus | None]] = []

    def __call__(self, board: int, status: BoardStatus | None) -> None:
        self.calls.append((board, status))

    def of(self, board: int) -> list[BoardStatus | None]:
        return [s for b, s in self.calls if b == board]


def expected(bank: KerongBank, board: int) -> BoardStatus:
    """What the bus must report for ``board``: the raw bits on the wire, polarity undone."""
    closed = tuple(bit == bool(bank.locked_bit) for bit in bank.lock_bits(board))
    return BoardStatus(board, closed, bank.item_bits(board))


TUNING = ("poll_retries", "offline_poll_interval_s", "reconnect_min_s", "reconnect_max_s")


def bus_config(boards, **changes) -> KerongBusConfig:
    """The tests' bus section, validated by the model the agent builds its buses from."""
    settings = {
        "name": "test",
        "port": "/dev/ttyFAKE",
        "boards": list(boards),
        "reply_timeout_s": 0.2,
        "poll_interval_s": 0.005,
        "rest_poll_interval_s": 0.005,  # always the wire's pace (the pace: test_kerong_pace.py)
        "pulse_s": 0.05,
        **changes,
    }
    return KerongBusConfig.model_validate(settings)


@pytest.fixture
async def make_bus():
    buses: list[KerongBus] = []

    def make(connect, boards, on_status, **options) -> KerongBus:
        tuning = {
            "poll_retries": 1,
            "offline_poll_interval_s": 0.05,
            "reconnect_min_s": 0.001,
            "reconnect_max_s": 0.01,
        }
        extra = {}
        config = {}
        for key, value in options.items():
            if key in (*TUNING, "silent_reopen_s"):
                tuning[key] = value
            elif key in ("on_health", "power_budget"):
                extra[key] = value
            else:
                config[key] = value
        bus = KerongBus(
            bus_config(boards, **config),
            on_status,
            connect=connect,
            tuning=BusTuning(**tuning),
            **extra,
        )
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


# --------------------------------------------------------------------- status


@pytest.mark.parametrize("locked_bit", [1, 0])
async def test_status_callbacks_fire_once_per_change(make_bus, locked_bit):
    bank = KerongBank([0, 1, 2], locked_bit=locked_bit)
    rec = Recorder()
    bus = make_bus(FakePort(bank), [0, 1, 2], rec, locked_bit=locked_bit)
    await bus.start()

    await eventually(lambda: len(rec.calls) == 3)
    assert sorted(rec.calls, key=lambda c: c[0]) == [(b, expected(bank, b)) for b in (0, 1, 2)]
    assert all(status.closed == (True,) * 16 for _, status in rec.calls)

    seen = bank.status_reads[1]
    await eventually(lambda: bank.status_reads[1] >= seen + 10)
    assert len(rec.calls) == 3  # nothing changed: no callback

    bank.force_open(1, 5)
    bank.set_item(1, 3, True)
    await eventually(lambda: len(rec.calls) == 4)
    board, status = rec.calls[3]
    assert board == 1
    assert status == expected(bank, 1)
    assert status.closed[4] is False and status.closed.count(False) == 1
    assert status.items[2] is True
    assert bus.status(1) == status

    seen = bank.status_reads[1]
    await eventually(lambda: bank.status_reads[1] >= seen + 10)
    assert len(rec.calls) == 4


VARIANTS = {
    "byte_by_byte": {"byte_by_byte": True},
    "delayed": {"delay": 0.005},
    "drop_20pct": {"drop": 0.2},
    "corrupt_and_garbage": {"corrupt": 0.2, "garbage": 0.3},
    "echo": {"echo": True},
    "echo_byte_by_byte_garbage": {"echo": True, "byte_by_byte": True, "garbage": 0.3},
    "reply_inside_write": {"sync": True},
}


@pytest.mark.parametrize("variant", VARIANTS)
async def test_noisy_lines_give_true_statuses_only(make_bus, variant):
    bank = KerongBank([0, 3])
    bank.force_open(3, 2)
    bank.set_item(3, 7, True)
    port = FakePort(bank, **VARIANTS[variant])
    rec = Recorder()
    bus = make_bus(port, [0, 3], rec, poll_retries=8, reply_timeout_s=0.03)
    genuine = {0: [expected(bank, 0)], 3: [expected(bank, 3)]}
    await bus.start()

    await eventually(lambda: bus.status(0) == genuine[0][0] and bus.status(3) == genuine[3][0])
    await eventually(lambda: bank.status_reads[0] >= 25)

    bank.force_open(0, 16)
    genuine[0].append(expected(bank, 0))
    await eventually(lambda: bus.status(0) == genuine[0][1])

    await bus.unlock(3, 6)
    assert codec.unlock_request(3, 6) in port.transport.written
    # The unlock opened door 6, and the polls went on during its pulse: a true status.
    genuine[3].append(expected(bank, 3))

    # Corrupted bytes, echoes and garbage never turn into a wrong status.
    for board, status in rec.calls:
        assert status is None or status in genuine[board]
    options = VARIANTS[variant]
    if options.get("drop"):
        assert port.transport.stats["dropped"] > 0
    if options.get("corrupt"):
        assert bank.faults["corrupted"] > 0
    if options.get("garbage"):
        assert bank.faults["garbage"] > 0


async def test_offline_after_retries_then_back(make_bus):
    bank = KerongBank([0, 1])
    bank.offline.add(1)
    requests_when_offline = []

    rec = Recorder()

    def on_status(board, status):
        rec(board, status)
        if board == 1 and status is None:
            requests_when_offline.append(port.transport.written.count(codec.status_request(1)))

    port = FakePort(bank)
    bus = make_bus(port, [0, 1], on_status, poll_retries=2, reply_timeout_s=0.02)
    await bus.start()

    await eventually(lambda: rec.of(1) == [None])
    assert requests_when_offline == [3]  # one try and two retries
    assert bus.status(1) is None

    # Still dead: polled now and then, never reported again.
    sent = port.transport.written.count(codec.status_request(1))
    await eventually(lambda: port.transport.written.count(codec.status_request(1)) >= sent + 3)
    assert rec.of(1) == [None]

    bank.offline.discard(1)
    await eventually(lambda: len(rec.of(1)) == 2)
    assert rec.of(1) == [None, expected(bank, 1)]
    assert rec.of(0) == [expected(bank, 0)]


async def test_offline_board_does_not_slow_the_others(make_bus):
    bank = KerongBank([0, 1])
    bank.offline.add(1)
    rec = Recorder()
    port = FakePort(bank)
    bus = make_bus(port, [0, 1], rec, reply_timeout_s=0.02, offline_poll_interval_s=60)
    await bus.start()

    await eventually(lambda: rec.of(1) == [None])
    asked_1 = port.transport.written.count(codec.status_request(1))
    asked_0 = bank.status_reads[0]
    await eventually(lambda: bank.status_reads[0] >= asked_0 + 30)
    assert port.transport.written.count(codec.status_request(1)) == asked_1


async def test_callback_exception_does_not_stop_polling(make_bus):
    bank = KerongBank([0])
    rec = Recorder()

    def on_status(board, status):
        rec(board, status)
        if len(rec.calls) == 1:
            raise RuntimeError("consumer bug")

    bus = make_bus(FakePort(bank), [0], on_status)
    await bus.start()
    await eventually(lambda: len(rec.calls) == 1)
    bank.force_open(0, 3)
    await eventually(lambda: len(rec.calls) == 2)
    assert rec.calls[1] == (0, expected(bank, 0))


# ------------------------------------------------------------------- commands


async def test_unlock_writes_the_exact_frames(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank)
    bus = make_bus(port, [0], Recorder(), poll_interval_s=0.05)
    await bus.start()
    await eventually(lambda: bus.connected)

    await bus.unlock(0, 6)  # returns without a reply: the board sends none to rely on
    await bus.unlock_all(0)
    written = port.transport.written
    assert bytes.fromhex("02 05 31 03 3B") in written
    assert bytes.fromhex("02 00 33 03 38") in written
    assert written.index(bytes.fromhex("02 05 31 03 3B")) < written.index(
        bytes.fromhex("02 00 33 03 38")
    )
    assert bank.unlocked == [(0, 6), (0, 0)]

    with pytest.raises(ValueError):
        await bus.unlock(0, 17)


async def test_commands_go_before_waiting_polls(make_bus):
    bank = KerongBank([0, 1, 2])
    port = FakePort(bank, hold=True)  # replies wait until release()
    bus = make_bus(port, [0, 1, 2], Recorder(), poll_interval_s=0.005, reply_timeout_s=WAIT)
    await bus.start()
    await eventually(lambda: port.transports and len(port.transport.written) == 1)
    transport = port.transport
    assert transport.written == [codec.status_request(0)]  # a poll is in flight

    read = asyncio.create_task(bus.read_status(1))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(transport.written) == 1  # one request on the wire at a time

    # The poll's reply comes; the waiting command goes next; the poll loop queues
    # its next poll (board 1) behind it, and it is due at once (poll_interval_s=0).
    transport.release(keep_holding=True)
    await eventually(lambda: len(transport.written) == 2)
    for _ in range(20):
        await asyncio.sleep(0)

    # A command that arrives after that poll was queued still goes before it.
    unlock = asyncio.create_task(bus.unlock(2, 6))
    for _ in range(20):
        await asyncio.sleep(0)
    transport.release()
    assert (await asyncio.wait_for(read, WAIT)) == expected(bank, 1)
    await asyncio.wait_for(unlock, WAIT)
    await eventually(lambda: len(transport.written) >= 4)
    assert transport.written[:4] == [
        codec.status_request(0),  # the poll that was in flight
        codec.status_request(1),  # read_status(1)
        codec.unlock_request(2, 6),  # the later command, ahead of the queued poll
        codec.status_request(1),  # the poll of board 1, which was waiting first
    ]


async def test_cancelled_unlock_still_holds_the_bus_for_its_wire_time(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank)
    rec = Recorder()
    # 1200 baud: an unlock frame takes 42 ms on the wire.
    bus = make_bus(port, [0], rec, baud=1200, poll_interval_s=5, reply_timeout_s=WAIT)
    await bus.start()
    await eventually(lambda: len(rec.calls) == 1)  # the first poll cycle is done
    written = port.transport.written
    unlock = asyncio.create_task(bus.unlock(0, 6))
    await eventually(lambda: codec.unlock_request(0, 6) in written)
    unlock.cancel()
    read = asyncio.create_task(bus.read_status(0))
    for _ in range(20):
        await asyncio.sleep(0)
    assert written[-1] == codec.unlock_request(0, 6)  # the read waits for the wire
    with pytest.raises(asyncio.CancelledError):
        await unlock
    assert await asyncio.wait_for(read, WAIT) == expected(bank, 0)
    assert written[-1] == codec.status_request(0)


async def test_read_status_timeout_then_bus_still_works(make_bus):
    bank = KerongBank([0, 1])
    bank.offline.add(1)
    port = FakePort(bank)
    bus = make_bus(port, [0, 1], Recorder(), reply_timeout_s=0.02)
    await bus.start()
    await eventually(lambda: bus.connected)

    with pytest.raises(BoardTimeout):
        await bus.read_status(1)
    assert await bus.read_status(0) == expected(bank, 0)
    await bus.unlock(0, 1)
    assert bank.unlocked == [(0, 1)]
    bank.offline.discard(1)
    assert await bus.read_status(1) == expected(bank, 1)


async def test_reopens_after_open_failures_and_unplug(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank)
    port.fail_next = 3  # ENOENT, SerialException, termios.error
    rec = Recorder()
    bus = make_bus(port, [0], rec)
    await bus.start()

    await eventually(lambda: bus.status(0) is not None)
    assert port.attempts == 4
    assert rec.calls == [(0, None), (0, expected(bank, 0))]  # None once while it failed

    port.unplugged = True
    port.transport.unplug(serial.SerialException("device reports readiness to read but ..."))
    await eventually(lambda: len(rec.calls) == 3)
    assert rec.calls[2] == (0, None)
    assert not bus.connected
    with pytest.raises(BusUnavailable):
        await bus.unlock(0, 1)
    attempts = port.attempts
    await eventually(lambda: port.attempts >= attempts + 3)  # keeps trying
    assert len(rec.calls) == 3

    port.unplugged = False
    await eventually(lambda: len(rec.calls) == 4)
    assert rec.calls[3] == (0, expected(bank, 0))
    assert bus.connected
    await bus.unlock(0, 1)
    assert bank.unlocked == [(0, 1)]


async def test_pending_request_fails_when_connection_is_lost(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank, hold=True)
    bus = make_bus(
        port, [0], Recorder(), reply_timeout_s=WAIT, reconnect_min_s=1, reconnect_max_s=1
    )
    await bus.start()
    await eventually(lambda: port.transports and port.transport.written)
    read = asyncio.create_task(bus.read_status(0))
    await asyncio.sleep(0)
    port.transport.unplug(OSError(errno.EIO, "Input/output error"))
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(read, WAIT)


async def test_reply_right_before_connection_loss_is_not_reported(make_bus):
    """A reply that arrived just before the port vanished must not make the board look
    online while the port is gone."""
    bank = KerongBank([0])
    port = FakePort(bank, sync=True)

    def vanish(transport):
        port.unplugged = True
        transport.closing = True
        transport.protocol.connection_lost(OSError(errno.EIO, "Input/output error"))

    real_call = port.__call__

    class FirstTransportVanishes:
        async def __call__(self, factory):
            transport, protocol = await real_call(factory)
            if len(port.transports) == 1:
                transport.on_write = vanish
            return transport, protocol

    rec = Recorder()
    bus = make_bus(FirstTransportVanishes(), [0], rec)
    await bus.start()
    await eventually(lambda: port.unplugged and port.attempts >= 3)
    assert rec.calls == [(0, None)]
    assert bus.status(0) is None

    port.unplugged = False
    await eventually(lambda: len(rec.calls) == 2)
    assert rec.calls[1] == (0, expected(bank, 0))


async def test_write_error_reopens_the_port(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank)
    rec = Recorder()
    bus = make_bus(port, [0], rec)
    await bus.start()
    await eventually(lambda: len(rec.calls) == 1)
    port.transport.fail_next_write = termios.error(5, "Input/output error")
    await eventually(lambda: len(port.transports) == 2 and len(rec.calls) == 3)
    assert rec.calls == [(0, expected(bank, 0)), (0, None), (0, expected(bank, 0))]


async def test_close_is_prompt_and_idempotent(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank, hold=True)  # a poll waits for a reply that never comes
    bus = make_bus(port, [0], Recorder(), reply_timeout_s=WAIT)
    await bus.start()
    await eventually(lambda: port.transports and port.transport.written)
    read = asyncio.create_task(bus.read_status(0))
    await asyncio.sleep(0)

    await asyncio.wait_for(bus.close(), WAIT)
    assert port.transport.is_closing()
    assert not bus.connected
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(read, WAIT)
    await asyncio.wait_for(bus.close(), WAIT)
    with pytest.raises(BusUnavailable):
        await bus.unlock(0, 1)
    with pytest.raises(RuntimeError):
        await bus.start()


async def test_close_while_opening_hangs(make_bus):
    port = FakePort(KerongBank([0]))
    port.hang = True
    bus = make_bus(port, [0], Recorder())
    await bus.start()
    await eventually(lambda: port.attempts == 1)
    await asyncio.wait_for(bus.close(), WAIT)


async def test_close_before_start(make_bus):
    bus = make_bus(FakePort(KerongBank([0])), [0], Recorder())
    await asyncio.wait_for(bus.close(), WAIT)


# ------------------------------------------------------------ real endpoints


class PtyBoards:
    """A board bank on the master side of a real pseudo-terminal."""

    def __init__(self, bank: KerongBank) -> None:
        self.bank = bank
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.received = b""
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self.received += data
        reply = self.bank.feed(data)
        if reply:
            os.write(self.master, reply)

    def close(self) -> None:
        self.loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


async def test_real_pty_with_default_connect():
    bank = KerongBank([0, 1])
    boards = PtyBoards(bank)
    rec = Recorder()
    config = bus_config([0, 1], port=boards.path, reply_timeout_s=0.5, poll_interval_s=0.01)
    bus = KerongBus(config, rec)
    try:
        await bus.start()
        await eventually(lambda: len(rec.calls) == 2)
        assert sorted(rec.calls, key=lambda c: c[0]) == [
            (0, expected(bank, 0)),
            (1, expected(bank, 1)),
        ]

        await bus.unlock(0, 6)
        await eventually(lambda: bus.status(0) == expected(bank, 0) and rec.calls[-1][0] == 0)
        assert bytes.fromhex("02 05 31 03 3B") in boards.received
        assert bank.unlocked == [(0, 6)]
        assert bus.status(0).closed[5] is False
    finally:
        await asyncio.wait_for(bus.close(), WAIT)
        boards.close()


async def test_real_pty_unplugged_and_replugged(tmp_path):
    """Closing the master makes the slave read fail like a hot-unplugged USB adapter;
    the bus reports the board unknown, retries, and reopens once the by-id style
    symlink points at a live port again."""
    bank = KerongBank([0])
    link = tmp_path / "usb-FTDI_RS485-if00-port0"
    first = PtyBoards(bank)
    link.symlink_to(first.path)
    rec = Recorder()
    bus = KerongBus(
        bus_config([0], port=str(link), reply_timeout_s=0.5, poll_interval_s=0.01),
        rec,
        tuning=BusTuning(reconnect_min_s=0.01, reconnect_max_s=0.05),
    )
    second = None
    try:
        await bus.start()
        await eventually(lambda: len(rec.calls) == 1)

        link.unlink()
        first.close()
        await eventually(lambda: len(rec.calls) == 2)
        assert rec.calls[1] == (0, None)
        await asyncio.sleep(0.1)  # a few failed reopen attempts
        assert not bus.connected
        with pytest.raises(BusUnavailable):
            await bus.unlock(0, 1)

        second = PtyBoards(bank)
        link.symlink_to(second.path)
        await eventually(lambda: len(rec.calls) == 3)
        assert rec.calls[2] == (0, expected(bank, 0))
    finally:
        await asyncio.wait_for(bus.close(), WAIT)
        if second is not None:
            second.close()


async def test_real_tcp_socket_url_and_reconnect():
    """pyserial's socket:// URL (a TCP serial gateway) with the default connect, which
    passes exclusive=True; the gateway dropping the link makes the bus reconnect."""
    bank = KerongBank([2])
    connections: list[asyncio.StreamWriter] = []
    handlers_done: list[asyncio.Event] = []

    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        done = asyncio.Event()
        handlers_done.append(done)
        try:
            while data := await reader.read(1024):
                writer.write(bank.feed(data))
        except ConnectionError:
            pass
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rec = Recorder()
    bus = KerongBus(
        bus_config([2], port=f"socket://127.0.0.1:{port}", poll_interval_s=0.01),
        rec,
        tuning=BusTuning(reconnect_min_s=0.01, reconnect_max_s=0.05),
    )
    assert bus.clock.timeout_s == 0.2  # configured; a socket:// default would be 0.5
    try:
        await bus.start()
        await eventually(lambda: rec.calls == [(2, expected(bank, 2))])
        connections[0].close()
        await eventually(lambda: len(rec.calls) == 3)
        assert rec.calls[1:] == [(2, None), (2, expected(bank, 2))]
        assert len(connections) == 2
    finally:
        await asyncio.wait_for(bus.close(), WAIT)
        server.close()
        await server.wait_closed()
        for done in handlers_done:
            await asyncio.wait_for(done.wait(), WAIT)


async def test_a_silent_link_that_looks_open_is_reopened(make_bus):
    # A TCP gateway that hangs keeps its socket open but answers nothing.
    bank = KerongBank([0, 1])
    port = FakePort(bank)
    rec = Recorder()
    bus = make_bus(port, [0, 1], rec, silent_reopen_s=0.2)
    await bus.start()
    await eventually(lambda: bus.status(0) is not None and bus.status(1) is not None)
    bank.offline = {0, 1}
    await eventually(lambda: len(port.transports) >= 2)  # given up on, reopened
    assert port.transports[0].closing
    bank.offline = set()
    await eventually(lambda: bus.status(0) is not None)


async def test_one_silent_board_does_not_reopen_the_port(make_bus):
    bank = KerongBank([0, 1])
    port = FakePort(bank)
    bus = make_bus(port, [0, 1], Recorder(), silent_reopen_s=0.1)
    await bus.start()
    await eventually(lambda: bus.status(0) is not None)
    bank.offline = {1}
    await asyncio.sleep(0.5)
    assert len(port.transports) == 1


# ------------------------------------------------------------- power budget

# Lower bounds only; a slow machine makes the gaps longer, never shorter.
PULSE = 0.2


class TimedBank(KerongBank):
    """A KerongBank that notes when each unlock frame arrives (loop time)."""

    def __init__(self, boards) -> None:
        super().__init__(boards)
        self.unlock_times: list[tuple[float, int, int]] = []

    def feed(self, data: bytes) -> bytes:
        before = len(self.unlocked)
        out = super().feed(data)
        now = asyncio.get_running_loop().time()
        self.unlock_times += [(now, b, c) for b, c in self.unlocked[before:]]
        return out


async def started(make_bus, bank, **options) -> KerongBus:
    bus = make_bus(FakePort(bank), bank.boards, Recorder(), **options)
    await bus.start()
    await eventually(lambda: bus.ready and bus.connected)
    return bus


async def test_unlock_holds_a_power_slot_for_its_pulse_while_polls_go_on(make_bus):
    bank = TimedBank([0])
    bus = await started(make_bus, bank, pulse_s=PULSE, max_concurrent=1, stagger_s=0)
    loop = asyncio.get_running_loop()

    first = asyncio.create_task(bus.unlock(0, 1))
    await eventually(lambda: len(bank.unlock_times) == 1)
    assert bus.budget.in_use == 1
    second = asyncio.create_task(bus.unlock(0, 2))
    polls = bank.status_reads[0]
    await eventually(lambda: bank.status_reads[0] >= polls + 10)  # the bus is not held
    assert len(bank.unlock_times) == 1  # the second unlock waits for the slot
    # A command does not wait behind the unlock that waits for power either.
    async with asyncio.timeout(PULSE / 2):
        await bus.read_status(0)

    async with asyncio.timeout(WAIT):
        await first
    done_first = loop.time()
    async with asyncio.timeout(WAIT):
        await second
    (t1, _, c1), (t2, _, c2) = bank.unlock_times
    assert (c1, c2) == (1, 2)
    assert t2 - t1 >= PULSE
    assert done_first - t1 >= PULSE  # unlock returns when the board let the lock go
    assert bus.budget.in_use == 0


async def test_starts_are_staggered_within_max_concurrent(make_bus):
    bank = TimedBank([0])
    bus = await started(make_bus, bank, pulse_s=PULSE, max_concurrent=2, stagger_s=0.05)
    async with asyncio.timeout(WAIT):
        await asyncio.gather(bus.unlock(0, 1), bus.unlock(0, 2), bus.unlock(0, 3))
    t1, t2, t3 = (t for t, _, _ in bank.unlock_times)
    assert t2 - t1 >= 0.05 - 1e-3 and t2 - t1 < PULSE  # two at once, spaced
    assert t3 - t1 >= PULSE  # the third waits for the first to end


async def test_buses_on_one_supply_share_its_budget(make_bus):
    from drivers.power import PowerBudget

    budget = PowerBudget(1, 0)
    banks = [TimedBank([0]), TimedBank([0])]
    buses = [
        await started(make_bus, bank, pulse_s=PULSE, power_budget=budget, name=f"bus{i}")
        for i, bank in enumerate(banks)
    ]
    assert buses[0].budget is buses[1].budget is budget
    async with asyncio.timeout(WAIT):
        await asyncio.gather(buses[0].unlock(0, 1), buses[1].unlock(0, 1))
    (t_a, _, _), (t_b, _, _) = banks[0].unlock_times + banks[1].unlock_times
    assert abs(t_b - t_a) >= PULSE


async def test_cancelled_mid_pulse_the_slot_stays_taken_until_the_pulse_ends(make_bus):
    bank = TimedBank([0])
    bus = await started(make_bus, bank, pulse_s=PULSE, max_concurrent=1, stagger_s=0)
    loop = asyncio.get_running_loop()
    unlock = asyncio.create_task(bus.unlock(0, 1))
    await eventually(lambda: bank.unlock_times)
    unlock.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unlock
    assert bus.budget.in_use == 1  # the coil is still energised
    async with asyncio.timeout(WAIT):
        await bus.unlock(0, 2)
    (t1, _, _), (t2, _, _) = bank.unlock_times
    assert t2 - t1 >= PULSE
    await eventually(lambda: bus.budget.in_use == 0)
    assert loop.time() - t1 >= PULSE


async def test_cancelled_while_waiting_for_power_sends_nothing(make_bus):
    bank = TimedBank([0])
    bus = await started(make_bus, bank, pulse_s=PULSE, max_concurrent=1, stagger_s=0)
    first = asyncio.create_task(bus.unlock(0, 1))
    await eventually(lambda: bank.unlock_times)
    waiting = asyncio.create_task(bus.unlock(0, 2))
    await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    async with asyncio.timeout(WAIT):
        await first
    await asyncio.sleep(PULSE / 2)
    assert bank.unlocked == [(0, 1)]  # no door opened for a caller that gave up
    assert bus.budget.in_use == 0


async def test_unlock_on_a_closed_port_frees_its_slot_at_once(make_bus):
    bus = make_bus(FakePort(KerongBank([0])), [0], Recorder(), pulse_s=PULSE)
    with pytest.raises(BusUnavailable):
        await bus.unlock(0, 1)  # never started: no port
    assert bus.budget.in_use == 0


def test_the_bus_takes_only_a_validated_config():
    # The bounds are the config model's, checked once: a bus cannot be built around them.
    with pytest.raises(ValidationError, match="pulse_s"):
        bus_config([0], pulse_s=0)
    with pytest.raises(ValidationError, match="poll_interval_s"):
        bus_config([0], poll_interval_s=0.0)
    with pytest.raises(ValueError, match="poll_retries"):
        BusTuning(poll_retries=-1)
    bus = KerongBus(bus_config([0, 3]), Recorder())
    assert (bus.name, bus.boards, bus.clock.timeout_s) == ("test", (0, 3), 0.2)


def test_wire_cycle_is_the_protocol_documents():
    # kerong-cu16.md: a status read is 5 + 9 bytes, about 7.3 ms at 19200 8N1.
    assert wire_cycle_s(1, 19200) == pytest.approx(0.00729, abs=1e-5)
    assert wire_cycle_s(10, 19200) == pytest.approx(0.0729, abs=1e-4)
    assert wire_cycle_s(3, 9600) == pytest.approx(3 * 14 * 10 / 9600)
    assert wire_cycle_s(0, 19200) == 0


# ------------------------------------------------------------------- health


async def test_health_silent_boards_and_readiness(make_bus):
    bank = KerongBank([0, 1, 2])
    bank.offline.add(1)
    events: list[tuple[str, int, object]] = []
    bus = make_bus(
        FakePort(bank),
        [0, 1, 2],
        lambda board, status: events.append(("status", board, status)),
        on_health=lambda board, online: events.append(("health", board, online)),
        reply_timeout_s=0.02,
    )
    assert not bus.ready and bus.silent_boards() == [] and not bus.connected
    await bus.start()
    async with asyncio.timeout(WAIT):
        await bus.wait_ready()
    assert bus.ready and bus.connected
    assert bus.silent_boards() == [1]
    # A board first heard online says nothing about health; one going silent does,
    # after its (unknown) status.
    assert [e for e in events if e[1] == 1] == [("status", 1, None), ("health", 1, False)]
    assert [e[0] for e in events if e[1] in (0, 2)] == ["status", "status"]

    bank.offline.discard(1)
    await eventually(lambda: ("health", 1, True) in events)
    assert events[-2:] == [("status", 1, expected(bank, 1)), ("health", 1, True)]
    assert bus.silent_boards() == []


async def test_health_when_the_port_goes_away(make_bus):
    bank = KerongBank([0, 1])
    port = FakePort(bank)
    online: list[tuple[int, bool]] = []
    bus = make_bus(port, [0, 1], Recorder(), on_health=lambda b, up: online.append((b, up)))
    await bus.start()
    async with asyncio.timeout(WAIT):
        await bus.wait_ready()
    port.unplugged = True
    port.transport.unplug(OSError(errno.EIO, "Input/output error"))
    await eventually(lambda: bus.silent_boards() == [0, 1])
    assert not bus.connected and bus.ready  # ready once, ready for good
    assert sorted(online) == [(0, False), (1, False)]
    port.unplugged = False
    await eventually(lambda: bus.silent_boards() == [] and len(online) == 4)
    assert sorted(online[2:]) == [(0, True), (1, True)]


async def test_a_bus_that_cannot_open_is_ready_with_every_board_silent(make_bus):
    port = FakePort(KerongBank([0, 4]))
    port.unplugged = True
    bus = make_bus(port, [0, 4], Recorder())
    await bus.start()
    async with asyncio.timeout(WAIT):
        await bus.wait_ready()
    assert bus.silent_boards() == [0, 4] and not bus.connected


# ----------------------------------------------------------- health hysteresis


class FlappingBank(KerongBank):
    """Board 1 answers ``answer`` status polls, then misses ``miss``, and again."""

    def __init__(self, boards, answer: int, miss: int) -> None:
        super().__init__(boards)
        self.pattern = [True] * answer + [False] * miss
        self.polls = 0

    def feed(self, data: bytes) -> bytes:
        if data == codec.status_request(1):
            answers = self.pattern[self.polls % len(self.pattern)]
            self.polls += 1
            if not answers:
                return b""
        return super().feed(data)


async def test_a_board_that_answers_two_and_misses_two_is_not_flapped_offline(make_bus):
    """The field's flapping board: two answers, two misses. With offline after three
    missed polls in a row, its doors never flicker to unknown and nothing is reported."""
    bank = FlappingBank([0, 1], answer=2, miss=2)
    rec = Recorder()
    health = []
    port = FakePort(bank)
    bus = make_bus(
        port,
        [0, 1],
        rec,
        poll_retries=0,
        # A USB adapter's default: at 0.01 s a loaded host's late answers were misses,
        # and three in a row took a board offline (board 0, which always answers).
        reply_timeout_s=0.1,
        offline_after=3,
        on_health=lambda board, online: health.append((board, online)),
    )
    await bus.start()
    await eventually(lambda: bank.polls >= 40)
    assert None not in rec.of(1)
    assert health == []
    assert bus.silent_boards() == []


async def test_silent_after_a_run_of_misses_back_after_a_run_of_answers(make_bus):
    bank = FlappingBank([0, 1], answer=1, miss=3)  # never two answers in a row
    rec = Recorder()
    port = FakePort(bank)
    bus = make_bus(
        port,
        [0, 1],
        rec,
        poll_retries=0,
        reply_timeout_s=0.01,
        offline_after=3,
        online_after=2,
        offline_poll_interval_s=0.001,
    )
    await bus.start()
    await eventually(lambda: None in rec.of(1))
    polls = bank.polls
    await eventually(lambda: bank.polls >= polls + 20)
    assert rec.of(1)[-1] is None  # one answer in four never counts as back
    bank.pattern = [True]  # answers every poll now
    await eventually(lambda: rec.of(1)[-1] is not None)
    assert bus.silent_boards() == []


# ---------------------------------------------------- late replies (break review)


async def test_a_late_reply_is_not_taken_for_the_next_read_of_the_same_board(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank)
    bus = make_bus(port, [0], Recorder(), reply_timeout_s=0.02, poll_interval_s=5)
    await bus.start()
    await eventually(lambda: bus.status(0) is not None)  # next poll in 60 s
    # The board answers half a timeout late: the timeout the bus has now (a loaded
    # host's first replies are slow, and the reply clock rightly learned from them).
    port.transport.delay = bus.clock.timeout_s * 1.5
    with pytest.raises(BoardTimeout):
        await bus.read_status(0)  # its reply ("all shut") is still on the line
    bank.force_open(0, 4)
    try:
        status = await bus.read_status(0)
    except BoardTimeout:
        return  # fine: no answer in time
    assert status == expected(bank, 0)  # not door 4 "shut", the late reply


async def test_a_cancelled_reads_reply_is_not_taken_for_the_next(make_bus):
    bank = KerongBank([0])
    port = FakePort(bank)
    bus = make_bus(port, [0], Recorder(), poll_interval_s=5)
    await bus.start()
    await eventually(lambda: bus.status(0) is not None)
    port.transport.delay = 0.01
    read = asyncio.create_task(bus.read_status(0))
    await eventually(lambda: len(port.transport.written) >= 2)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    bank.force_open(0, 4)
    assert await bus.read_status(0) == expected(bank, 0)


async def test_a_timed_out_boards_retry_waits_behind_the_others(make_bus):
    """The retry of a board that timed out waits until its late reply can no longer
    come (here: until another board's later read was answered, since one wire keeps its
    replies in order), and the other boards are polled meanwhile instead of waiting."""
    bank = KerongBank([0, 1])
    bank.offline.add(0)
    port = FakePort(bank)
    bus = make_bus(port, [0, 1], Recorder(), reply_timeout_s=0.05, poll_retries=1)
    await bus.start()
    await eventually(lambda: bus.silent_boards() == [0])
    written = port.transport.written
    first = written.index(codec.status_request(0))
    retry = written.index(codec.status_request(0), first + 1)
    assert written[first + 1 : retry].count(codec.status_request(1)) >= 1
    assert bus.counts[(0, "lost")] >= 1  # its reply was known lost, not waited out


# ------------------------------------------------ two boards on one address


class TwinBanks(KerongBank):
    """Two boards left on address 0, with different doors: both answer every request,
    in a random order."""

    __slots__ = ("other",)

    def feed(self, data: bytes) -> bytes:
        first, second = super().feed(data), self.other.feed(data)
        return first + second if self.rng.random() < 0.5 else second + first


async def test_two_boards_on_one_address_do_not_flap_the_doors(make_bus):
    bank = TwinBanks([0], seed=1)
    bank.other = KerongBank([0])
    bank.other.force_open(0, 3)  # the twin's door 3 is open, the first board's is shut
    rec = Recorder()
    bus = make_bus(FakePort(bank), [0], rec)
    with structlog.testing.capture_logs() as logs:
        await bus.start()
        await eventually(lambda: bank.status_reads[0] >= 100)
    # Reported once (whichever answered first), then held: no door flaps open/shut.
    assert rec.of(0) in ([expected(bank, 0)], [expected(bank.other, 0)])
    assert bus.counts[(0, "twins")] >= 99
    twins = [e for e in logs if e["event"] == "kerong.twin_reply"]
    assert len(twins) == 1 and twins[0]["board"] == 0 and twins[0]["held"]


async def test_twins_that_agree_are_counted_and_their_changes_still_reported(make_bus):
    bank = KerongBank([0, 1])
    bank.twins.add(1)  # the emulator's twin answers the very same bytes
    rec = Recorder()
    bus = make_bus(FakePort(bank), [0, 1], rec)
    await bus.start()
    await eventually(lambda: bus.counts[(1, "twins")] >= 5)
    assert bus.counts[(0, "twins")] == 0
    bank.force_open(1, 2)
    await eventually(lambda: bus.status(1) == expected(bank, 1))
    assert rec.of(1)[-1].closed[1] is False


# ----------------------------------------------------- corrupted past the sum


class OneBadReply(KerongBank):
    """Reply 20 has two bit errors whose sums cancel: lock 1 drops, item 1 rises."""

    __slots__ = ("n",)

    def feed(self, data: bytes) -> bytes:
        out = super().feed(data)
        if out:
            self.n = getattr(self, "n", 0) + 1
            if self.n == 20:
                out = bytes((*out[:3], out[3] ^ 1, out[4], out[5] ^ 1, *out[6:]))
        return out


async def test_a_checksum_passing_two_bit_corruption_is_not_a_door_opening(make_bus):
    bank = OneBadReply([0])
    rec = Recorder()
    bus = make_bus(FakePort(bank), [0], rec)
    await bus.start()
    await eventually(lambda: bank.status_reads[0] >= 40)
    assert rec.of(0) == [expected(bank, 0)]  # not shut, OPEN, shut


async def test_a_change_of_two_doors_at_once_is_reported_once_confirmed(make_bus):
    bank = KerongBank([0])
    rec = Recorder()
    bus = make_bus(FakePort(bank), [0], rec, poll_interval_s=5)
    await bus.start()
    await eventually(lambda: len(rec.calls) == 1)
    bank.force_open(0, 1)
    bank.force_open(0, 9)
    reads = bank.status_reads[0]
    assert await bus.read_status(0) == expected(bank, 0)
    assert bank.status_reads[0] == reads + 2  # read twice: a real change
    assert rec.calls[1:] == [(0, expected(bank, 0))]
    bank.shut_door(0, 1)
    reads = bank.status_reads[0]
    await bus.read_status(0)
    assert bank.status_reads[0] == reads + 1  # one door: no read added


# ------------------------------------------------------ idle, stagger, unlock


async def test_a_bus_whose_boards_are_all_silent_does_not_spin(make_bus):
    # (A bus without boards cannot be configured: KerongBusConfig wants one.)
    bank = KerongBank([0])
    bank.offline.add(0)
    bus = make_bus(
        FakePort(bank), [0], Recorder(), reply_timeout_s=0.02, offline_poll_interval_s=0.5
    )
    cycles = 0
    check = bus._check_liveness

    def counted(now: float) -> None:
        nonlocal cycles
        cycles += 1
        check(now)

    bus._check_liveness = counted
    await bus.start()
    await eventually(lambda: bus.connected and cycles >= 1)
    began, seen = time.monotonic(), cycles
    await asyncio.sleep(0.3)
    # A slow machine only makes fewer cycles; a spinning loop makes thousands.
    assert cycles - seen <= (time.monotonic() - began) / 0.1 + 2
    assert bus.polling(stall_s=WAIT)


async def test_stagger_holds_on_the_wire_when_the_first_unlock_waits_for_the_bus(make_bus):
    bank = KerongBank([0, 1])
    loop = asyncio.get_running_loop()
    starts = []
    bank.on_pulse = lambda b, c: starts.append(loop.time())
    port = FakePort(bank)
    bus = make_bus(
        port,
        [0, 1],
        Recorder(),
        reply_timeout_s=0.1,
        poll_retries=0,
        offline_after=100,
        pulse_s=0.5,
        max_concurrent=2,
        stagger_s=0.1,
    )
    await bus.start()
    await eventually(lambda: bus.status(1) is not None)
    bank.offline.add(1)  # each poll of board 1 now holds the bus 100 ms
    sent = len(port.transport.written)
    await eventually(
        lambda: (
            len(port.transport.written) > sent
            and port.transport.written[-1] == codec.status_request(1)
        )
    )
    await asyncio.gather(bus.unlock(0, 1), bus.unlock(0, 2))
    assert starts[1] - starts[0] >= 0.1 - 0.005  # was 6 ms: both behind the same poll


async def test_an_unlocked_board_is_read_when_its_pulse_ends_whatever_the_interval(make_bus):
    """At poll_interval_s 5 an open door was seen up to 5 s late, past the agent's
    confirm window; the board is read as soon as the pulse is over."""
    bank = KerongBank([0])
    rec = Recorder()
    bus = make_bus(FakePort(bank), [0], rec, poll_interval_s=5, pulse_s=0.05)
    await bus.start()
    await eventually(lambda: len(rec.calls) == 1)  # the next cycle is 60 s away
    reads = bank.status_reads[0]
    await bus.unlock(0, 1)
    await eventually(lambda: bus.status(0).closed[0] is False)
    assert bank.status_reads[0] == reads + 1  # one read, not a cycle
    assert rec.calls[-1] == (0, expected(bank, 0))
