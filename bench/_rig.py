"""What the speed benches share: the machine, the wire's limits, the figures, and a rig
that runs the real agent as a process against the board emulator and the fake cloud.

The agent is started exactly as systemd starts it (``locker-agent run --config
FILE``, with a ``NOTIFY_SOCKET`` this process reads, so READY=1 is timed the way
systemd sees it). The emulator (a pseudo-terminal) and the fake cloud (loopback)
run in this process, on one loop; the agent's CPU and memory are read from /proc.

The wire (``shared/protocols/kerong-cu16.md``): 19200 baud 8N1 is 10 bits a byte,
0.52 ms; a status read is a 5-byte request and a 9-byte reply, 7.3 ms. The emulator
answers at once on its pty; with ``wire=True`` it holds each reply back by a read's
wire time, so the agent meets the wire's pace (it samples the lock bits when the
request arrives, 2.6 ms earlier than a real board does: a little pessimistic).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the agent's packages, when run as a script from anywhere

from simulator.cloud import FakeCloud  # noqa: E402
from simulator.kerong_board import KerongBoardEmulator  # noqa: E402
from simulator.run import free_port  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

API_KEY = "bench-api-key"
TOKEN = "bench-token"
BAUD = 19200
BYTE_S = 10 / BAUD  # 8N1: start, 8 data bits, stop
READ_S = (5 + 9) * BYTE_S  # one status read on the wire: request and reply
REPLY_S = 9 * BYTE_S
READY_TIMEOUT_S = 30.0


def machine() -> str:
    """One line: CPU model, cores, Python, kernel; printed by every bench."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Linux {platform.release()}, load average {load}"
    )


def door_floor_s(boards: int) -> float:
    """The wire's door-to-read worst case with back-to-back reads, seconds: a change
    that lands just after its board was sampled waits one whole cycle (``boards``
    reads) for the next sample, whose reply then takes 9 bytes to arrive."""
    return boards * READ_S + REPLY_S


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of already sorted values."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def summary(ms: Sequence[float], warmup: int = 0) -> str:
    """``p50 / p99 / max`` of samples in milliseconds, with the count and warm-up dropped."""
    values = sorted(ms)
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
        f"max {values[-1]:.1f} ms ({len(values)} samples, {warmup} warm-up dropped)"
    )


def cabinet_boards(cabinets: int) -> list[int]:
    """Boards needed for ``cabinets`` front doors, 16 to a board (cabinet k on board
    k // 16, channel k % 16 + 1)."""
    return list(range(-(-cabinets // 16)))


def where(key: int) -> tuple[int, int]:
    """(board, channel) of cabinet ``key``."""
    return key // 16, key % 16 + 1


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``, MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def _toml(value: object) -> str:
    """A TOML literal of a bool, a number or a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value).replace("'", '"')


@dataclass
class Rig:
    """The agent process (``proc``), the emulator (``boards``) and the cloud (``cloud``)."""

    workdir: Path
    boards: KerongBoardEmulator
    cloud: FakeCloud
    api_url: str
    config: Path
    bus_keys: dict[str, object]
    cabinets: int
    proc: asyncio.subprocess.Process | None = None
    ready_s: float | None = None
    session: aiohttp.ClientSession | None = None
    channel: bool = False  # the cloud's command channel too

    def write_config(self) -> None:
        """The agent's TOML: ``cabinets`` front doors, a long heartbeat (idle is idle)."""
        bus = "".join(f"{k} = {_toml(v)}\n" for k, v in self.bus_keys.items())
        lines = [
            '[locker]\nname = "Bench"\n',
            f'[cloud]\nurl = "{self.cloud.url}"\napi_key = "{API_KEY}"\nheartbeat_s = 3600\n'
            + (f'commands_url = "{self.cloud.commands_url}"\n' if self.channel else ""),
            f'[api]\nlisten = "{self.api_url.removeprefix("http://")}"\ntoken = "{TOKEN}"\n',
            f'[storage]\ndir = "{self.workdir / "storage"}"\n',
            f'[[buses]]\nname = "rs485"\ndriver = "kerong-cu16"\nport = "{self.boards.port}"\n'
            f"boards = {cabinet_boards(self.cabinets)}\n{bus}",
        ]
        for key in range(self.cabinets):
            board, channel = where(key)
            lines.append(
                f'[[cabinets]]\nkey = {key}\nfront = {{ bus = "rs485", board = {board}, '
                f"channel = {channel} }}\n"
            )
        self.config.write_text("\n".join(lines))

    async def start(self) -> float:
        """Start the agent; returns the seconds from spawn to its READY=1."""
        self.write_config()
        notify_path = self.workdir / "notify.sock"
        notify_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        sock.setblocking(False)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
        # A locker runs from a wheel whose modules pip compiled at install; this
        # sandbox sets PYTHONDONTWRITEBYTECODE, which would time a compiler instead.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # BENCH_AGENT: another install's locker-agent (a production venv without the
        # test and simulator extras, as a locker has: bench/memory.py --agent).
        given = os.environ.get("BENCH_AGENT")
        if given and not os.access(given, os.X_OK):  # never this venv's, timed as another's
            raise SystemExit(f"BENCH_AGENT={given}: not an executable file")
        exe = given or str(Path(sys.executable).parent / "locker-agent")
        command = [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "agent"]
        loop = asyncio.get_running_loop()
        try:
            with (self.workdir / "agent.log").open("ab") as log:
                started = time.perf_counter()
                self.proc = await asyncio.create_subprocess_exec(
                    *command,
                    "run",
                    "--config",
                    str(self.config),
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            async with asyncio.timeout(READY_TIMEOUT_S):
                while True:
                    message = (await loop.sock_recv(sock, 4096)).decode()
                    if "READY=1" in message.splitlines():
                        self.ready_s = time.perf_counter() - started
                        break
        finally:
            sock.close()
            notify_path.unlink(missing_ok=True)
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        )
        return self.ready_s

    async def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return None

    @property
    def pid(self) -> int:
        """The agent's process id."""
        assert self.proc is not None
        return self.proc.pid


@contextlib.asynccontextmanager
async def rig(
    cabinets: int,
    *,
    wire: bool,
    bus_keys: dict[str, object] | None = None,
    channel: bool = False,
    without_bus_status: int = 0,
) -> AsyncIterator[Rig]:
    """An emulator with the boards ``cabinets`` need, the fake cloud, a work dir and a
    config; the agent is started by ``Rig.start`` and stopped on the way out. The last
    ``without_bus_status`` boards do not answer the bus-wide status (0x32): a bus where
    only some boards answer it."""
    ids = cabinet_boards(cabinets)
    boards = KerongBoardEmulator(ids, has_items=False)
    boards.bank.no_bus_status = set(ids[len(ids) - min(without_bus_status, len(ids)) :])
    if wire:
        boards.reply_delay_s = READ_S
    cloud = FakeCloud(API_KEY)
    await boards.start()
    await cloud.start()
    with tempfile.TemporaryDirectory(prefix="locker-bench-") as tmp:
        workdir = Path(tmp)
        the_rig = Rig(
            workdir=workdir,
            boards=boards,
            cloud=cloud,
            api_url=f"http://127.0.0.1:{free_port()}",
            config=workdir / "agent.toml",
            bus_keys=dict(bus_keys or {}),
            cabinets=cabinets,
            channel=channel,
        )
        try:
            yield the_rig
        finally:
            code = await the_rig.stop()
            await cloud.close()
            await boards.close()
            if code not in (0, None):
                tail = (workdir / "agent.log").read_text(errors="replace")[-2000:]
                print(f"agent exited {code}:\n{tail}", file=sys.stderr)
