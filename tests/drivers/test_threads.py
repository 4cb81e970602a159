"""Blocking work in a daemon thread: answered on the loop, quiet after the loop closed."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from drivers.threads import in_daemon_thread

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


async def test_the_answer_and_the_error_come_back_on_the_loop():
    assert await in_daemon_thread(lambda: 4.0) == 4.0
    with pytest.raises(OSError, match="gone"):
        await in_daemon_thread(lambda: (_ for _ in ()).throw(OSError("gone")))


async def test_a_stopiteration_is_an_error_not_a_future_that_never_settles():
    with pytest.raises(RuntimeError, match="StopIteration"):
        await asyncio.wait_for(in_daemon_thread(lambda: next(iter(()))), 5)


async def test_the_callers_context_goes_with_the_work():
    WHO.set("thermal")
    assert await in_daemon_thread(WHO.get) == "thermal"


def test_a_read_that_outlives_its_loop_ends_quietly():
    """A read still in its thread when the agent stops: its answer has nobody to go to,
    and the thread ends without a traceback (it raised "Event loop is closed")."""
    release, done, errors = threading.Event(), threading.Event(), []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)

    def slow_read() -> float:
        release.wait(5)
        done.set()
        return 4.0

    async def start() -> None:
        in_daemon_thread(slow_read, "slow-read")

    try:
        asyncio.run(start())  # the loop is closed when this returns
        release.set()
        assert done.wait(5)
        for thread in threading.enumerate():
            if thread.name == "slow-read":
                thread.join(5)
    finally:
        threading.excepthook = hook
    assert errors == []
