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

Liveness: a socket can stay open while nothing passes (a proxy that swallows
traffic), and commands sent meanwhile wait for nothing. The agent pings at once
on connecting and whenever it has heard nothing for ``ping_s``; a connection on
which nothing at all (a pong, a ping, a command) was heard for ``silence_s`` is
dead, is said so at once and is replaced. A silent peer is therefore noticed at
most ``silence_s`` (12 s) after the last frame it sent. The link is up once the
peer was heard on a connection, not when the socket opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr
from yarl import URL

from agent.cloud.backoff import Backoff
from agent.cloud.key import AUTH_RETRY_S, ApiKey
from agent.cloud.link import LinkHealth, duration
from agent.cloud.messages import Provision, admit, failure
from agent.cloud.session import RedirectRefused, cloud_session
from agent.locker.commands import problem
from agent.locker.errors import LockerError
from agent.locker.locker import Locker

log = structlog.get_logger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # TCP + TLS + upgrade; a hung handshake counts as a failure
CLOSE_TIMEOUT_S = 2.0  # wait for the cloud's close frame, no longer: close() stays prompt
STABLE_S = 30.0  # a connection up this long resets the backoff
DOWN_GRACE_S = 10.0  # a drop fixed by the first reconnect is not a health problem
PING_S = 5.0  # a ping after this long without hearing the cloud (and one on connecting)
SILENCE_S = 12.0  # nothing heard this long: the cloud is gone (7 s for the pong to come)
MAX_MESSAGE_BYTES = 256 * 1024  # commands are tiny; the cloud never needs more
_HEARD = frozenset(
    {
        aiohttp.WSMsgType.TEXT,
        aiohttp.WSMsgType.BINARY,
        aiohttp.WSMsgType.PING,
        aiohttp.WSMsgType.PONG,
    }
)


