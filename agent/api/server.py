"""The local HTTP API: cabinets as the cloud shows them, and the cloud's command body.

Every answer the agent gives is JSON; bad input of any kind is a 4xx in the error
model ``{"status_code", "type", "message", "errors"}``, never a 500 or a dropped
connection. ``/openapi.json`` describes every route and every answer
(``agent.api.openapi``).

Who may ask (``docs/security.md``): every request names a ``Host`` the agent serves
and an origin-form target; a request that acts (anything but GET and HEAD) comes
from no foreign ``Origin`` and carries its body as ``application/json``; every route
but ``/healthz`` needs the token, as ``Authorization: Bearer`` or, on requests that
read, ``?secret_token=``. Acting requests are rate-limited per cabinet and for the
API as a whole (429 with ``Retry-After``). Connections are capped and timed by
``agent.api.guard``.

The same application is also served on the technicians' Unix socket
(``agent.api.unix``), where the peer's credentials stand in for the token.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from agent.api import thermal as api_thermal
from agent.api.admission import (
    API_RATE,
    CABINET_RATE,
    LOCAL_NAMES,
    Admission,
    HttpProblem,
    RateLimit,
    http_type,
)
from agent.api.guard import ConnectionGate, GuardedConnection
from agent.api.peers import PeerPolicy
from agent.api.unix import PeerSite, peer_check
from agent.locker.commands import error_body, parse_command, parse_open_all, problem
from agent.locker.errors import Busy, Invalid, LockerError, NotFound, Unavailable
from agent.locker.idempotency import MAX_ID_LENGTH
from agent.locker.locker import Locker
from agent.thermal.service import Thermal

log = structlog.get_logger(__name__)

MAX_BODY = 16 * 1024
SOCKET_CONNECTIONS = 16  # technicians on the Unix socket, open at once
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HealthFn = Callable[[], list[str]]
DetailsFn = Callable[[], dict[str, Any]]


def _error(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(problem(status, type_, message), status=status, headers=headers)


def _domain_error(err: LockerError) -> web.Response:
    status, body = error_body(err)
    headers = None
    if isinstance(err, Busy):  # when the lock's turn or a place in the queue comes
        headers = {"Retry-After": str(max(1, math.ceil(err.retry_after_s)))}
    return web.json_response(body, status=status, headers=headers)


class LocalApi:
    """The local HTTP API on ``host``:``port``; every route but ``/healthz`` needs ``token``.

    ``problems()`` gives /healthz its reasons, ``details()`` its figures.
    ``allowed_hosts``: names a ``Host`` may carry besides the listen address,
    ``localhost``, ``127.0.0.1``, ``[::1]`` and the connection's own address (else
    421). ``max_connections``: open at most (an idle one gives way to a new one).
    ``head_timeout_s`` / ``body_timeout_s``: seconds to send a head (from connecting
    or the previous answer) and then the body. ``cabinet_rate``: acting requests on
    one cabinet (open-all counts on each); ``api_rate``: acting requests in all.
    ``clock``: monotonic seconds. ``thermal``: thermal control (its records, its reset).
    ``socket``: also serve on this Unix socket, to the peers ``peers`` names (default
    ``PeerPolicy.for_agent()``: root, this user, the group ``locker-agent``), no token.
    Lifecycle: ``start()`` binds (``OSError`` when the address is taken,
    ``SocketUnavailable`` when the socket cannot be served), ``close()``.
    """

    def __init__(
        self,
        locker: Locker,
        token: SecretStr,
        problems: HealthFn,
        host: str,
        port: int,
        details: DetailsFn = dict,
        *,
        allowed_hosts: Iterable[str] = (),
        max_connections: int = 64,
        head_timeout_s: float = 10.0,
        body_timeout_s: float = 10.0,
        cabinet_rate: RateLimit = CABINET_RATE,
        api_rate: RateLimit = API_RATE,
        clock: Callable[[], float] = time.monotonic,
        metrics: Callable[[], bytes] | None = None,
        thermal: Thermal | None = None,
        socket: Path | None = None,
        peers: PeerPolicy | None = None,
    ) -> None:
        self._locker = locker
        self._details = details
        self._problems = problems
        self._host = host
        self._port = port
        self._admission = Admission(
            token.get_secret_value().encode(),
            (*LOCAL_NAMES, host, *allowed_hosts),
            cabinet_rate=cabinet_rate,
            api_rate=api_rate,
            clock=clock,
        )
        self._body_timeout_s = body_timeout_s
        self.gate = ConnectionGate(max_connections, head_timeout_s, body_timeout_s)
        self.socket = socket
        self.socket_gate = ConnectionGate(
            SOCKET_CONNECTIONS,
            head_timeout_s,
            body_timeout_s,
            check_peer=peer_check(peers or PeerPolicy.for_agent()),
        )
        self._site: PeerSite | None = None
        self.ready = False
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.app = web.Application(
            client_max_size=MAX_BODY, middlewares=[self._errors, self._admit]
        )
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/openapi.json", self._openapi)
        self._metrics = metrics
        self.app.router.add_get("/metrics", self._metrics_text)
        self.app.router.add_get("/api/lockers/cabinets", self._list)
        self.app.router.add_get("/api/lockers/cabinets/{key}", self._get)
        self.app.router.add_put("/api/lockers/cabinets/{key}", self._put)
        self.app.router.add_post("/api/lockers/open-all", self._open_all)
        api_thermal.add_routes(self.app, locker, thermal, _key, self._json)
        self._document: bytes | None = None  # built at the first /openapi.json

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._listener is not None
        return int(self._listener.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Connections open now (at most ``max_connections``)."""
        return self.gate.open

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address is taken."""
        # A command still running at shutdown gets a second, then is cancelled (its
        # motor or pulse stops in the driver): the agent must stop within 5 s.
        # keepalive_timeout backs up the gate's head deadline.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=self.gate.head_timeout_s + 1.0,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(
                self.gate.factory(server), self._host, self._port
            )
            if self.socket is not None:
                self._site = PeerSite(self._runner, self.socket, self.socket_gate)
                await self._site.start()
        except OSError:
            await self.close()
            raise
        log.info("api.listening", host=self._host, port=self.port)

    async def close(self) -> None:
        """Stop serving; commands still running get a second, then are cancelled.
        The socket file goes first: a technician's command now says the agent is down."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.gate.abort_all()
        self.socket_gate.abort_all()
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None

    # --- middlewares -----------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = _connection(request)
        try:
            response = await self._answer(request, handler)
        finally:
            if conn is not None:
                conn.answered()
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except LockerError as err:
            return _domain_error(err)
        except HttpProblem as exc:
            response = _error(exc.status, exc.type, exc.message, exc.headers)
            if exc.close:
                response.force_close()
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = http_type(exc.status)
            message = exc.reason if exc.status != 413 else f"body over {MAX_BODY} bytes"
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _error(exc.status, kind, message, allow)
        except Exception:
            log.exception("api.error", path=request.path)
            return _error(500, "INTERNAL_ERROR", "internal error")

    @web.middleware
    async def _admit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = _connection(request)
        self._admission.admit(request, by_peer=conn is not None and conn.by_peer)
        return await handler(request)

    # --- handlers --------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        reasons = self._problems() if self.ready else ["starting"]
        if self._site is not None and (gone := self._site.problem()) is not None:
            reasons.append(gone)
        status = 200 if not reasons else 503
        body = {"status": "ok" if status == 200 else "degraded", "reasons": reasons}
        body |= {"connections": self.gate.stats()} | self._details()
        if self.socket is not None:
            body["socket"] = {"path": str(self.socket)} | self.socket_gate.stats()
        return web.json_response(body, status=status)

    async def _metrics_text(self, request: web.Request) -> web.Response:
        body = self._metrics() if self._metrics is not None else b""
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _openapi(self, request: web.Request) -> web.Response:
        if self._document is None:
            # Built (and its module and pydantic's JSON schema loaded) on first request:
            # most lockers never serve it, and it cost memory at rest (issue 19).
            from agent.api import openapi

            self._document = json.dumps(openapi.document()).encode()
        return web.Response(body=self._document, content_type="application/json")

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([c.as_cloud() for c in self._locker.cabinets.values()])

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._locker.get(_key(request)).as_cloud())

    def _check_ready(self) -> None:
        if not self.ready:  # before the start-up snapshot, a change would not be queued
            raise Unavailable("the agent is starting")

    async def _put(self, request: web.Request) -> web.Response:
        self._check_ready()
        key = _key(request)
        self._locker.get(key)  # 404 before reading the body
        command = parse_command(await self._json(request))
        given = request.headers.get("Idempotency-Key")
        if given is not None and not 0 < len(given) <= MAX_ID_LENGTH:
            raise Invalid(f"Idempotency-Key is 1 to {MAX_ID_LENGTH} characters")
        # Own namespace: a local key never collides with a cloud command id.
        command_id = None if given is None else f"local:{given}"
        if command_id is None or not self._locker.knows_command(command_id):
            self._admission.take([key])  # a repeat answers without acting: not limited
        answer = await asyncio.shield(self._locker.submit(key, command, command_id))
        return web.json_response(answer)

    async def _open_all(self, request: web.Request) -> web.Response:
        """Technicians: open every enabled cabinet, pulses staggered by the power budget."""
        self._check_ready()
        body = parse_open_all(await self._json(request) if request.body_exists else {})
        self._admission.take(self._locker.cabinets)
        side = "rear" if body.rearload else "front"
        out = []
        for key, result in await self._locker.open_all(side, reason=body.reason):
            if isinstance(result, LockerError):
                out.append({"key": key, "ok": False, "error": error_body(result)[1]})
            else:
                out.append({"key": key, "ok": True, "cabinet": result.as_cloud()})
        return web.json_response(out)

    async def _json(self, request: web.Request) -> Any:
        """The body as JSON, read within ``body_timeout_s``; 400, 408 or 413 else."""
        try:
            async with asyncio.timeout(self._body_timeout_s):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise HttpProblem(413, f"body over {MAX_BODY} bytes", close=True) from None
        except TimeoutError:
            raise HttpProblem(408, "the body did not arrive in time", close=True) from None
        except ConnectionError:  # the peer went away mid-body: nobody to answer
            raise HttpProblem(400, "the body ended early", close=True) from None
        try:
            return json.loads(body, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
            raise HttpProblem(400, f"body is not JSON: {exc}"[:200]) from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once (``{"command": "close", "command":
    "open"}`` is refused, not read as its last value)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key is given twice")
    return out


def _connection(request: web.Request) -> GuardedConnection | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, GuardedConnection) else None


def _key(request: web.Request) -> int:
    raw = request.match_info["key"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound(f"no cabinet with key {raw[:20]!r}")
    return int(raw)
