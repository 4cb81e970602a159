"""The local HTTP API: cabinets as the cloud shows them, and the cloud's command body.

Every answer is JSON; bad input of any kind is a 4xx in the error model
``{"status_code", "type", "message", "errors"}``, never a 500 or a dropped connection.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from agent.commands import error_body, parse_command, parse_open_all, problem
from agent.errors import Invalid, LockerError, NotFound, Unavailable
from agent.idempotency import MAX_ID_LENGTH
from agent.locker import Locker

log = structlog.get_logger(__name__)

MAX_BODY = 16 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HealthFn = Callable[[], list[str]]
DetailsFn = Callable[[], dict[str, Any]]

_HTTP_TYPES = {
    400: "INVALID_REQUEST",
    401: "INVALID_TOKEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response(problem(status, type_, message), status=status)


def _domain_error(err: LockerError) -> web.Response:
    status, body = error_body(err)
    return web.json_response(body, status=status)


class _HttpProblem(Exception):
    """An HTTP-level refusal (auth, body size, not JSON): the edge's own errors."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


def _token_from(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("secret_token", "")


class LocalApi:
    """The local HTTP API on ``host``:``port``, every route but ``/healthz`` behind
    the bearer ``token``. ``problems()`` gives /healthz its reasons; ``details()``
    adds figures to it. ``start()`` binds, ``close()`` stops."""

    def __init__(
        self,
        locker: Locker,
        token: SecretStr,
        problems: HealthFn,
        host: str,
        port: int,
        details: DetailsFn = dict,
    ) -> None:
        self._locker = locker
        self._details = details
        self._token = token.get_secret_value().encode()
        self._problems = problems
        self._host = host
        self._port = port
        self.ready = False
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors, self._auth])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/api/lockers/cabinets", self._list)
        self.app.router.add_get("/api/lockers/cabinets/{key}", self._get)
        self.app.router.add_put("/api/lockers/cabinets/{key}", self._put)
        self.app.router.add_post("/api/lockers/open-all", self._open_all)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address is taken."""
        # A command still running at shutdown gets a second, then is cancelled (its
        # motor or pulse stops in the driver): the agent must stop within 5 s.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("api.listening", host=self._host, port=self.port)

    async def close(self) -> None:
        """Stop serving; commands still running get a second, then are cancelled."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- middlewares -----------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except LockerError as err:
            return _domain_error(err)
        except _HttpProblem as exc:
            return _error(exc.status, exc.type, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = _HTTP_TYPES.get(exc.status, "INVALID_REQUEST")
            message = exc.reason if exc.status != 413 else f"body over {MAX_BODY} bytes"
            return _error(exc.status, kind, message)
        except Exception:
            log.exception("api.error", path=request.path)
            return _error(500, "INTERNAL_ERROR", "internal error")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthz":
            given = _token_from(request).encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, self._token):
                raise _HttpProblem(401, "INVALID_TOKEN", "missing or wrong token")
        return await handler(request)

    # --- handlers --------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        reasons = self._problems() if self.ready else ["starting"]
        status = 200 if not reasons else 503
        body = {"status": "ok" if status == 200 else "degraded", "reasons": reasons}
        return web.json_response(body | self._details(), status=status)

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
        command = parse_command(await _json(request))
        given = request.headers.get("Idempotency-Key")
        if given is not None and not 0 < len(given) <= MAX_ID_LENGTH:
            raise Invalid(f"Idempotency-Key is 1 to {MAX_ID_LENGTH} characters")
        # Own namespace: a local key never collides with a cloud command id.
        command_id = None if given is None else f"local:{given}"
        return web.json_response(await self._locker.command(key, command, command_id))

    async def _open_all(self, request: web.Request) -> web.Response:
        """Technicians: open every enabled cabinet, pulses staggered by the power budget."""
        self._check_ready()
        body = parse_open_all(await _json(request) if request.body_exists else {})
        side = "rear" if body.rearload else "front"
        out = []
        for key, result in await self._locker.open_all(side, reason=body.reason):
            if isinstance(result, LockerError):
                out.append({"key": key, "ok": False, "error": error_body(result)[1]})
            else:
                out.append({"key": key, "ok": True, "cabinet": result.as_cloud()})
        return web.json_response(out)


def _key(request: web.Request) -> int:
    raw = request.match_info["key"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound(f"no cabinet with key {raw[:20]!r}")
    return int(raw)


async def _json(request: web.Request) -> Any:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _HttpProblem(413, "PAYLOAD_TOO_LARGE", f"body over {MAX_BODY} bytes") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise _HttpProblem(400, "INVALID_REQUEST", f"body is not JSON: {exc}"[:200]) from None
