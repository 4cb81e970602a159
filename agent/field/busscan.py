"""``locker-agent bus scan``: which KR-CU16 boards answer on a port, at which baud,
and which address answers twice; and ``probe``, the one status read ``doctor`` uses.

Blocking pyserial with the driver's codec, no asyncio: a technician's command, run on
a port the agent does not hold (the port is opened exclusively, as the agent does).
A board answers a status request (0x30) with one 0x35 frame. Two boards left on one
address (the factory's) both answer: on the emulator, two clean replies; on a real
line they collide, which reads as garbled bytes. Both are reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import serial

from agent.field import probes
from agent.hardware.ports import HELD, NO_SUCH_FILE, PERMISSION, reason
from drivers.config import BAUD_RATES
from drivers.kerong import codec

DEFAULT_BAUD = 19200
"""What a KR-CU16 is set to when it leaves the factory; tried first."""

REPLY_BYTES = 5 + 9
"""A status request and its reply, bytes on the wire."""

SETTLE_S = 0.02
"""After a reply, how much longer a second one (a twin board) is waited for, seconds,
on top of the reply's own wire time."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What one status request to ``board`` brought back.

    ``replies``: valid status replies from that address (2 or more: two boards set
    to it); ``garbled``: bytes that were no frame came (a collision, noise, another
    baud); ``status``: the first reply decoded (None without one).
    """

    board: int
    replies: int
    garbled: bool
    status: codec.StatusReply | None

    @property
    def answered(self) -> bool:
        """Whether at least one valid reply came."""
        return self.replies > 0


def open_port(port: str, baud: int) -> serial.SerialBase:
    """Open the pyserial URL ``port`` at ``baud`` bit/s, exclusively where it can.

    ``port``: a device path or ``socket://host:port``. Raises
    ``serial.SerialException`` (or ``OSError``) when it cannot be opened.
    """
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=0, exclusive=True)
    except (TypeError, ValueError) as exc:
        if "exclusive" not in str(exc):
            raise
        return serial.serial_for_url(port, baudrate=baud, timeout=0)


def reply_window_s(baud: int, timeout_s: float) -> float:
    """How long to wait for a reply at ``baud``: ``timeout_s`` (the board's own delay,
    seconds) plus the request's and the reply's time on the wire."""
    return timeout_s + REPLY_BYTES * 10 / baud


def probe(ser: serial.SerialBase, board: int, *, timeout_s: float) -> Probe:
    """One status request to ``board`` (0-15) on the open port ``ser``: what came back.

    Waits ``timeout_s``, shortened to ``SETTLE_S`` plus one reply's wire time once a
    reply is in; our own request echoed by the adapter is skipped. Raises
    ``serial.SerialException`` / ``OSError`` when the port fails.
    """
    baud = int(ser.baudrate)
    parser = codec.FrameParser()
    replies: list[codec.Frame] = []
    ser.reset_input_buffer()
    ser.write(codec.status_request(board))
    ser.flush()
    deadline = time.monotonic() + reply_window_s(baud, timeout_s)
    while (left := deadline - time.monotonic()) > 0:
        ser.timeout = left
        data = ser.read(max(1, ser.in_waiting))
        for frame in parser.feed(data):
            if frame.cmd != codec.REPLY_STATUS or frame.board != board:
                continue
            replies.append(frame)
            if len(replies) == 1:
                deadline = min(deadline, time.monotonic() + SETTLE_S + 9 * 10 / baud)
    status = codec.decode_status(replies[0]) if replies else None
    return Probe(board, len(replies), parser.dropped > 0, status)


def scan(
    port: str,
    bauds: Sequence[int],
    boards: Iterable[int] = range(codec.MAX_BOARD + 1),
    *,
    timeout_s: float = 0.1,
) -> list[tuple[int, Probe]]:
    """``[(baud, probe)]`` of each board of ``boards`` that answered or garbled on ``port``.

    Every baud of ``bauds`` in order; the port is opened once. Raises
    ``serial.SerialException`` / ``OSError`` when it cannot be.
    """
    found: list[tuple[int, Probe]] = []
    ids = list(boards)
    with open_port(port, bauds[0]) as ser:
        for baud in bauds:
            ser.baudrate = baud
            for board in ids:
                result = probe(ser, board, timeout_s=timeout_s)
                if result.answered or result.garbled:
                    found.append((baud, result))
    return found


def describe(baud: int, result: Probe) -> str:
    """One line for a board that answered or garbled, with what to do."""
    where = f"board {result.board} at {baud} baud"
    if result.replies > 1:
        return (
            f"{where}: answers {result.replies} times: {result.replies} boards are set to"
            f" address {result.board}: give each its own address (the board's switch)"
        )
    if result.status is not None:
        closed = sum(result.status.lock_bits)
        items = sum(result.status.items)
        noise = "; garbled bytes too: noise on the line?" if result.garbled else ""
        return f"{where}: answers (lock bits set: {closed}/16, items: {items}){noise}"
    return (
        f"{where}: garbled answer: two boards on one address, or noise on the line"
        " (termination, A/B swapped, ground)"
    )


def open_failure(port: str, err: BaseException) -> str:
    """Why ``port`` did not open and what to do, in one line (the service holding it:
    stop it; another process: which; not there: the adapters plugged in)."""
    why = reason(err)
    if why == HELD:
        if (pid := probes.agent_holding(port)) is not None:
            return (
                f"held by the running agent (pid {pid}): sudo systemctl stop locker-agent,"
                " scan, then sudo systemctl start locker-agent (while it runs, sudo"
                " locker-agent status says which boards answer)"
            )
        held = probes.holders(port)
        who = probes.named(held) if held else "another process"
        return f"{HELD}: {who}: stop it (sudo locker-agent doctor names it too)"
    if why == PERMISSION:
        return f"{PERMISSION}: run it with sudo (the port belongs to the group dialout)"
    names = probes.by_id()
    now = f" (now: {', '.join(names)})" if names else " (now: none plugged in)"
    if why == NO_SUCH_FILE:
        return f"{NO_SUCH_FILE}: ls -l /dev/serial/by-id/ lists the adapters plugged in{now}"
    return f"{why}: ls -l /dev/serial/by-id/ lists the adapters plugged in{now}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--port``, ``--baud`` and ``--timeout-s`` of ``bus scan``."""
    parser.add_argument("--port", required=True, help="the serial port (a pyserial URL)")
    parser.add_argument(
        "--baud",
        type=int,
        choices=BAUD_RATES,
        help="only this speed (default: every speed a KR-CU16 can be set to, 19200 first)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=0.1, help="a board's reply time, seconds (0.1)"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``bus scan``: one line per board found, then a summary. 0 when a board
    answered and no address answered twice, 1 otherwise (or when the port fails)."""
    bauds = [args.baud] if args.baud else [DEFAULT_BAUD, *(b for b in BAUD_RATES if b != 19200)]
    speeds = f"{bauds[0]} baud" if len(bauds) == 1 else f"every baud ({', '.join(map(str, bauds))})"
    print(f"bus scan: {args.port}, boards 0-{codec.MAX_BOARD}, at {speeds}", flush=True)
    try:
        found = scan(args.port, bauds, timeout_s=args.timeout_s)
    except (serial.SerialException, OSError) as err:
        print(f"bus scan: cannot use {args.port}: {open_failure(args.port, err)}", file=sys.stderr)
        return 1
    for baud, result in found:
        print(describe(baud, result))
    answered = [(b, r) for b, r in found if r.answered]
    if not answered:
        hint = "" if len(bauds) > 1 else "; omit --baud to try every speed"
        print(f"found: no board answers: check power, A/B wiring and termination{hint}")
        return 1
    listed = ", ".join(
        f"board {r.board} ({b} baud{', twice' if r.replies > 1 else ''})" for b, r in answered
    )
    print(f"found: {listed}")
    return 0 if all(r.replies == 1 for _, r in answered) else 1
