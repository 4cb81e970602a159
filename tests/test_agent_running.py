"""The tests' own ``agent_running`` helper (tests/conftest.py): what it says about an
agent when a block fails, and that a block never waits for ever on an agent."""

import asyncio
import signal
import sys
import time

import pytest

from tests import conftest
from tests.conftest import agent_running

# Ignores SIGTERM, says so on stdout, then on stderr that it would rather not stop.
DEAF = (
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('deaf', file=sys.stderr, flush=True)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n",
)


async def test_an_agent_deaf_to_sigterm_is_killed_and_the_block_fails(monkeypatch):
    """An agent that never stopped on SIGTERM held the test at the block's end until
    pytest-timeout cut the whole worker off, and the process was left running."""
    monkeypatch.setattr(conftest, "TERM_GRACE_S", 1.0)
    started = time.monotonic()
    with pytest.raises(AssertionError, match="did not stop within 1 s of SIGTERM") as caught:
        async with agent_running(program=DEAF, stdout=asyncio.subprocess.PIPE) as proc:
            assert proc.stdout is not None
            assert await proc.stdout.readline() == b"ready\n"
    assert time.monotonic() - started < 20
    assert proc.returncode == -signal.SIGKILL
    assert "deaf" in "\n".join(caught.value.__notes__)


async def test_a_failing_block_keeps_its_error_when_the_agent_is_deaf(monkeypatch):
    monkeypatch.setattr(conftest, "TERM_GRACE_S", 1.0)
    with pytest.raises(TimeoutError) as caught:
        async with agent_running(program=DEAF, stdout=asyncio.subprocess.PIPE) as proc:
            assert proc.stdout is not None
            await proc.stdout.readline()
            async with asyncio.timeout(0.1):
                await asyncio.sleep(5)
    assert proc.returncode == -signal.SIGKILL
    notes = "\n".join(caught.value.__notes__)
    assert "exit None" in notes and "deaf" in notes


async def test_a_dead_agent_is_named_with_its_exit_and_last_words():
    said = (sys.executable, "-c", "import sys; print('bad config', file=sys.stderr); sys.exit(2)")
    with pytest.raises(ProcessLookupError) as caught:
        async with agent_running(program=said) as proc:
            await proc.wait()
            raise ProcessLookupError
    notes = "\n".join(caught.value.__notes__)
    assert "exit 2" in notes and "bad config" in notes
