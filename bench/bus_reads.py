"""Board reads per second, and the bus-wide status (0x32) against per-board reads.

1. The Kerong driver (``drivers.kerong.bus.KerongBus``, as the agent runs it) polling
   with no pause and its wire pacing off against the emulator answering at once: the
   driver's own ceiling, and what one read costs this process in CPU; then as the
   agent runs it (paced) against the emulator held to the wire's pace. The wire limit
   (``shared/protocols/kerong-cu16.md``): 7.3 ms a read, about 137 reads a second.
2. A board that misses some requests among boards that answer: its reads a second
   against a steady board's (what a miss costs it: timeout, late-reply wait, resync).
3. One sweep of every board, either as N status reads (0x30, one reply each) or as
   one bus-wide status (0x32 to 0xF0, every board answers 0x36), over the pty with
   the driver's codec. The emulator and the protocol document agree on the frames
   and on who answers; neither says how long a real board waits before its 0x36
   (boards must take turns on the wire), so the wire figure for 0x32 is a floor:
   5 + 9 N bytes against 14 N.

Run: .venv/bin/python bench/bus_reads.py [--seconds 5]
(prints figures; asserts nothing). The emulator runs in this process: the CPU per
read printed for (1) is the driver's and the emulator's together.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _rig import BYTE_S, READ_S, machine

from drivers.kerong import codec
from drivers.kerong.bus import KerongBus, KerongBusConfig
from drivers.serialport import open_port
from simulator.kerong_board import KerongBoardEmulator


async def driver_reads(boards: int, seconds: float, wire: bool) -> tuple[float, float]:
    """(reads a second, CPU microseconds a read) of a KerongBus polling back to back."""
    emulator = KerongBoardEmulator(range(boards), has_items=False)
    if wire:
        emulator.reply_delay_s = READ_S
    await emulator.start()
    config = KerongBusConfig(name="bench", port=emulator.port, boards=list(range(boards)))
    bus = KerongBus(config, lambda b, s: None)
    await bus.start()
    try:
        await asyncio.wait_for(bus.wait_ready(), 5)
        if not wire:
            # NOTE: the driver's wire pacing off (the poller paces by the baud it was given,
            # once the port is open at the real one): its own ceiling.
            bus._poller._baud = 10**12
            bus._poller._poll_interval_s = 0.0  # under the config's bound: a bench only
        await asyncio.sleep(0.2)  # warm-up
        before = sum(emulator.bank.status_reads.values())
        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
        reads = sum(emulator.bank.status_reads.values()) - before
    finally:
        await bus.close()
        await emulator.close()
    return reads / elapsed, cpu / max(reads, 1) * 1e6


async def missing_board_reads(seconds: float, miss_every: int) -> tuple[float, float, int]:
    """A board that misses one request in ``miss_every`` (the rest answered), among 3
    boards read back to back at the wire's pace: (its reads a second, a steady board's,
    the misses). What a genuine miss costs its board: the timeout, the wait for a late
    reply, and any resync pause (ADR 0014)."""
    emulator = KerongBoardEmulator(range(3), has_items=False)
    emulator.reply_delay_s = READ_S
    emulator.bank.set_flapping(0, answer=miss_every - 1, miss=1)
    await emulator.start()
    config = KerongBusConfig(
        name="bench", port=emulator.port, boards=[0, 1, 2], rest_poll_interval_s=0.005
    )
    bus = KerongBus(config, lambda b, s: None)
    await bus.start()
    try:
        await asyncio.wait_for(bus.wait_ready(), 5)
        await asyncio.sleep(0.5)  # warm-up
        reads, misses = dict(emulator.bank.status_reads), emulator.bank.faults["missed"]
        began = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - began
        counts = emulator.bank.status_reads
        return (
            (counts[0] - reads.get(0, 0)) / elapsed,
            (counts[1] - reads.get(1, 0)) / elapsed,
            emulator.bank.faults["missed"] - misses,
        )
    finally:
        await bus.close()
        await emulator.close()


class _Frames(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = codec.FrameParser()
        self.frames: asyncio.Queue[codec.Frame] = asyncio.Queue()

    def data_received(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            self.frames.put_nowait(frame)


async def sweeps(boards: int, seconds: float, bus_wide: bool) -> float:
    """Sweeps of every board a second over the pty, the emulator answering at once."""
    emulator = KerongBoardEmulator(range(boards), has_items=False)
    await emulator.start()
    transport, protocol = await open_port(emulator.port, 19200, _Frames)
    assert isinstance(protocol, _Frames)
    try:
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            if bus_wide:
                transport.write(codec.bus_status_request())
                for _ in range(boards):
                    frame = await asyncio.wait_for(protocol.frames.get(), 1)
                    assert frame.cmd == codec.REPLY_BUS_STATUS
            else:
                for board in range(boards):
                    transport.write(codec.status_request(board))
                    frame = await asyncio.wait_for(protocol.frames.get(), 1)
                    assert frame.cmd == codec.REPLY_STATUS and frame.board == board
            count += 1
        return count / (time.perf_counter() - began)
    finally:
        transport.close()
        await emulator.close()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(machine())
    limit = 1 / READ_S
    for boards in (1, 10):
        rate, cpu_us = await driver_reads(boards, args.seconds, wire=False)
        print(
            f"driver reads, {boards} board(s), unpaced, emulator at once: {rate:,.0f} reads/s, "
            f"{cpu_us:.0f} us CPU a read ({args.seconds:.0f} s); wire limit {limit:.0f} reads/s"
        )
    rate, cpu_us = await driver_reads(3, args.seconds, wire=True)
    print(
        f"driver reads, 3 boards, back to back, wire pace: {rate:,.0f} reads/s, {cpu_us:.0f} us "
        f"CPU a read; wire limit {limit:.0f} reads/s"
    )
    for miss_every in (21, 6):
        missing, steady, misses = await missing_board_reads(args.seconds, miss_every)
        print(
            f"a board missing 1 request in {miss_every}, 3 boards at the wire's pace: "
            f"{missing:.1f} reads/s against {steady:.1f} for a steady board ({misses} misses "
            f"in {args.seconds:.0f} s)"
        )
    for boards in (3, 10):
        per_board = await sweeps(boards, args.seconds, bus_wide=False)
        bus_wide = await sweeps(boards, args.seconds, bus_wide=True)
        wire_per_board = boards * 14 * BYTE_S * 1000
        wire_bus_wide = (5 + 9 * boards) * BYTE_S * 1000
        print(
            f"sweep of {boards} boards, emulator at once: per-board 0x30 {per_board:,.0f}/s, "
            f"bus-wide 0x32 {bus_wide:,.0f}/s; on the wire {wire_per_board:.1f} ms against "
            f">= {wire_bus_wide:.1f} ms a sweep"
        )


if __name__ == "__main__":
    asyncio.run(main())