class CommandChannel:
    """The cloud's command websocket at ``url`` (ws:// or wss://); commands go to ``locker``.

    Authenticated by ``api_key`` (an ``ApiKey`` shared with the uplink, or a fixed key);
    ``codes`` provisions pickup codes from ``codes`` messages.
    Seconds: ``backoff_base_s`` / ``backoff_cap_s`` of the reconnect backoff, ``ping_s``
    and ``silence_s`` of liveness (``silence_s`` > ``ping_s``, else ValueError),
    ``auth_retry_s`` after the cloud refused the key (a new key file ends it sooner).
    ``health`` keeps up/down and the drops. Lifecycle: ``start()`` returns at once (it
    connects in the background), ``close()``.
    """

    def __init__(
        self,
        url: str,
        api_key: SecretStr | ApiKey,
        locker: Locker,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        ping_s: float = PING_S,
        silence_s: float = SILENCE_S,
        auth_retry_s: float = AUTH_RETRY_S,
        rand: Callable[[], float] = random.random,
        ssl_context: ssl.SSLContext | None = None,
        codes: Provision | None = None,
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.host:
            raise ValueError("the command channel url must be ws:// or wss:// with a host")
        if not 0 < ping_s < silence_s:
            raise ValueError("ping_s must be above 0 and below silence_s")
        self._url = url
        # Logged instead of the url: a user:password in it must not reach a log.
        self._where = str(parsed.with_user(None).with_query(None))
        self._key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)
        self._locker = locker
        self._codes = codes  # the ``codes`` messages' provisioning, when pickup codes are kept
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rand)
        self.ping_s = ping_s
        self.silence_s = silence_s
        self._auth_retry_s = auth_retry_s
        self._ssl = ssl_context  # a private CA; None: the system's, verified
        self._session: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closed = False
        self.health = LinkHealth("command channel")
        # Whether the channel's being down is a problem before DOWN_GRACE_S: a try
        # failed, or the cloud fell silent, since it was last heard.
        self._report_now = False
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
        """Whether the websocket is open now (the cloud may still be silent on it)."""
        return self._ws is not None and not self._ws.closed

    def problems(self) -> list[str]:
        """Health lines for /healthz: down (a drop mended within ``DOWN_GRACE_S`` is
        none, a silent cloud is one at once), refused, or dropping again and again."""
        health = self.health
        if self._closed or self._supervisor is None:
            return []
        if health.up:
            unstable = health.unstable()
            return [unstable] if unstable else []
        if self._auth_problem is not None:
            return [self._auth_problem]
        down_for = health.down_for()
        if not self._report_now and down_for < DOWN_GRACE_S:
            return []
        flapping = health.flapping()
        line = f"command channel: disconnected for {duration(down_for)} ({health.reason})"
        return [line + (f"; {flapping}" if flapping else "")]

    # --- the supervisor ----------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            up_s: float | None = None
            generation = self._key.generation  # the key this try sends
            refused = False
            try:
                up_s = await self._connect_and_serve()
            except aiohttp.WSServerHandshakeError as exc:
                self._report_now = True
                if exc.status in (401, 403):
                    refused = True
                    self._auth_problem = (
                        f"command channel: cloud rejects the api-key (HTTP {exc.status})"
                        + self._key.hint()
                    )
                    self.health.went_down(f"cloud rejects the api-key (HTTP {exc.status})")
                    log.error("channel.unauthorized", status=exc.status)
                else:
                    self.health.went_down(f"cloud refused the websocket (HTTP {exc.status})")
            except RedirectRefused as exc:
                self._report_now = True
                self.health.went_down(str(exc))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._report_now = True
                self.health.went_down(f"cloud unreachable: {type(exc).__name__}")
            except Exception:  # a bug here must not end the channel for good
                log.exception("channel.error")
                self._report_now = True
                self.health.went_down("channel error")

            if refused:
                # Slowly, unless the key file brings a new key: then at once.
                log.warning("channel.retry", problem=self.health.reason, delay_s=self._auth_retry_s)
                await self._key.refused(generation, self._auth_retry_s)
                continue
            if up_s is not None and up_s >= STABLE_S:
                self._backoff.reset()
            delay = self._backoff.next_s()
            log.warning(
                "channel.retry",
                problem=self.health.reason,
                attempt=self._backoff.failures,
                delay_s=round(delay, 2),
            )
            await asyncio.sleep(delay)

    async def _connect_and_serve(self) -> float:
        """One connection, read until it ends or falls silent; returns how long it was open."""
        assert self._session is not None
        ws = await self._session.ws_connect(
            self._url,
            headers=self._key.header(),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
            max_msg_size=MAX_MESSAGE_BYTES,
            autoclose=True,
            autoping=False,  # pings and pongs are heard here: they prove the cloud alive
        )
        up_at = time.monotonic()
        self._ws = ws
        self._auth_problem = None
        log.info("channel.connected", url=self._where)
        reason = "channel closed"
        try:
            reason = await self._serve(ws)
        finally:
            self._ws = None
            if self._closed:
                self.health.up = False  # stopping is not a drop
            else:
                self.health.went_down(reason)
            up_s = time.monotonic() - up_at
            # Shielded: a close() that cancels us still says goodbye, bounded by CLOSE_TIMEOUT_S.
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())
            if not self._closed:
                log.warning("channel.disconnected", reason=reason, up_s=round(up_s, 1))
        return up_s

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Read and answer until the connection ends; returns why it ended.

        Every frame heard resets the silence; after ``ping_s`` of it a ping goes out
        (one also at once), and ``silence_s`` of it ends the connection.
        """
        loop = asyncio.get_running_loop()
        heard = loop.time()
        # At once: the link is up when the cloud answers, not when the socket opens.
        lost = await _ping(ws, self.silence_s)
        if lost is not None:
            return lost
        pinged = True
        while True:
            quiet = loop.time() - heard
            if quiet >= self.silence_s:
                self._report_now = True
                log.warning("channel.silent", silence_s=self.silence_s)
                return f"cloud silent: nothing heard for {self.silence_s:g} s"
            if not pinged and quiet >= self.ping_s:
                pinged = True
                lost = await _ping(ws, self.silence_s - quiet)
                if lost is not None:
                    return lost
                continue
            wait = (self.silence_s if pinged else self.ping_s) - quiet
            try:
                msg = await ws.receive(timeout=max(wait, 0.001))
            except TimeoutError:
                continue
            if msg.type in _HEARD:  # a frame from the cloud: it is alive
                heard, pinged = loop.time(), False
                self.health.went_up()
                self._report_now = False
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._take(ws, msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await self._take(ws, None)
            elif msg.type is aiohttp.WSMsgType.PING:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                    await ws.pong(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return f"connection error: {type(msg.data).__name__}"
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                problem = ws.exception()
                if problem is not None:
                    return f"connection lost: {type(problem).__name__}"
                return f"closed by the cloud (code {ws.close_code})"

    # --- one message -------------------------------------------------------------

    async def _take(self, ws: aiohttp.ClientWebSocketResponse, text: str | None) -> None:
        """Parse and admit one message now; answer a refusal at once, else in a task.

        Only the parsed command waits (``Locker.submit`` bounds how many): a flood
        costs the agent the answers, never its memory, and reading goes on.
        """
        self.received += 1
        taken = admit(self._locker, text, self._codes)
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
        except LockerError as err:  # a command a stop ended too: Dispatch.command says so
            answer = failure(command_id, err)
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


async def _ping(ws: aiohttp.ClientWebSocketResponse, within_s: float) -> str | None:
    """Send a ping, waiting at most ``within_s`` for the socket to take it; None, or why
    the connection is lost."""
    try:
        async with asyncio.timeout(max(within_s, 0.001)):
            await ws.ping()
    except TimeoutError:
        return "cloud silent: a ping could not be sent"
    except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
        return f"connection lost: {type(exc).__name__}"
    return None
