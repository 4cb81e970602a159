"""The cloud command channel: a websocket on which the cloud sends cabinet commands.

The cloud sends ``{"id": ..., "key": 5, "command": "open", ...}`` (the body of
"Update the state of a locker cabinet" plus an id and the cabinet key); the
agent answers ``{"id": ..., "ok": true, "cabinet": {...}}`` or ``{"id": ...,
"ok": false, "error": {...}}`` in the local API's error model.

One supervisor task owns the connection and reconnects forever, with backoff
and full jitter, until ``close()``: a retry loop that gives up leaves a locker
deaf for good. Each message runs in its own task, so a slow open of one cabinet
does not hold up another's command (the Locker serialises per cabinet), and a
command runs once per id: the cloud resends an unanswered id after a reconnect
and gets the first result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr
from yarl import URL

from agent.cloud.backoff import Backoff
from agent.cloud.session import RedirectRefused, cloud_session
from agent.locker.commands import error_body, parse_command, problem
from agent.locker.errors import Invalid, LockerError
from agent.locker.idempotency import MAX_ID_LENGTH
from agent.locker.locker import Locker

log = structlog.get_logger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # TCP + TLS + upgrade; a hung handshake counts as a failure
CLOSE_TIMEOUT_S = 2.0  # wait for the cloud's close frame, no longer: close() stays prompt
STABLE_S = 30.0  # a connection up this long resets the backoff
DOWN_GRACE_S = 10.0  # a drop fixed by the first reconnect is not a health problem
MAX_MESSAGE_BYTES = 256 * 1024  # commands are tiny; the cloud never needs more


class CommandChannel:
    """The cloud's command websocket at ``url`` (ws:// or wss://); commands go to ``locker``.

    Authenticated by ``api_key``. Seconds: ``backoff_base_s`` / ``backoff_cap_s`` of
    the reconnect backoff, ``heartbeat_s`` between websocket pings.
    Lifecycle: ``start()`` returns at once (it connects in the background), ``close()``.
    """

    def __init__(
        self,
        url: str,
        api_key: SecretStr,
        locker: Locker,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        heartbeat_s: float = 30.0,
        rand: Callable[[], float] = random.random,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.host:
            raise ValueError("the command channel url must be ws:// or wss:// with a host")
        self._url = url
        # Logged instead of the url: a user:password in it must not reach a log.
        self._where = str(parsed.with_user(None).with_query(None))
        self._api_key = api_key
        self._locker = locker
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rand)
        self._heartbeat_s = heartbeat_s
        self._ssl = ssl_context  # a private CA; None: the system's, verified
        self._session: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closed = False
        # Health: when the channel went down (monotonic, wall clock), why, and whether a
        # connection attempt has failed since then.
        self._down_since = (time.monotonic(), time.time())
        self._reason = "not connected yet"
        self._attempt_failed = False
        self._auth_problem: str | None = None
        self.received = 0  # messages handled, for tests and the status page

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Returns at once; the supervisor connects in the background."""
        if self._supervisor is not None or self._closed:
            return
        timeout = aiohttp.ClientTimeout(
            total=None, connect=HANDSHAKE_TIMEOUT_S, sock_read=HANDSHAKE_TIMEOUT_S
        )
        self._session = cloud_session(timeout, self._ssl)
        self._down_since = (time.monotonic(), time.time())
        self._supervisor = asyncio.create_task(self._supervise(), name="command-channel")

    async def close(self) -> None:
        """Stop reconnecting, drop the socket, cancel commands still running. Idempotent."""
        self._closed = True
        tasks = [t for t in (self._supervisor, *self._handlers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._supervisor = None
        self._handlers.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def ended(self) -> str | None:
        """Why the channel's supervisor stopped for good (a bug escaped it), for the
        watchdog; None while it runs or after ``close``."""
        task = self._supervisor
        if self._closed or task is None or not task.done() or task.cancelled():
            return None
        error = task.exception()
        return f"command channel: its loop ended ({type(error).__name__ if error else 'returned'})"

    @property
    def connected(self) -> bool:
        """Whether the websocket is up now."""
        return self._ws is not None and not self._ws.closed

    def problems(self) -> list[str]:
        """Health lines for /healthz; a drop mended within ``DOWN_GRACE_S`` is none."""
        if self._closed or self._supervisor is None or self.connected:
            return []
        if self._auth_problem is not None:
            return [self._auth_problem]
        down_for = time.monotonic() - self._down_since[0]
        if not self._attempt_failed and down_for < DOWN_GRACE_S:
            return []
        since = datetime.fromtimestamp(self._down_since[1], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return [f"command channel: disconnected since {since} ({self._reason})"]

    # --- the supervisor ----------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            up_s: float | None = None
            try:
                up_s = await self._connect_and_serve()
            except aiohttp.WSServerHandshakeError as exc:
                self._attempt_failed = True
                if exc.status in (401, 403):
                    self._auth_problem = (
                        f"command channel: cloud rejects the api-key (HTTP {exc.status})"
                    )
                    self._reason = self._auth_problem.removeprefix("command channel: ")
                    log.error("channel.unauthorized", status=exc.status)
                else:
                    self._reason = f"cloud refused the websocket (HTTP {exc.status})"
            except RedirectRefused as exc:
                self._attempt_failed = True
                self._reason = str(exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._attempt_failed = True
                self._reason = f"cloud unreachable: {type(exc).__name__}"
            except Exception:  # a bug here must not end the channel for good
                log.exception("channel.error")
                self._attempt_failed = True
                self._reason = "channel error"

            if up_s is not None and up_s >= STABLE_S:
                self._backoff.reset()
            delay = self._backoff.next_s()
            log.warning(
                "channel.retry",
                problem=self._reason,
                attempt=self._backoff.failures,
                delay_s=round(delay, 2),
            )
            await asyncio.sleep(delay)

    async def _connect_and_serve(self) -> float:
        """One connection, read until it ends; returns how long it stayed up."""
        assert self._session is not None
        ws = await self._session.ws_connect(
            self._url,
            headers={"api-key": self._api_key.get_secret_value()},
            heartbeat=self._heartbeat_s,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
            max_msg_size=MAX_MESSAGE_BYTES,
            autoclose=True,
            autoping=True,
        )
        up_at = time.monotonic()
        self._ws = ws
        self._auth_problem = None
        self._attempt_failed = False
        log.info("channel.connected", url=self._where)
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await self._take(ws, msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    await self._take(ws, None)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    self._reason = f"connection error: {type(msg.data).__name__}"
                    break
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    problem = ws.exception()
                    self._reason = (
                        f"connection lost: {type(problem).__name__}"
                        if problem is not None
                        else f"closed by the cloud (code {ws.close_code})"
                    )
                    break
        finally:
            self._ws = None
            self._down_since = (time.monotonic(), time.time())
            up_s = time.monotonic() - up_at
            # Shielded: a close() that cancels us still says goodbye, bounded by CLOSE_TIMEOUT_S.
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())
            if not self._closed:
                log.warning("channel.disconnected", reason=self._reason, up_s=round(up_s, 1))
        return up_s

    # --- one message -------------------------------------------------------------

    async def _take(self, ws: aiohttp.ClientWebSocketResponse, text: str | None) -> None:
        """Parse and admit one message now; answer a refusal at once, else in a task.

        Only the parsed command waits (``Locker.submit`` bounds how many): a flood
        costs the agent the answers, never its memory, and reading goes on.
        """
        self.received += 1
        taken = self._admit(text)
        del text
        if isinstance(taken, dict):
            await self._send(ws, taken)
            return
        task = asyncio.create_task(self._finish(ws, *taken), name="channel-command")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _finish(
        self, ws: aiohttp.ClientWebSocketResponse, command_id: Any, running: asyncio.Task[Any]
    ) -> None:
        try:
            answer = {"id": command_id, "ok": True, "cabinet": await asyncio.shield(running)}
        except LockerError as err:
            answer = _failure(command_id, err)
        except Exception:  # a bug in one command must not end the channel
            log.exception("channel.command_failed", id=command_id)
            error = problem(500, "INTERNAL_ERROR", "internal error")
            answer = {"id": command_id, "ok": False, "error": error}
        await self._send(ws, answer)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, answer: dict[str, Any]) -> None:
        try:
            await ws.send_str(json.dumps(answer))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            # The cloud resends an unanswered id; the command log returns this same answer.
            log.warning(
                "channel.answer_lost",
                id=answer["id"],
                ok=answer["ok"],
                error=type(exc).__name__,
            )
            return
        log.debug("channel.answered", id=answer["id"], ok=answer["ok"])

    def _admit(self, text: str | None) -> dict[str, Any] | tuple[Any, asyncio.Task[Any]]:
        """An answer now (a refusal), or ``(id, the running command)``."""
        if text is None:
            return _failure(None, Invalid("binary messages are not accepted: send JSON text"))
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return _failure(None, Invalid("the message is not JSON"))
        if not isinstance(data, dict):
            return _failure(None, Invalid("the message must be a JSON object"))

        raw_id = data.pop("id", None)
        raw_key = data.pop("key", None)
        errors: dict[str, list[str]] = {}
        command_id = raw_id if _is_id(raw_id) else None
        if raw_id is None:
            errors["id"] = ["required"]
        elif command_id is None:
            errors["id"] = [f"must be an integer or a string of 1-{MAX_ID_LENGTH} characters"]
        if raw_key is None:
            errors["key"] = ["required"]
        elif not _is_int(raw_key):
            errors["key"] = ["must be an integer"]
        if errors:
            first = next(iter(errors.items()))
            err = Invalid(f"{first[0]}: {first[1][0]}", errors)
            # Echo an id the cloud can match, even one we refuse to act on.
            echo = (
                raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
            )
            return _failure(echo, err)

        try:
            cmd = parse_command(data)
            # Own namespace: a cloud id never collides with a local Idempotency-Key.
            return command_id, self._locker.submit(raw_key, cmd, f"cloud:{command_id!r}")
        except LockerError as err:
            return _failure(command_id, err)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH) or _is_int(value)


def _failure(command_id: str | int | None, err: LockerError) -> dict[str, Any]:
    return {"id": command_id, "ok": False, "error": error_body(err)[1]}
