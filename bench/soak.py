"""Chaos soak: never dead, never lying, never twice.

The agent runs as a process (``python -m agent run --config ...``) against the
Kerong board emulator on a real pseudo-terminal and the fake cloud, both in this
process, with its storage on a small tmpfs that fills and frees. While simulated
people open and shut doors (sometimes faster than a poll, sometimes within the
pulse) and open commands arrive over the local API (``Idempotency-Key``) and the
cloud's websocket (ids, some sent again after their answer or after a restart),
faults cycle on every line: the boards' replies are corrupted, garbled, lost or
late, boards go silent or flap (two polls answered, two missed), the cloud is
down (refused or dropped), answers 500, answers late or oddly (a 200 that is not
UTF-8, a 200 claiming gzip, a redirect, an absurd Retry-After), the disk fills,
and the agent is SIGKILLed and restarted on the same storage. Then every fault
heals, the soak settles and checks:

1. no change the agent showed (``GET /api/lockers/cabinets``) is lost: per door,
   what it showed is a subsequence of what the cloud received;
2. the cloud heard each door in order and never in a state it did not have: per
   door, what the cloud received is a subsequence of what the emulator had;
3. no lock pulsed that no command asked for, none twice for one command (one
   command in flight per cabinet at a time, so every pulse has one owner);
4. memory did not grow over the last long-lived agent process (bench only);
5. the agent ends healthy: ``/healthz`` 200, the cloud's last state of every
   door is the true one;
6. the agent never died on its own, never followed a redirect, and stops
   cleanly on SIGTERM.

Counted apart, not failed: the known open point (a SIGKILL between a pulse and
the saving of its result, so the id sent again pulses again), and its cousin, a
result the full disk refused (kept in memory only) lost with a later SIGKILL
(tests/agent/test_soak_findings.py). The tmpfs is 16 MiB: on 4 MiB SQLite's WAL
wedges the outbox for good (the same file); ``--disk-mb 4`` shows it.

Run: .venv/bin/python bench/soak.py --seconds 300 --seed 1
(prints figures and PASS/FAIL per check; exit 1 on a FAIL). As root the storage
is a tmpfs mounted for the run; otherwise the disk-full fault is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from agent.cloud.uplink import RETRY_AFTER_MAX_S
from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from simulator.web.disk import SmallDisk

REPO = Path(__file__).resolve().parent.parent
API_KEY = "soak-api-key"
TOKEN = "soak-token"
# 16 MiB, not 4: on 4 MiB SQLite's WAL alone (about 4 MiB before it checkpoints)
# wedges the outbox for good, no filler needed (tests/agent/test_soak_findings.py);
# --disk-mb 4 shows it.
DISK_MB = 16
BOARDS = (0, 1)
COMMAND_TIMEOUT_S = 8.0  # one attempt at a command; the agent needs < 2 s with these timings
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0  # DESIGN.md: SIGTERM stops the agent cleanly within 5 s
RSS_MIN_LIFE_S = 60.0  # the memory check needs a process at least this old
RSS_GROWTH_LIMIT_KB = 16 * 1024
# Absurd Retry-After values the agent must survive; the first two park the uplink
# for RETRY_AFTER_MAX_S (its cap), the others it must ignore.
PARKING_RETRY_AFTER = ("999999999", "Fri, 31 Dec 9999 23:59:59 GMT")
HARMLESS_RETRY_AFTER = ("-5", "soon", "1e9", "Thu, 01 Jan 1970 00:00:00 GMT", "0", "")


@dataclass(frozen=True, slots=True)
class DoorRef:
    """One door: the cloud's cabinet ``key`` and ``side``, and its lock channel."""

    key: int
    side: str
    board: int
    channel: int

    @property
    def name(self) -> str:
        """``5/front``: how the figures name the door."""
        return f"{self.key}/{self.side}"


# Cabinets 0-5 on board 0; the rear doors of 0-1 and the fronts of 6-7 on board 1,
# the board that goes silent and flaps most.
DOORS: tuple[DoorRef, ...] = (
    *(DoorRef(k, "front", 0, k + 1) for k in range(6)),
    DoorRef(0, "rear", 1, 1),
    DoorRef(1, "rear", 1, 2),
    DoorRef(6, "front", 1, 3),
    DoorRef(7, "front", 1, 4),
)
CABINETS = sorted({d.key for d in DOORS})


@dataclass(slots=True)
class Options:
    """How long and how hard: ``chaos_s`` of chaos, then up to ``settle_s`` to heal.

    ``kill_every_s``: (min, max) seconds between SIGKILLs; kills stop after
    ``kill_until`` of the run so the last process lives long enough to measure.
    ``parking``: serve Retry-After values that park the uplink for its cap
    (``RETRY_AFTER_MAX_S``); the settle then waits that out. ``disk``: fill the
    storage when it can be a tmpfs (of ``disk_mb`` MiB). ``keep``: keep the work
    dir (it is always kept on a FAIL).
    """

    chaos_s: float = 60.0
    seed: int = 1
    settle_s: float = 90.0
    kill_every_s: tuple[float, float] = (10.0, 40.0)
    kill_until: float = 0.6
    parking: bool = True
    disk: bool = True
    disk_mb: int = DISK_MB
    keep: bool = False
    out: Callable[[str], None] = print


def collapse(seq: Iterable[str]) -> list[str]:
    """``seq`` without consecutive repeats."""
    out: list[str] = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


def is_subsequence(needle: Sequence[str], haystack: Sequence[str]) -> bool:
    """Whether ``needle`` is ``haystack`` with some items left out (order kept)."""
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


class Cycle:
    """Draws ``items`` in shuffled rounds: each comes once a round, so a short run
    still meets every fault, in an order the seed decides."""

    def __init__(self, rng: random.Random, items: Sequence[str]) -> None:
        self._rng = rng
        self._items = list(items)
        self._round: list[str] = []

    def next(self) -> str:
        """The next item of this round (a new shuffled round when it is used up)."""
        if not self._round:
            self._round = self._items[:]
            self._rng.shuffle(self._round)
        return self._round.pop()


