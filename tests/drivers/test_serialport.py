"""The lean serial transport (drivers/serialport.py) and the link over it: a real
pseudo-terminal and a real loopback socket, bytes split, garbage between frames,
dropped bytes, writes the kernel takes only in part, a hang-up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import socket
import tty

import pytest

from drivers.kerong import codec
from drivers.kerong.link import Link
from drivers.serialport import SerialTransport, open_port

WAIT = 5.0  # only bounds how long a broken test hangs

REPLY_0 = codec.status_reply(0, (True,) * 16, (False,) * 16)
REPLY_1 = codec.status_reply(1, (False,) + (True,) * 15, (True,) + (False,) * 15)


async def eventually(predicate, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    tty.setraw(master)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    os.close(slave)  # the transport opens its own
    yield master, path
    with contextlib.suppress(OSError):
        os.close(master)


class Events:
    def __init__(self) -> None:
        self.frames: list[codec.Frame] = []
        self.opened = 0
        self.lost: list[Exception] = []
        self.down = 0


def make_link(port: str, events: Events) -> Link:
    return Link(
        port,
        19200,
        name="test",
        connect=None,  # the real one: open_port
        reconnect_min_s=0.01,
        reconnect_max_s=0.05,
        silent_reopen_s=60,
        on_frame=events.frames.append,
        on_open=lambda: setattr(events, "opened", events.opened + 1),
        on_lost=events.lost.append,
        on_down=lambda: setattr(events, "down", events.down + 1),
    )


async def test_split_bytes_and_garbage_come_out_as_the_frames_sent(pty_pair):
    master, path = pty_pair
    events = Events()
    link = make_link(path, events)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.up.wait(), WAIT)
        garbage = b"\x00\xff\x13"
        # A reply byte by byte, garbage, a reply missing its last byte (dropped), a reply
        # split in two across reads.
        stream = [REPLY_0[i : i + 1] for i in range(len(REPLY_0))]
        stream += [garbage, REPLY_1[:-1], REPLY_0[:4], REPLY_0[4:], REPLY_1]
        for chunk in stream:
            os.write(master, chunk)
            await asyncio.sleep(0.002)  # separate reads on the host's side
        await eventually(lambda: len(events.frames) == 3)
        assert [f.raw for f in events.frames] == [REPLY_0, REPLY_0, REPLY_1]
        # The garbage and the truncated reply were dropped while resynchronising.
        assert link.bad_bytes >= len(garbage) + 1
    finally:
        task.cancel()
        link.close()
        await asyncio.gather(task, return_exceptions=True)
        await link.wait_closed()


async def test_writes_reach_the_line_and_a_hang_up_is_a_lost_port(pty_pair):
    master, path = pty_pair
    events = Events()
    link = make_link(path, events)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.up.wait(), WAIT)
        assert isinstance(link.transport, SerialTransport)
        link.transport.write(codec.status_request(3))
        got = bytearray()

        def read() -> bool:
            with contextlib.suppress(BlockingIOError):
                got.extend(os.read(master, 64))
            return bytes(got) == codec.status_request(3)

        await eventually(read)
        os.close(master)  # the other end goes: the host's reads fail (EIO)
        await eventually(lambda: events.lost and events.down)
        assert not link.up.is_set()
    finally:
        task.cancel()
        link.close()
        await asyncio.gather(task, return_exceptions=True)
        await link.wait_closed()


async def test_a_write_the_kernel_takes_in_part_is_finished_in_order(pty_pair):
    master, path = pty_pair
    received: list[bytes] = []

    class Sink(asyncio.Protocol):
        def connection_lost(self, exc):
            received.append(b"<lost>")

    transport, _ = await open_port(path, 19200, Sink)
    try:
        big = bytes(range(256)) * 512  # 128 KiB: more than a pty's buffer
        transport.write(big)
        transport.write(b"tail")
        assert transport.get_write_buffer_size() > 0  # the kernel took only part
        out = bytearray()

        def drain() -> bool:
            with contextlib.suppress(BlockingIOError):
                out.extend(os.read(master, 65536))
            return len(out) >= len(big) + 4

        await eventually(drain)
        assert bytes(out) == big + b"tail"
        await eventually(lambda: transport.get_write_buffer_size() == 0)
    finally:
        transport.close()
    await eventually(lambda: received == [b"<lost>"])


async def test_a_socket_gateway_port_works_through_the_link():
    server_side: list[socket.socket] = []
    accepted = asyncio.Event()

    async def on_client(reader, writer):
        server_side.append(writer)
        accepted.set()
        await reader.read()  # until the link closes

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events = Events()
    link = make_link(f"socket://127.0.0.1:{port}", events)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.up.wait(), WAIT)
        await asyncio.wait_for(accepted.wait(), WAIT)
        writer = server_side[0]
        writer.write(REPLY_1[:3])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(REPLY_1[3:] + REPLY_0)
        await writer.drain()
        await eventually(lambda: len(events.frames) == 2)
        assert [f.raw for f in events.frames] == [REPLY_1, REPLY_0]
    finally:
        task.cancel()
        link.close()
        await asyncio.gather(task, return_exceptions=True)
        await link.wait_closed()
        server.close()
        await server.wait_closed()


async def test_a_port_without_a_file_descriptor_is_refused_clearly():
    with pytest.raises(ValueError, match="no file descriptor"):
        await open_port("loop://", 19200, asyncio.Protocol)


async def test_close_then_abort_tells_the_protocol_once(pty_pair):
    _, path = pty_pair
    lost: list[object] = []

    class Sink(asyncio.Protocol):
        def connection_lost(self, exc):
            lost.append(exc)

    transport, _ = await open_port(path, 19200, Sink)
    transport.close()
    transport.abort()
    assert transport.is_closing()
    await asyncio.sleep(0.05)
    assert lost == [None]
    transport.write(b"ignored once closing")  # no error, nothing written
