"""Blocking work (a 1-wire read, a clock probe) in a daemon thread, answered on the loop.

``asyncio.to_thread``'s pool is joined at exit: a read hung in the kernel would keep
the process from stopping. A daemon thread is left behind instead, and its answer,
if it ever comes after the loop closed, goes nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any


def in_daemon_thread(work: Callable[[], Any], name: str = "blocking-work") -> asyncio.Future[Any]:
    """``work()`` in a daemon thread named ``name``, with the caller's context (structlog's
    bound values), as a future of the running loop that raises what ``work`` raised."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            result, exc = context.run(work), None
        except StopIteration as caught:  # a future cannot carry it: asyncio refuses
            result, exc = None, RuntimeError(f"StopIteration in {name}: {caught!r}")
        except BaseException as caught:  # handed to the loop, raised where awaited
            result, exc = None, caught
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_settle, future, result, exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return  # cancelled by its caller meanwhile
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