def rss_kb(pid: int) -> int | None:
    """Resident memory of process ``pid`` in KiB, from /proc; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# --------------------------------------------------------------------------- storage


class Storage(SmallDisk):
    """The agent's storage dir: a small tmpfs (as root) that a filler file fills, as the
    simulator's disk-full fault does (``simulator.web.disk.SmallDisk``)."""

    def __init__(
        self, path: Path, want_tmpfs: bool, size_mb: int, out: Callable[[str], None]
    ) -> None:
        super().__init__(path, size_mb)
        self.fills = 0
        path.mkdir(parents=True, exist_ok=True)
        if not want_tmpfs:
            out("note: disk-full fault off (--no-disk)")
        elif (why := self.mount()) is not None:
            out(f"note: {why}: the disk-full fault is skipped")

    def fill(self) -> int:
        """Write the filler until the filesystem refuses; the bytes written (0 unmounted)."""
        if not self.mounted:
            return 0
        self.fills += 1
        return super().fill()

    def close(self) -> None:
        """Free and unmount."""
        self.unmount()


def write_config(path: Path, port: str, cloud: FakeCloud, api_port: int, storage: Path) -> None:
    """The agent's TOML: short timings, so the soak sees much in little time."""
    lines = [
        '[locker]\nname = "Chaos soak"\nconfirm_s = 0.5\njam_retry_s = 0.2\nleft_open_s = 3\n',
        f'[cloud]\nurl = "{cloud.url}"\napi_key = "{API_KEY}"\nheartbeat_s = 5\n'
        f'timeout_s = 1.5\ncommands_url = "{cloud.commands_url}"\n',
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n',
        f'[storage]\ndir = "{storage}"\n',
        f'[[buses]]\nname = "rs485"\ndriver = "kerong-cu16"\nport = "{port}"\n'
        f"boards = {list(BOARDS)}\nreply_timeout_s = 0.08\npoll_interval_s = 0.03\n"
        "pulse_s = 0.2\nmax_concurrent = 2\nstagger_s = 0.05\n",
    ]
    for key in CABINETS:
        lines.append(f"[[cabinets]]\nkey = {key}\n")
        for door in DOORS:
            if door.key == key:
                wiring = f'{{ bus = "rs485", board = {door.board}, channel = {door.channel} }}'
                lines.append(f"{door.side} = {wiring}\n")
    path.write_text("\n".join(lines))


class AgentProcess:
    """The agent as a child process; ``generation`` counts the processes started."""

    def __init__(self, config: Path, log_path: Path, api_url: str) -> None:
        self.config = config
        self.log_path = log_path
        self.api_url = api_url
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.started_at = 0.0
        self.kills = 0
        self.killed_at: list[float] = []  # wall times of the SIGKILLs
        self.unexpected_exits: list[int] = []
        self.rss: dict[int, list[tuple[float, int]]] = {}  # generation -> (t, KiB)
        self.lock = asyncio.Lock()  # one restart at a time
        self._ending = False  # we are killing or stopping it: its exit is ours

    @property
    def alive(self) -> bool:
        """Whether the current process runs."""
        return self.proc is not None and self.proc.returncode is None

    @property
    def died(self) -> bool:
        """Whether the current process ended without being killed or stopped."""
        return self.proc is not None and self.proc.returncode is not None and not self._ending

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start a process on the same storage; returns once its API says it is ready."""
        self.generation += 1
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                "run",
                "--config",
                str(self.config),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self._ending = False
        self.started_at = time.monotonic()
        self.rss[self.generation] = []
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self.alive:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with session.get(self.api_url + "/healthz") as resp:
                    body = await resp.json(content_type=None)
                    if body.get("reasons") != ["starting"]:
                        return
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL (a power cut for the process); waits until the pty is drained."""
        if self.proc is None:
            return
        self._ending = True
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
            self.killed_at.append(time.time())
        await self.proc.wait()
        self.proc = None
        await asyncio.sleep(0.3)  # frames it wrote before dying reach the emulator

    async def stop(self) -> tuple[int | None, float]:
        """SIGTERM and wait (at most STOP_TIMEOUT_S + 5 s): (exit code, seconds taken)."""
        if self.proc is None or self.proc.returncode is not None:
            return None, 0.0
        started = time.monotonic()
        self._ending = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S + 5):
                code = await self.proc.wait()
        except TimeoutError:
            await self.kill()
            return None, time.monotonic() - started
        self.proc = None
        return code, time.monotonic() - started

    def sample_rss(self) -> None:
        """Note the current process's resident memory."""
        if self.proc is not None and self.proc.returncode is None:
            kb = rss_kb(self.proc.pid)
            if kb is not None:
                self.rss[self.generation].append((time.monotonic() - self.started_at, kb))


# --------------------------------------------------------------------------- commands


@dataclass(slots=True)
class Attempt:
    """One sending of a command: in which process, what came back, what pulsed."""

    generation: int
    after_answer: bool  # sent again once a definitive answer had come
    answer: str = "none"  # "ok", "error:<TYPE>", "none" (no answer: timeout, reset, kill)
    body: Any = None
    pulses: int = 0
    opened: bool = False  # the door really opened while this sending was in flight


@dataclass(slots=True)
class Command:
    """An open command with one id, sent once or more; ``via`` "local" or "cloud"."""

    ident: str
    via: str
    door: DoorRef
    attempts: list[Attempt] = field(default_factory=list)
    answered: Attempt | None = None  # the first definitive answer

    @property
    def log_id(self) -> str:
        """The id as the agent's command log names it."""
        return f"local:{self.ident}" if self.via == "local" else f"cloud:{self.ident!r}"

    def body(self) -> dict[str, Any]:
        """The command body, the same at every sending (the agent checks)."""
        return {"command": "open", "rearload": self.door.side == "rear"}


# Answers the agent gives without acting and does not remember: a moment, not a result.
MOMENTS = frozenset({"none", "error:UNAVAILABLE", "error:TOO_MANY_REQUESTS"})


