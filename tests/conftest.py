"""Fixtures and helpers shared across the test tree (``from tests.conftest import ...``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from simulator.cloud import FakeCloud
from simulator.web.disk import SmallDisk

CLOUD_KEY = "the-api-key"  # the api-key the `cloud` fixture accepts
AGENT = (sys.executable, "-m", "agent")  # ``locker-agent`` as a technician runs it


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """A test that runs ``cli.main()`` in-process leaves the agent's log set-up (its
    handler on the root logger, the root's level) to every later test of its worker:
    undone after each test."""
    import logging

    from agent import log

    level = logging.getLogger().level
    yield
    log.reset()
    logging.getLogger().setLevel(level)


@pytest.fixture
async def cloud():
    """The fake SYNQ cloud on loopback, accepting ``CLOUD_KEY``."""
    fake = FakeCloud(CLOUD_KEY)
    await fake.start()
    yield fake
    await fake.close()


TERM_GRACE_S = 10.0  # an agent stops this soon after SIGTERM (systemd waits longer)


@contextlib.asynccontextmanager
async def agent_running(
    *args: object, program: Sequence[str] = AGENT, **kw: object
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``locker-agent ARGS...`` as a process for the block (``program``: another command
    line before ARGS), SIGTERM at its end unless it already ended.

    Its stderr is kept: a failure in the block carries the exit status and the last
    stderr lines as a note, so a CI log says why an agent stopped, not only that it did.
    An agent still running ``TERM_GRACE_S`` after SIGTERM is killed, and the block fails
    (AssertionError) if it had not already: the end never waits for ever.
    """

    def said(err: BaseException) -> None:
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace").splitlines()[-15:]
        err.add_note(f"the agent (pid {proc.pid}, exit {proc.returncode}) said:")
        err.add_note("\n".join(tail) or "(nothing on stderr)")

    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(*program, *map(str, args), stderr=stderr, **kw)
        failed = False
        try:
            yield proc
        except BaseException as err:
            failed = True
            if proc.returncode is None:
                with contextlib.suppress(TimeoutError):  # still running: say so
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 0.1)
            said(err)
            raise
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), TERM_GRACE_S)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                    if not failed:  # a failing block's own error is the one to see
                        deaf = AssertionError(
                            f"the agent did not stop within {TERM_GRACE_S:g} s of SIGTERM"
                        )
                        said(deaf)
                        raise deaf from None


def run_agent(*args: object, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess:
    """``locker-agent ARGS...`` as a process, to its end; stdout and stderr as text."""
    return subprocess.run(
        [*AGENT, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def write_small_config(
    directory: Path,
    *,
    cloud: str = "http://127.0.0.1:9",
    secret: str = 'api_key = "k"',
    heartbeat_s: float = 60,
    api_port: int = 8080,
    token: str = "t",
    port: str = "/dev/null",
    cabinets: Mapping[int, int] = {0: 1},
    locker: str = "",
) -> Path:
    """``directory/agent.toml``: one KR-CU16 board 0 on bus ``rs485`` at ``port``, a
    cabinet per ``{key: channel}``, storage in ``directory``; ``secret`` is the
    ``[cloud]`` key line, ``locker`` the ``[locker]`` table's lines. Returns its path."""
    lines = [f"[locker]\n{locker}" if locker else ""]
    lines += [
        f'[cloud]\nurl = "{cloud}"\n{secret}\nheartbeat_s = {heartbeat_s}',
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{token}"',
        f'[storage]\ndir = "{directory}"',
        f'[[buses]]\nname = "rs485"\ndriver = "kerong-cu16"\nport = "{port}"\nboards = [0]',
    ]
    for key, channel in cabinets.items():
        wiring = f'{{ bus = "rs485", board = 0, channel = {channel} }}'
        lines.append(f"[[cabinets]]\nkey = {key}\nfront = {wiring}")
    path = directory / "agent.toml"
    path.write_text("\n\n".join(line for line in lines if line) + "\n")
    return path


NOBODY = 65534  # uid and gid of nobody / nogroup on Debian


@functools.cache
def python_for(uid: int = NOBODY) -> str | None:
    """An interpreter that user ``uid`` may run (this venv's may live under /root), for
    stdlib-only scripts run as that user; None when there is none or we are not root."""
    if os.geteuid() != 0:
        return None
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            done = subprocess.run(
                [candidate, "-c", "pass"], user=uid, group=uid, extra_groups=[], timeout=30
            )
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    return None


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or python_for() is None,
    reason="needs root, and a Python that nobody may run, to act as another user",
)


def as_user(
    script: str, *args: object, uid: int = NOBODY, gid: int = NOBODY, groups: Sequence[int] = ()
) -> tuple[list[str], dict[str, object]]:
    """``(argv, kwargs)`` for ``asyncio.create_subprocess_exec(*argv, **kwargs)`` (or
    ``subprocess.Popen``) running the stdlib-only ``script`` with ``args`` as
    ``uid``:``gid`` with exactly the supplementary ``groups``."""
    argv = [str(python_for()), "-c", script, *map(str, args)]
    return argv, {"user": uid, "group": gid, "extra_groups": list(groups)}


@pytest.fixture
def open_dir():
    """A fresh directory under /tmp that every user may enter and write (mode 1777: each
    removes only their own files), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="la-open-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "config"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))
PLACEHOLDER_KEY = "REPLACE-WITH-THIS-LOCKERS-API-KEY"  # what install.sh writes to api.key


def as_installed(
    example: Path, folder: Path, *, key: str = "the-lockers-api-key", url: str | None = None
) -> Path:
    """``example`` copied to ``folder/agent.toml`` as a technician does on a locker: beside
    the ``api.key`` (holding ``key``; ``PLACEHOLDER_KEY`` as install.sh leaves it) and
    ``api.token`` install.sh writes, mode 640; ``url`` replaces the example's cloud host
    when given. Returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = example.read_text()
    if url is not None:
        text = text.replace("https://REPLACE-WITH-THE-CLOUD-HOST", url)
    path = folder / "agent.toml"
    path.write_text(text)
    (folder / "api.key").write_text(key + "\n")
    (folder / "api.token").write_text("Zt7d0Q2u3KsCkq0ZQ1lY8rVwJ6mX4nBa5cE9fG2hH3i\n")
    for name in ("agent.toml", "api.key", "api.token"):
        (folder / name).chmod(0o640)
    return path


def mounted_disk(path: Path, mib: int) -> Iterator[SmallDisk]:
    """A ``mib`` MiB tmpfs at ``path`` for a test to fill, unmounted after (a fixture's
    body: ``yield from``); the test is skipped where it cannot be mounted (root only)."""
    disk = SmallDisk(path, mib)
    why_not = disk.mount()
    if why_not is not None:
        pytest.skip(why_not)
    yield disk
    disk.unmount()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 4 MiB tmpfs for the agent's storage, that the test fills."""
    yield from mounted_disk(tmp_path / "storage", 4)