def definitive(answer: str) -> bool:
    """An answer the agent remembers: not "none", UNAVAILABLE or a 429 (moments)."""
    return answer not in MOMENTS


class Commander:
    """Sends open commands, one in flight per cabinet, and owns every pulse.

    A cabinet is claimed when a command for it is created (or sent again) and
    released only when an answer closes the command's window: a definitive answer
    for its first sendings, any answer for a sending after that. Without one (a
    timeout, a reset, a kill) the agent may still act, so the cabinet stays
    claimed and the command is sent again until it is answered. Every pulse on a
    door therefore belongs to the one command in flight on its cabinet, or to none.
    """

    def __init__(
        self,
        rng: random.Random,
        agent: AgentProcess,
        cloud: FakeCloud,
        session: aiohttp.ClientSession,
        seed: int,
    ) -> None:
        self.rng = rng
        self.agent = agent
        self.cloud = cloud
        self.session = session
        self.seed = seed
        self.commands: list[Command] = []
        self.busy: dict[int, Command] = {}  # cabinet key -> the command in flight
        self.unattributed: list[tuple[int, int, int]] = []  # (process, board, channel)
        self.pulses = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.surprises: Counter[str] = Counter()  # exceptions no sending expected
        self._n = 0

    # -- the emulator's pulse observer: every pulse has an owner, or it is a lie

    def on_pulse(self, board: int, channel: int) -> None:
        """Called by the board emulator for each pulse, before the latch moves."""
        self.pulses += 1
        door = next((d for d in DOORS if (d.board, d.channel) == (board, channel)), None)
        owner = self.busy.get(door.key) if door is not None else None
        if door is None or owner is None or owner.door != door or not owner.attempts:
            self.unattributed.append((self.agent.generation, board, channel))
            return
        owner.attempts[-1].pulses += 1

    def on_open(self, door: DoorRef) -> None:
        """The emulator saw ``door`` open: note it on the sending in flight there."""
        owner = self.busy.get(door.key)
        if owner is not None and owner.door == door and owner.attempts:
            owner.attempts[-1].opened = True

    # -- sending

    def idle_cabinets(self) -> list[int]:
        """Cabinets with no command in flight."""
        return [k for k in CABINETS if k not in self.busy]

    def start(self, door: DoorRef, resend_after_s: float | None) -> None:
        """Claim ``door``'s cabinet (it must be idle) for a fresh command and send it,
        half of them over the local API, half over the cloud's websocket."""
        if door.key in self.busy:
            raise AssertionError("two commands in flight on one cabinet")
        self._n += 1
        via = "local" if self.rng.random() < 0.5 else "cloud"
        cmd = Command(f"soak-{self.seed}-{self._n}", via, door)
        self.commands.append(cmd)
        self.busy[door.key] = cmd
        task = asyncio.create_task(self._run(cmd, resend_after_s))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, cmd: Command, resend_after_s: float | None) -> None:
        """Send until a definitive answer (bounded); then maybe once more later,
        sometimes only after the agent was restarted."""
        for _ in range(60):
            attempt = await self._send(cmd, after_answer=False)
            if definitive(attempt.answer):
                cmd.answered = attempt
                break
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        else:
            return  # never answered: the cabinet stays claimed, the report says so
        del self.busy[cmd.door.key]
        if resend_after_s is None:
            return
        answered_in = cmd.answered.generation
        after_restart = self.rng.random() < 0.5
        deadline = time.monotonic() + resend_after_s
        while time.monotonic() < deadline or (
            after_restart and self.agent.generation == answered_in and not self.stopping
        ):
            await asyncio.sleep(0.2)
        for _ in range(100):  # the cabinet may be busy with another command
            if cmd.door.key not in self.busy:
                break
            await asyncio.sleep(0.1)
        else:
            return
        self.busy[cmd.door.key] = cmd
        for _ in range(40):
            attempt = await self._send(cmd, after_answer=True)
            if definitive(attempt.answer):
                del self.busy[cmd.door.key]
                return
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))

    async def _send(self, cmd: Command, *, after_answer: bool) -> Attempt:
        while not self.agent.alive:  # a restart is under way
            await asyncio.sleep(0.1)
        attempt = Attempt(self.agent.generation, after_answer)
        cmd.attempts.append(attempt)
        if cmd.via == "local":
            await self._send_local(cmd, attempt)
        else:
            await self._send_cloud(cmd, attempt)
        return attempt

    async def _send_local(self, cmd: Command, attempt: Attempt) -> None:
        url = f"{self.agent.api_url}/api/lockers/cabinets/{cmd.door.key}"
        headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": cmd.ident}
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                async with self.session.put(url, json=cmd.body(), headers=headers) as resp:
                    body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        except Exception as exc:  # the soak's own surprise: no answer, and said
            self.surprises[type(exc).__name__] += 1
            return
        attempt.body = body
        if resp.status == 200:
            attempt.answer = "ok"
        else:
            kind = body.get("type") if isinstance(body, dict) else None
            attempt.answer = f"error:{kind or resp.status}"

    async def _send_cloud(self, cmd: Command, attempt: Attempt) -> None:
        try:
            await self.cloud.wait_for_agent(COMMAND_TIMEOUT_S)
            answer = await self.cloud.send_command(
                {"id": cmd.ident, "key": cmd.door.key, **cmd.body()}, timeout=COMMAND_TIMEOUT_S
            )
        except (TimeoutError, ConnectionError, RuntimeError, aiohttp.ClientError):
            return
        except Exception as exc:  # the soak's own surprise: no answer, and said
            self.surprises[type(exc).__name__] += 1
            return
        if answer.get("ok"):
            attempt.answer, attempt.body = "ok", answer.get("cabinet")
        else:
            error = answer.get("error") or {}
            attempt.answer, attempt.body = f"error:{error.get('type')}", error

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for every command task to finish; cancel the rest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.tasks:
                    await asyncio.wait(set(self.tasks))
        for task in list(self.tasks):
            task.cancel()


# --------------------------------------------------------------------------- verdicts


@dataclass(slots=True)
class Check:
    """One verdict: PASS, FAIL or SKIP, and why."""

    name: str
    verdict: str
    detail: str = ""


@dataclass(slots=True)
class Report:
    """What the soak saw: figures to print and the checks."""

    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    workdir: Path | None = None

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.verdict == "FAIL"]

    def print(self, out: Callable[[str], None] = print) -> None:
        """Figures, then one line per check."""
        for name, value in self.figures.items():
            out(f"  {name:<28} {value}")
        for check in self.checks:
            out(f"{check.verdict:<4}  {check.name}" + (f": {check.detail}" if check.detail else ""))


def judge_pulses(
    commands: Sequence[Command],
    unattributed: Sequence[tuple[int, int, int]],
    pulses: int,
    unsaved: set[Any],
    events: Counter[str],
) -> tuple[Check, dict[str, str]]:
    """Check 3: every pulse asked for, never twice for one command; and its figures.

    ``unattributed``: (process, board, channel) of pulses no command owned;
    ``pulses``: every pulse; ``unsaved``: the command-log ids the agent logged as
    ``commands.record_unsaved``; ``events``: the agent's log events, counted.

    A command's first sendings form *executions*: a new one begins after an
    UNAVAILABLE answer (the agent does not remember it, so it acts again) or in
    a new process (the old one was killed before answering). An execution pulses
    at most twice (the agent's one retry of an unconfirmed open). A second
    execution that pulses again is a double: after a kill before any answer it
    is the known open point (the result was not saved), counted apart; after an
    UNAVAILABLE answer that followed a pulse it is a failure. A sending after a
    definitive answer must pulse nothing and get the same answer; the exception
    counted apart is a result the agent could not save (disk full, logged
    ``commands.record_unsaved``) followed by a kill.
    """
    problems: list[str] = []
    answers: Counter[str] = Counter()
    acted = retried = jammed2 = refused = repulsed_kill = repulsed_unsaved = 0
    jammed_open = 0  # LOCK_JAMMED answers for a door that did open (the agent missed it)
    unavailable_after_pulse = unresolved = 0
    for cmd in commands:
        if cmd.answered is None:
            unresolved += 1
        else:
            answers[cmd.answered.answer] += 1
            if cmd.answered.answer == "error:LOCK_JAMMED" and any(
                a.opened for a in cmd.attempts if not a.after_answer
            ):
                jammed_open += 1
        executions: list[list[Attempt]] = []
        for a in (a for a in cmd.attempts if not a.after_answer):
            last = executions[-1][-1] if executions else None
            if last is None or last.generation != a.generation or last.answer != "none":
                executions.append([a])  # a new process, or the last one was answered
            else:
                executions[-1].append(a)
        pulsing = [e for e in executions if sum(a.pulses for a in e)]
        acted += bool(pulsing)
        for e in executions:
            n = sum(a.pulses for a in e)
            if n > 2:
                problems.append(f"{cmd.log_id}: {n} pulses in one execution")
            elif n == 2:
                if e[-1].answer == "error:LOCK_JAMMED":
                    jammed2 += 1
                else:
                    retried += 1
            if n and e[-1].answer == "error:UNAVAILABLE":
                unavailable_after_pulse += 1
        for before, after in itertools.pairwise(pulsing):
            if before[-1].answer == "error:UNAVAILABLE":
                problems.append(
                    f"{cmd.log_id}: pulsed, answered UNAVAILABLE, pulsed again when sent"
                    f" again (process {after[0].generation})"
                )
            else:
                repulsed_kill += 1  # killed after a pulse, before its result was saved
        for a in (a for a in cmd.attempts if a.after_answer):
            assert cmd.answered is not None
            same = a.answer == cmd.answered.answer and (
                a.answer != "ok" or a.body == cmd.answered.body
            )
            # CONFLICT with no pulse: the agent refused to act again because the
            # outcome is unknown (the intent was saved, the result was not): correct.
            unknown = a.answer == "error:CONFLICT"
            if a.pulses == 0 and (same or unknown or not definitive(a.answer)):
                refused += same or unknown
                continue
            # Acted again (a pulse, or a fresh answer: the pulse may have gone to a
            # board that missed it). Known only when the result was never saved
            # and the process that knew it in memory was killed since.
            if a.generation > cmd.answered.generation and cmd.log_id in unsaved:
                repulsed_unsaved += 1
            else:
                problems.append(
                    f"{cmd.log_id}: answered {cmd.answered.answer} (process"
                    f" {cmd.answered.generation}), sent again (process {a.generation}):"
                    f" answered {a.answer}, {a.pulses} more pulses"
                )
    if unresolved:
        problems.append(f"{unresolved} commands never got a definitive answer")
    for gen, board, channel in unattributed[:5]:
        problems.append(f"unasked pulse: board {board} channel {channel} (process {gen})")
    if len(unattributed) > 5:
        problems.append(f"... {len(unattributed)} unasked pulses in all")
    resent = sum(1 for c in commands for a in c.attempts if a.after_answer)
    f: dict[str, str] = {}
    f["commands"] = (
        f"sent {len(commands)} (local {sum(c.via == 'local' for c in commands)},"
        f" cloud {sum(c.via == 'cloud' for c in commands)}),"
        f" attempts {sum(len(c.attempts) for c in commands)}, acted {acted}"
    )
    f["answers"] = ", ".join(f"{k} {v}" for k, v in sorted(answers.items()))
    f["sent again after answer"] = (
        f"{resent} sendings, duplicates refused (same answer, no pulse) {refused}"
    )
    f["pulses"] = (
        f"{pulses}: unasked {len(unattributed)}; two for one command:"
        f" {retried} retry after an unconfirmed open, {jammed2} LOCK_JAMMED"
        f" ({jammed_open} of all LOCK_JAMMED answers were for a door that did open)"
        f" (log door.open_retry {events['door.open_retry']});"
        f" pulsed then UNAVAILABLE {unavailable_after_pulse}"
    )
    f["known open point"] = (
        f"pulsed again after a kill before the result was saved {repulsed_kill};"
        f" acted again after an answer whose result could not be saved (disk full)"
        f" and a kill {repulsed_unsaved}"
    )
    check = Check(
        "no pulse unasked, none twice for one command",
        "FAIL" if problems else "PASS",
        "; ".join(problems[:8]),
    )
    return check, f


# --------------------------------------------------------------------------- the soak


class Soak:
    """One run: the world (emulator, cloud, storage), the agent, the chaos, the checks."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.opt = options
        self.out = options.out
        self.rng = random.Random(options.seed)
        self.workdir = workdir
        self.emulator = KerongBoardEmulator(BOARDS, seed=options.seed)
        self.cloud = FakeCloud(API_KEY, port=free_port())
        self.storage = Storage(workdir / "storage", options.disk, options.disk_mb, self.out)
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.agent = AgentProcess(workdir / "agent.toml", workdir / "agent.log", self.api_url)
        self.true: dict[DoorRef, list[str]] = {d: ["closed"] for d in DOORS}
        self.shown: dict[DoorRef, list[str]] = {d: [] for d in DOORS}
        self.faults: Counter[str] = Counter()
        self.cloud_up = True
        self.chaos = asyncio.Event()  # set while faults and people run
        self.ended = asyncio.Event()  # set when the chaos ends: pauses end early
        self.session: aiohttp.ClientSession | None = None
        self.commander: Commander | None = None
        self._shuts: dict[DoorRef, asyncio.TimerHandle] = {}
        self._odd_kinds = Cycle(self.rng, ["not_utf8", "false_gzip", "redirect", "retry_after"])
        self._harmless = Cycle(self.rng, HARMLESS_RETRY_AFTER)

    # -- the physical world

    def _changed(self, board: int, channel: int) -> None:
        for door in DOORS:
            if (door.board, door.channel) == (board, channel):
                state = "closed" if self.emulator.feedback_closed(board, channel) else "open"
                if self.true[door][-1] != state:
                    self.true[door].append(state)
                    if state == "open" and self.commander is not None:
                        self.commander.on_open(door)

    def _pulsed(self, board: int, channel: int) -> None:
        assert self.commander is not None
        self.commander.on_pulse(board, channel)
        if not self.chaos.is_set():
            return
        door = next((d for d in DOORS if (d.board, d.channel) == (board, channel)), None)
        if door is None:
            return
        # The customer: sometimes shuts the door again within the pulse, faster than
        # a poll; mostly takes a moment.
        quick = self.rng.random() < 0.35
        self._shut_later(door, self.rng.uniform(0.01, 0.15) if quick else self.rng.uniform(0.3, 3))

    def _shut_later(self, door: DoorRef, delay_s: float) -> None:
        old = self._shuts.pop(door, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._shuts[door] = loop.call_later(
            delay_s, self.emulator.shut_door, door.board, door.channel
        )

    async def people(self) -> None:
        """Doors forced and shut by hand, at random, some faster than a poll."""
        while self.chaos.is_set():
            await asyncio.sleep(self.rng.uniform(0.1, 0.8))
            door = self.rng.choice(DOORS)
            if not self.emulator.feedback_closed(door.board, door.channel):
                self.emulator.shut_door(door.board, door.channel)
            elif self.rng.random() < 0.4:
                self.emulator.force_open(door.board, door.channel)
                self.faults["people: door forced"] += 1
                self._shut_later(door, self.rng.uniform(0.005, 2.0))

    # -- commands

    async def commands(self) -> None:
        """Open commands on idle cabinets; some ids sent again later."""
        assert self.commander is not None
        while self.chaos.is_set():
            await asyncio.sleep(self.rng.uniform(0.15, 0.6))
            idle = self.commander.idle_cabinets()
            if not idle:
                continue
            key = self.rng.choice(idle)
            door = self.rng.choice([d for d in DOORS if d.key == key])
            resend = self.rng.uniform(0.5, 8.0) if self.rng.random() < 0.3 else None
            self.commander.start(door, resend)

    # -- observation

    async def watch_shown(self) -> None:
        """Poll what the agent shows, door by door (open/closed only)."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while True:
            await asyncio.sleep(0.1)
            if not self.agent.alive:
                continue
            try:
                async with asyncio.timeout(2):
                    async with self.session.get(
                        self.api_url + "/api/lockers/cabinets", headers=headers
                    ) as resp:
                        if resp.status != 200:
                            continue
                        cabinets = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            by_key = {c["key"]: c for c in cabinets}
            for door in DOORS:
                cabinet = by_key.get(door.key, {})
                state = cabinet.get("state" if door.side == "front" else "rear_load_status")
                if state in ("open", "closed") and (
                    not self.shown[door] or self.shown[door][-1] != state
                ):
                    self.shown[door].append(state)

    async def watch_rss(self) -> None:
        """Sample the agent's resident memory once a second."""
        while True:
            await asyncio.sleep(1.0)
            self.agent.sample_rss()

    async def watch_exits(self) -> None:
        """An agent that ends without being killed is dead: note it, start another."""
        assert self.session is not None
        while True:
            await asyncio.sleep(0.2)
            async with self.agent.lock:
                proc = self.agent.proc
                if proc is not None and self.agent.died:
                    self.agent.unexpected_exits.append(proc.returncode or 0)
                    self.out(f"agent exited on its own with {proc.returncode}; restarting")
                    await self.agent.kill()
                    await self.agent.start(self.session)

    def received(self) -> dict[DoorRef, list[str]]:
        """Per door, every status the cloud accepted, in order."""
        got: dict[DoorRef, list[str]] = {d: [] for d in DOORS}
        by_place = {(d.key, d.side): d for d in DOORS}
        for entry in self.cloud.cabinet_updates():
            for side in ("front", "rear"):
                status = entry.get(f"{side}_status")
                door = by_place.get((entry["key"], side))
                if status is not None and door is not None:
                    got[door].append(status)
        return got

    # -- faults

    async def _phase(self, low_s: float, high_s: float) -> None:
        """Sleep a random while, or less if the chaos ends meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), self.rng.uniform(low_s, high_s))

    async def bus_faults(self) -> None:
        """The RS-485 line: corrupt, garbled, lost, late replies, an echoing adapter."""
        bank = self.emulator.bank
        kinds = Cycle(
            self.rng, ["clean"] * 3 + ["corrupt", "garbage", "drop", "slow", "late", "echo"]
        )
        while self.chaos.is_set():
            kind = kinds.next()
            if kind == "corrupt":
                bank.corrupt = self.rng.uniform(0.05, 0.3)
            elif kind == "garbage":
                bank.garbage = self.rng.uniform(0.05, 0.3)
            elif kind == "drop":
                bank.drop = self.rng.uniform(0.05, 0.3)
            elif kind == "slow":  # within the agent's 80 ms reply timeout
                self.emulator.reply_delay_s = self.rng.uniform(0.005, 0.05)
            elif kind == "late":  # past it: timeouts, and late replies to later requests
                self.emulator.reply_delay_s = self.rng.uniform(0.09, 0.2)
            elif kind == "echo":
                bank.echo = True
            self.faults[f"bus: {kind}"] += 1
            await self._phase(1.5, 5.0)
            self.heal_bus()

    def heal_bus(self) -> None:
        """A clean line."""
        bank = self.emulator.bank
        bank.corrupt = bank.garbage = bank.drop = 0.0
        bank.echo = False
        self.emulator.reply_delay_s = 0.0

    async def board_faults(self) -> None:
        """Boards go silent and flap (two polls answered, two missed)."""
        kinds = Cycle(
            self.rng, ["fine"] * 3 + ["silent 1", "flap 1", "flap 0", "silent 0", "silent both"]
        )
        while self.chaos.is_set():
            kind = kinds.next()
            short = kind in ("silent 0", "silent both")
            if kind.startswith("silent"):
                for board in BOARDS if kind == "silent both" else (int(kind[-1]),):
                    self.emulator.set_offline(board)
            elif kind.startswith("flap"):
                self.emulator.bank.set_flapping(int(kind[-1]), answer=2, miss=2)
            self.faults[f"boards: {kind}"] += 1
            await self._phase(0.5, 2.0) if short else await self._phase(1.5, 5.0)
            self.heal_boards()
            await self._phase(0.5, 2.0)

    def heal_boards(self) -> None:
        """Every board online and steady."""
        for board in BOARDS:
            self.emulator.set_offline(board, False)
            self.emulator.bank.set_flapping(board, None)

    async def cloud_faults(self) -> None:
        """The cloud: down, dropping, 500, slow, odd, websocket cut; fine in between."""
        # Odd answers come twice a round: there are four kinds of them.
        kinds = Cycle(
            self.rng,
            ["fine"] * 4
            + ["refused", "dropped", "taken+dropped", "500", "slow", "odd", "odd", "cut"],
        )
        while self.chaos.is_set():
            kind = kinds.next()
            if kind == "refused":
                self.cloud_up = False
                await self.cloud.close()
            elif kind == "dropped":
                self.cloud.drop_next(100_000)
            elif kind == "taken+dropped":
                self.cloud.drop_next(self.rng.randint(1, 3), after_processing=True)
            elif kind == "500":
                self.cloud.fail_next(500, 100_000)
            elif kind == "slow":  # past the agent's 1.5 s timeout at times: it resends
                self.cloud.answer_delay_s = self.rng.uniform(0.3, 2.5)
            elif kind == "odd":
                kind = self._odd()
            elif kind == "cut":
                await self.cloud.disconnect_agents()
            self.faults[f"cloud: {kind}"] += 1
            await self._phase(1.5, 5.0)
            await self.heal_cloud()
            await self._phase(1.0, 4.0)

    def _odd(self) -> str:
        kind = self._odd_kinds.next()
        value = "999999999"
        if kind == "retry_after":
            parking = self.opt.parking and self.parked_until() is None
            value = self.rng.choice(PARKING_RETRY_AFTER) if parking else self._harmless.next()
            # Once a run (queued again until a request gets it): the agent honours it
            # up to its cap.
            self.cloud.odd_next(kind, 1, retry_after=value)
            return f"retry_after {value!r}"
        self.cloud.odd_next(kind, self.rng.randint(1, 3))
        return kind

    def parked_until(self) -> float | None:
        """Monotonic time until which the parking Retry-After the cloud answered may
        hold the uplink back; None when none was answered."""
        for answer in self.cloud.odd_answers:
            if answer["retry_after"] in PARKING_RETRY_AFTER:
                since_s = time.time() - answer["answered_at"]
                return time.monotonic() - since_s + RETRY_AFTER_MAX_S + 5
        return None

    async def heal_cloud(self) -> None:
        """A cloud that is up and answers well."""
        self.cloud.heal()
        if not self.cloud_up:
            await self.cloud.start()
            self.cloud_up = True

    async def disk_faults(self) -> None:
        """The storage fills (writes fail) and frees."""
        while self.chaos.is_set() and self.storage.mounted:
            await self._phase(2.0, 8.0)
            if not self.chaos.is_set():
                break
            self.storage.fill()
            self.faults["disk: full"] += 1
            await self._phase(1.0, 6.0)
            self.storage.free()

    async def kills(self) -> None:
        """SIGKILL the agent at random and start it again on the same storage."""
        assert self.session is not None
        low, high = self.opt.kill_every_s
        until = time.monotonic() + self.opt.chaos_s * self.opt.kill_until
        while self.chaos.is_set():
            await self._phase(low, high)
            if not self.chaos.is_set() or time.monotonic() > until:
                break
            async with self.agent.lock:
                await self.agent.kill()
                await self.agent.start(self.session)

    # -- the run

    async def run(self) -> Report:
        """Start everything, make chaos, heal, settle, check."""
        opt = self.opt
        started = time.monotonic()
        report = Report(workdir=self.workdir)
        watchers: list[asyncio.Task[None]] = []
        chaos: list[asyncio.Task[None]] = []
        try:
            self.emulator.on_change = self._changed
            self.emulator.bank.on_pulse = self._pulsed
            self.emulator.auto_shut_after_s = 6.0  # nobody leaves a door open for ever
            await self.emulator.start()
            await self.cloud.start()
            write_config(
                self.agent.config, self.emulator.port, self.cloud, self.api_port, self.storage.path
            )
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=COMMAND_TIMEOUT_S),
            )
            self.commander = Commander(self.rng, self.agent, self.cloud, self.session, opt.seed)
            await self.agent.start(self.session)
            if not self.agent.alive:
                raise RuntimeError(f"the agent did not start: see {self.agent.log_path}")
            watchers = [
                asyncio.create_task(w())
                for w in (self.watch_shown, self.watch_rss, self.watch_exits)
            ]
            self.chaos.set()
            chaos = [
                asyncio.create_task(c())
                for c in (
                    self.people,
                    self.commands,
                    self.bus_faults,
                    self.board_faults,
                    self.cloud_faults,
                    self.disk_faults,
                    self.kills,
                )
            ]
            await asyncio.sleep(opt.chaos_s)
            chaos_s = time.monotonic() - started
            self.chaos.clear()
            self.ended.set()  # every line ends its step, heals, and returns
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await asyncio.gather(*chaos)
            settle_s = await self.settle()
            final_rss = self.agent.rss.get(self.agent.generation, [])
            last_life_s = time.monotonic() - self.agent.started_at
            healthz = await self.healthz()
            code, stop_s = await self.agent.stop()
            self.evaluate(report, chaos_s, settle_s, final_rss, last_life_s, healthz, code, stop_s)
        finally:
            self.chaos.clear()
            self.ended.set()
            for task in (*watchers, *chaos):
                task.cancel()
            await asyncio.gather(*watchers, *chaos, return_exceptions=True)
            await self.agent.kill()
            for handle in self._shuts.values():
                handle.cancel()
            if self.commander is not None:
                for task in list(self.commander.tasks):
                    task.cancel()
                await asyncio.gather(*self.commander.tasks, return_exceptions=True)
            if self.session is not None:
                await self.session.close()
            await self.cloud.close()
            await self.emulator.close()
            self.storage.close()
        report.figures["elapsed"] = f"{time.monotonic() - started:.1f} s"
        return report

    async def settle(self) -> float:
        """Heal every fault, finish the commands, wait (bounded) until all agree."""
        assert self.commander is not None
        started = time.monotonic()
        self.heal_bus()
        self.heal_boards()
        await self.heal_cloud()
        self.storage.free()
        assert self.session is not None
        async with self.agent.lock:
            if not self.agent.alive:  # a line ended between a kill and its restart
                await self.agent.kill()
                await self.agent.start(self.session)
        self.commander.stopping = True
        await self.commander.drain(60.0)
        for handle in self._shuts.values():
            handle.cancel()
        self.emulator.auto_shut_after_s = None
        for door in DOORS:  # the people go home and shut every door
            self.emulator.shut_door(door.board, door.channel)
        deadline = started + self.opt.settle_s
        parked_until = self.parked_until()
        if parked_until is not None and parked_until > time.monotonic():
            self.out(
                f"note: an absurd Retry-After may park the uplink {RETRY_AFTER_MAX_S:.0f} s:"
                f" settling up to {parked_until - time.monotonic():.0f} s longer"
            )
            deadline = max(deadline, parked_until + 30)
        while time.monotonic() < deadline:
            if await self._settled():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)  # a last look by the watchers
        return time.monotonic() - started

    async def _settled(self) -> bool:
        status, _ = await self.healthz()
        if status != 200:
            return False
        got = self.received()
        return all(
            got[d] and got[d][-1] == self.true[d][-1] and self.shown[d][-1:] == self.true[d][-1:]
            for d in DOORS
        )

    async def healthz(self) -> tuple[int | None, Any]:
        """The agent's /healthz status and body (None when it does not answer)."""
        assert self.session is not None
        try:
            async with self.session.get(self.api_url + "/healthz") as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return None, repr(exc)

    # -- the verdicts

    def agent_log(self) -> list[dict[str, Any]]:
        """The agent's JSON log lines (a line cut by SIGKILL is skipped)."""
        out = []
        with contextlib.suppress(OSError):
            for line in self.agent.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        out.append(entry)
        return out

    def evaluate(
        self,
        report: Report,
        chaos_s: float,
        settle_s: float,
        final_rss: list[tuple[float, int]],
        last_life_s: float,
        healthz: tuple[int | None, Any],
        stop_code: int | None,
        stop_s: float,
    ) -> None:
        """Compute the figures and the checks."""
        assert self.commander is not None
        log = self.agent_log()
        events = Counter(str(e.get("event")) for e in log)
        unsaved = {e.get("id") for e in log if e.get("event") == "commands.record_unsaved"}
        got = self.received()
        true = {d: collapse(s) for d, s in self.true.items()}
        shown = {d: collapse(s) for d, s in self.shown.items()}
        cloud = {d: collapse(s) for d, s in got.items()}
        f = report.figures
        f["seed, chaos, settle"] = f"{self.opt.seed}, {chaos_s:.1f} s, {settle_s:.1f} s"
        f["changes true/shown/recvd"] = (
            f"{sum(len(s) - 1 for s in true.values())} / "
            f"{sum(max(len(s) - 1, 0) for s in shown.values())} / "
            f"{sum(max(len(s) - 1, 0) for s in cloud.values())}"
            f"  (cloud entries {sum(len(s) for s in got.values())},"
            f" POSTs taken {len(self.cloud.received)}, refused 4xx {len(self.cloud.rejected)})"
        )

        # 1 and 2: lost and lying
        lost = [d.name for d in DOORS if not is_subsequence(shown[d], cloud[d])]
        lying = [d.name for d in DOORS if not is_subsequence(cloud[d], true[d])]
        report.checks.append(
            Check(
                "no change shown is lost (shown ⊆ received, per door)",
                "FAIL" if lost else "PASS",
                self._seq_detail(lost, shown, cloud, "shown", "received"),
            )
        )
        report.checks.append(
            Check(
                "in order, never a state it did not have (received ⊆ true, per door)",
                "FAIL" if lying else "PASS",
                self._seq_detail(lying, cloud, true, "received", "true"),
            )
        )

        # 3: pulses
        check, figures = judge_pulses(
            self.commander.commands,
            self.commander.unattributed,
            self.commander.pulses,
            unsaved,
            events,
        )
        report.checks.append(check)
        report.figures.update(figures)
        if self.commander.surprises:
            report.figures["soak surprises"] = dict(self.commander.surprises)

        # 4: memory
        rss = [kb for _, kb in final_rss]
        warm = [kb for t, kb in final_rss if t >= 10.0] or rss
        if rss:
            f["RSS last process"] = (
                f"start {warm[0] / 1024:.1f} MiB, end {rss[-1] / 1024:.1f} MiB,"
                f" max {max(rss) / 1024:.1f} MiB over {last_life_s:.0f} s"
                f" ({len(final_rss)} samples)"
            )
        if not rss or last_life_s < RSS_MIN_LIFE_S:
            report.checks.append(
                Check("memory did not grow", "SKIP", f"last process lived {last_life_s:.0f} s")
            )
        else:
            growth = rss[-1] - warm[0]
            report.checks.append(
                Check(
                    "memory did not grow",
                    "FAIL" if growth > RSS_GROWTH_LIMIT_KB else "PASS",
                    f"{growth / 1024:+.1f} MiB (limit {RSS_GROWTH_LIMIT_KB / 1024:.0f} MiB)",
                )
            )

        # 5: healthy at the end
        status, body = healthz
        wrong = [d.name for d in DOORS if not got[d] or got[d][-1] != self.true[d][-1]]
        healthy = status == 200 and not wrong
        detail = f"/healthz {status}"
        if status != 200:
            detail += f" {body.get('reasons') if isinstance(body, dict) else body}"
        if wrong:
            detail += f"; cloud's last state wrong for {wrong}"
        report.checks.append(Check("healthy at the end", "PASS" if healthy else "FAIL", detail))

        # 6: never dead, never followed a redirect, stops cleanly
        problems = []
        if self.agent.unexpected_exits:
            problems.append(f"exited on its own {self.agent.unexpected_exits}")
        if self.cloud.redirected:
            problems.append(f"followed {len(self.cloud.redirected)} redirects")
        if stop_code != 0 or stop_s > STOP_TIMEOUT_S:
            problems.append(f"SIGTERM: exit {stop_code} after {stop_s:.1f} s")
        report.checks.append(
            Check(
                "never dead, no redirect followed, clean stop",
                "FAIL" if problems else "PASS",
                "; ".join(problems) or f"SIGTERM: exit 0 in {stop_s:.1f} s",
            )
        )

        parking = [a for a in self.cloud.odd_answers if a["retry_after"] in PARKING_RETRY_AFTER]
        if parking:
            at = parking[0]["answered_at"]
            after = [r["received_at"] - at for r in self.cloud.received if r["received_at"] > at]
            kills = [k - at for k in self.agent.killed_at if k > at]
            f["absurd Retry-After"] = (
                f"{parking[0]['retry_after']!r} answered; the next POST taken"
                + (f" {after[0]:.0f} s later" if after else " never")
                + (f", a SIGKILL {kills[0]:.0f} s later" if kills else ", no SIGKILL since")
            )
        f["kills, restarts"] = f"{self.agent.kills}, {self.agent.generation - 1}"
        faults = Counter(self.faults)
        for name, n in self.emulator.bank.faults.items():
            faults[f"line: {name}"] += n
        f["faults"] = ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
        f["disk fills"] = (
            f"{self.storage.fills}" if self.storage.mounted or self.storage.fills else "skipped"
        )
        f["agent log"] = ", ".join(
            f"{name} {events[name]}"
            for name in (
                "outbox.write_failed",
                "commands.record_unsaved",
                "storage.unwritable",
                "storage.replaced",
                "journal.lost",
                "uplink.retry",
                "channel.retry",
                "door.open_retry",
                "kerong.silent_link_reopen",
            )
        )

    def _seq_detail(
        self,
        doors: list[str],
        small: dict[DoorRef, list[str]],
        big: dict[DoorRef, list[str]],
        small_name: str,
        big_name: str,
    ) -> str:
        if not doors:
            return f"{len(DOORS)} doors"
        door = next(d for d in DOORS if d.name == doors[0])

        def short(seq: list[str]) -> str:
            text = " ".join(s[0].upper() for s in seq)
            return text if len(text) <= 160 else text[:80] + " ... " + text[-75:]

        return (
            f"{doors}; {door.name} {small_name}: {short(small[door])} | "
            f"{big_name}: {short(big[door])}"
        )


async def run_soak(options: Options) -> Report:
    """One soak in a fresh work dir (removed afterwards unless ``keep`` or a FAIL)."""
    workdir = Path(tempfile.mkdtemp(prefix="locker-soak-"))
    report: Report | None = None
    try:
        report = await Soak(options, workdir).run()
        return report
    finally:
        if report is not None and not report.failed and not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            options.out(f"work dir kept: {workdir} (agent.log, agent.toml)")


async def _main(options: Options) -> Report:
    """run_soak, cancelled (cleanly: agent killed, tmpfs unmounted) by SIGTERM."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_soak(options)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run one soak, print the figures, exit 1 on a FAIL."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="chaos time (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=90.0, help="most seconds to heal")
    parser.add_argument("--no-disk", action="store_true", help="no tmpfs, no disk-full fault")
    parser.add_argument(
        "--disk-mb", type=int, default=DISK_MB, help=f"tmpfs size (default {DISK_MB})"
    )
    parser.add_argument(
        "--no-parking",
        action="store_true",
        help=f"no Retry-After that parks the uplink {RETRY_AFTER_MAX_S:.0f} s",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    options = Options(
        chaos_s=args.seconds,
        seed=args.seed,
        settle_s=args.settle,
        disk=not args.no_disk,
        disk_mb=args.disk_mb,
        parking=not args.no_parking,
        keep=args.keep,
    )
    print(f"chaos soak: {args.seconds:.0f} s, seed {args.seed}", flush=True)
    report = asyncio.run(_main(options))
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
