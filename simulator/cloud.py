"""A fake SYNQ cloud: the v2 feedback endpoint, strict about the spec's shapes.

It validates every body against the OpenAPI document the real cloud
publishes (a copy lives in ``simulator/spec/``), records what it accepted,
and can be told to fail, stall or drop connections, so the agent's outbox is
tested against a real HTTP server on 127.0.0.1.

It also plays the cloud's side of the command channel: a websocket at
``/api/lockers/commands`` (``api-key`` header, 401 before the upgrade when
wrong) on which ``send_command`` sends ``{"id", "key", ...command}`` to the
connected agent and waits for the answer with the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import WSCloseCode, WSMsgType, web
from openapi_schema_validator import OAS30Validator

log = structlog.get_logger(__name__)

FEEDBACK_PATH = "/api/lockers/cabinet/status"
COMMANDS_PATH = "/api/lockers/commands"
SPEC_PATH = Path(__file__).parent / "spec" / "synq-lockers-api.yaml"

REDIRECTED_PATH = "/_sim/redirected"  # where an odd "redirect" answer points
ODD_KINDS = ("not_utf8", "false_gzip", "redirect", "retry_after")

Predicate = Callable[[dict[str, Any]], bool]


def _allow_null_in_enums(schema: Any) -> Any:
    """Add None to the enum of every ``nullable`` schema.

    OAS 3.0.3 says ``nullable`` does not extend an ``enum``, so the validator
    rejects ``"front_status": null``; the spec marks the field nullable on
    purpose ("either this or rear_status") and the real cloud accepts null.
    """
    if isinstance(schema, dict):
        schema = {k: _allow_null_in_enums(v) for k, v in schema.items()}
        if schema.get("nullable") is True and "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    elif isinstance(schema, list):
        schema = [_allow_null_in_enums(v) for v in schema]
    return schema


def load_feedback_schema(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The requestBody schema of POST /api/lockers/cabinet/status from the spec."""
    # The C loader when libyaml is there: ten times faster on this 1000-line file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    post = spec["paths"][FEEDBACK_PATH]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    return _allow_null_in_enums(schema)


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


class FeedbackValidator:
    """Checks a feedback body; returns Laravel-style ``{field: [messages]}``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = OAS30Validator(schema)

    def errors(self, body: Any) -> dict[str, list[str]]:
        """The body's problems by dotted field (``cabinets.0.key``); empty when valid."""
        errors: dict[str, list[str]] = {}

        def add(field: str, message: str) -> None:
            messages = errors.setdefault(field or "body", [])
            if message not in messages:
                messages.append(message)

        for error in self._validator.iter_errors(body):
            where = list(error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, dict):
                for name in error.validator_value:
                    if name not in error.instance:
                        field = _dotted([*where, name])
                        add(field, f"The {field} field is required.")
            else:
                add(_dotted(where), error.message)

        # The spec's prose rule: each cabinet carries a front or a rear status
        # (null counts as absent, as for Laravel's required_without).
        cabinets = body.get("cabinets") if isinstance(body, dict) else None
        if isinstance(cabinets, list):
            for i, cabinet in enumerate(cabinets):
                if not isinstance(cabinet, dict):
                    continue
                if cabinet.get("front_status") is None and cabinet.get("rear_status") is None:
                    add(
                        f"cabinets.{i}.front_status",
                        f"The cabinets.{i}.front_status field is required when "
                        f"cabinets.{i}.rear_status is not present.",
                    )
        return errors


@dataclass(slots=True)
class _Failure:
    status: int
    retry_after_s: float | None


@dataclass(slots=True)
class _Odd:
    kind: str
    retry_after: str


@dataclass(slots=True)
class _Waiter:
    ws: web.WebSocketResponse
    future: asyncio.Future[dict[str, Any]]


class FakeCloud:
    """The cloud's feedback endpoint and command channel on a real aiohttp server."""

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._api_key = api_key
        self._host = host
        self._port = port
        self._validator = FeedbackValidator(load_feedback_schema())
        # Accepted requests: {"received_at": unix time, "body": the JSON body}.
        self.received: list[dict[str, Any]] = []
        # Requests answered 4xx: {"received_at", "status", "body", "response"}.
        self.rejected: list[dict[str, Any]] = []
        # Seconds to stall before answering each feedback request. NOTE: not
        # delay_s, unlike the rest of the simulator: the agent's tests set it.
        self.delay = 0.0
        # Seconds to hold each answer back *after* the body was taken and recorded:
        # a slow cloud whose late answer a client may give up on (it then resends).
        self.answer_delay_s = 0.0
        # An HTTP status every feedback request gets until set back to None (a cloud
        # answering 500 for a while), after the queued failures of fail_next.
        self.failing_status: int | None = None
        self._failures: list[_Failure] = []
        self._odd: list[_Odd] = []
        # Requests that followed a redirect: {"method", "api_key_sent"}; never any.
        self.redirected: list[dict[str, Any]] = []
        # Odd answers given: {"answered_at": unix time, "kind", "retry_after": the header
        # value of a "retry_after" answer, else None}.
        self.odd_answers: list[dict[str, Any]] = []
        self._drops: list[bool] = []  # one per connection to drop: after processing?
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        # The command channel: connected agents (newest last), answers by id.
        self._agents: list[web.WebSocketResponse] = []
        self._agents_changed = asyncio.Event()
        self._waiters: dict[str, deque[_Waiter]] = {}
        self.connections = 0  # websocket upgrades accepted, ever
        self.refused = 0  # upgrades refused for a wrong api-key
        # Every message an agent sent on the channel, parsed when it was JSON.
        self.answers: list[Any] = []
        self._answered = asyncio.Event()
        # True: the command channel goes silent without closing (pings unanswered), as
        # behind a proxy that swallows traffic; set back to False to answer again.
        self.silent = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host``:``port`` (0: a free port, see :attr:`url`). Idempotent.

        After :meth:`close` it listens again on the same port, keeping what it
        received: a cloud that was down and came back."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post(FEEDBACK_PATH, self._feedback)
        app.router.add_get("/_sim/feedback", self._list)
        app.router.add_route("*", REDIRECTED_PATH, self._redirected)
        app.router.add_get(COMMANDS_PATH, self._commands)
        # Open websockets would hold the shutdown up: close them once the site stops listening.
        app.on_shutdown.append(self._shutdown_agents)
        # Access logs off: the structlog lines below say more, and less noise.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._port = port  # the same address when started again after an outage
        self._url = f"http://{host}:{port}"
        log.info("fake cloud started", url=self._url)

    async def close(self) -> None:
        """Stop listening and close the agents' websockets. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("fake cloud closed", url=self._url)

    @property
    def listening(self) -> bool:
        """Whether the cloud is up (started and not closed since)."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the cloud URL to configure. RuntimeError before start."""
        if self._url is None:
            raise RuntimeError("fake cloud not started")
        return self._url

    @property
    def commands_url(self) -> str:
        """Where the agent opens the command channel: ws://127.0.0.1:PORT/api/lockers/commands."""
        return "ws" + self.url.removeprefix("http") + COMMANDS_PATH

    # -- the command channel --------------------------------------------------

    @property
    def agents(self) -> int:
        """How many agents are connected right now."""
        return len(self._agents)

    async def wait_for_agent(self, timeout: float) -> None:
        """Returns once an agent is connected; TimeoutError when none comes in time."""
        async with asyncio.timeout(timeout):
            while not self._agents:
                self._agents_changed.clear()
                await self._agents_changed.wait()

    async def send_command(self, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a command to the newest connected agent and return its answer.

        ``body`` is ``{"id", "key", ...command}``; an id is added when missing.
        Waits (within ``timeout``) for an agent if none is connected. Sending
        the same id twice waits for two answers. ConnectionResetError when the
        agent goes away before answering, TimeoutError when it does not answer.
        """
        body = dict(body)
        body.setdefault("id", uuid.uuid4().hex)
        ident = _id_key(body["id"])
        async with asyncio.timeout(timeout):
            await self.wait_for_agent(timeout)
            ws = self._agents[-1]
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            waiter = _Waiter(ws, future)
            self._waiters.setdefault(ident, deque()).append(waiter)
            try:
                await ws.send_str(json.dumps(body))
                log.info("fake cloud sent command", command=body)
                return await future
            finally:
                queue = self._waiters.get(ident)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiters[ident]

    async def send_raw(self, data: str | bytes) -> None:
        """Send any frame to the newest agent (bad messages); see ``wait_for_answer``."""
        await self.wait_for_agent(5.0)
        ws = self._agents[-1]
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)

    async def wait_for_answer(self, predicate: Predicate, timeout: float) -> dict[str, Any]:
        """The first answer (a JSON object) matching ``predicate``, received or to come."""
        checked = 0
        async with asyncio.timeout(timeout):
            while True:
                while checked < len(self.answers):
                    answer = self.answers[checked]
                    checked += 1
                    if isinstance(answer, dict) and _matches(predicate, answer):
                        return answer
                self._answered.clear()
                await self._answered.wait()

    async def disconnect_agents(self) -> None:
        """Close every agent's socket (the agent should reconnect)."""
        agents, self._agents = self._agents, []
        self._agents_changed.set()
        for ws in agents:
            self._fail_waiters(ws)
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"disconnected by the simulator")
        if agents:
            log.info("fake cloud disconnected agents", count=len(agents))

    # -- fault injection ----------------------------------------------------

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer ``status`` to the next ``count`` feedback requests, recording nothing.

        ``retry_after`` (seconds; named after the HTTP header, and the agent's
        tests call it so) goes out as whole seconds, rounded up: HTTP's
        delay-seconds is an integer.
        """
        self._failures.extend(_Failure(status, retry_after) for _ in range(count))

    def drop_next(self, count: int = 1, *, after_processing: bool = False) -> None:
        """Close the next ``count`` connections without an answer.

        With ``after_processing`` the body is validated and recorded first: the
        cloud took the update but the answer was lost, so the agent resends.
        """
        self._drops.extend(after_processing for _ in range(count))

    def odd_next(self, kind: str, count: int = 1, *, retry_after: str = "999999999") -> None:
        """Answer the next ``count`` feedback requests oddly (``kind`` in :data:`ODD_KINDS`):

        - ``not_utf8``: the body is taken and recorded; the answer is a 200 whose
          body is not UTF-8;
        - ``false_gzip``: taken and recorded; a 200 claiming ``Content-Encoding:
          gzip`` over bytes that are not gzip;
        - ``redirect``: not taken; a 307 to :data:`REDIRECTED_PATH` (a client that
          follows it shows up in :attr:`redirected`, api-key and all);
        - ``retry_after``: not taken; a 503 with ``Retry-After: <retry_after>``, the
          raw header value (absurd ones: ``"999999999"``, ``"-5"``, ``"soon"``, a date
          in the year 9999).

        ValueError for an unknown kind. Drops and failures queued before go first.
        """
        if kind not in ODD_KINDS:
            raise ValueError(f"odd answer {kind!r} is not one of {ODD_KINDS}")
        self._odd.extend(_Odd(kind, retry_after) for _ in range(count))

    def heal(self) -> None:
        """Forget every injected failure, drop and odd answer still queued, delays and
        silence."""
        self._failures.clear()
        self._drops.clear()
        self._odd.clear()
        self.delay = 0.0
        self.answer_delay_s = 0.0
        self.failing_status = None
        self.silent = False

    # -- observation --------------------------------------------------------

    def cabinet_updates(self) -> list[dict[str, Any]]:
        """Every accepted cabinet entry, in the order received."""
        return [
            copy.deepcopy(cabinet)
            for record in self.received
            for cabinet in record["body"]["cabinets"]
        ]

    # The timeout parameter is the agreed test-helper signature.
    async def wait_for(self, predicate: Predicate, timeout: float) -> dict[str, Any]:
        """The first accepted cabinet entry, or else body, matching ``predicate``.

        Looks at what was already received first, then waits; TimeoutError when
        nothing matches in time. A predicate raising KeyError/TypeError/IndexError
        on a shape it did not expect counts as no match.
        """
        checked = 0
        async with asyncio.timeout(timeout):
            while True:
                while checked < len(self.received):
                    body = self.received[checked]["body"]
                    checked += 1
                    for candidate in (*body["cabinets"], body):
                        if _matches(predicate, candidate):
                            return candidate
                self._changed.clear()
                await self._changed.wait()

    # -- handlers -----------------------------------------------------------

    async def _commands(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("api-key", "")
        if not hmac.compare_digest(given.encode(), self._api_key.encode()):
            self.refused += 1
            log.info("fake cloud refused command channel", status=401)
            return web.json_response(
                {"error": "Unauthorized", "message": "Invalid API key"}, status=401
            )
        ws = web.WebSocketResponse(autoping=False)  # pings answered below, unless silent
        await ws.prepare(request)
        self.connections += 1
        self._agents.append(ws)
        self._agents_changed.set()
        log.info("fake cloud agent connected", connections=self.connections)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.PING and not self.silent:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    self._answer_received(_json_or_text(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    self._answer_received(msg.data)
        finally:
            if ws in self._agents:
                self._agents.remove(ws)
                self._agents_changed.set()
            self._fail_waiters(ws)
            log.info("fake cloud agent disconnected")
        return ws

    def _answer_received(self, answer: Any) -> None:
        self.answers.append(answer)
        self._answered.set()
        log.info("fake cloud got answer", answer=answer)
        if not isinstance(answer, dict) or "id" not in answer:
            return
        queue = self._waiters.get(_id_key(answer["id"]))
        while queue:
            waiter = queue.popleft()
            if not waiter.future.done():
                waiter.future.set_result(answer)
                break

    def _fail_waiters(self, ws: web.WebSocketResponse) -> None:
        for queue in self._waiters.values():
            for waiter in queue:
                if waiter.ws is ws and not waiter.future.done():
                    waiter.future.set_exception(
                        ConnectionResetError("the agent went away before answering")
                    )

    async def _shutdown_agents(self, app: web.Application) -> None:
        await self.disconnect_agents()

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.received)

    async def _feedback(self, request: web.Request) -> web.StreamResponse:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        drop_after: bool | None = self._drops.pop(0) if self._drops else None
        if drop_after is False:
            return self._drop(request)
        if drop_after is None and self._failures:
            failure = self._failures.pop(0)
            return await self._fail(request, failure)
        if drop_after is None and self.failing_status is not None:
            return await self._fail(request, _Failure(self.failing_status, None))
        odd = self._odd.pop(0) if drop_after is None and self._odd else None
        if odd is not None:
            retry_after = odd.retry_after if odd.kind == "retry_after" else None
            self.odd_answers.append(
                {"answered_at": time.time(), "kind": odd.kind, "retry_after": retry_after}
            )
        if odd is not None and odd.kind in ("redirect", "retry_after"):
            return self._odd_refusal(odd)

        response = await self._process(request)
        if drop_after:
            return self._drop(request)
        if odd is not None and response.status == 200:
            response = self._odd_acceptance(odd)
        if self.answer_delay_s > 0:
            await asyncio.sleep(self.answer_delay_s)
        return response

    def _odd_refusal(self, odd: _Odd) -> web.Response:
        """A feedback request not taken: a redirect, or a 503 with an absurd Retry-After."""
        log.info("fake cloud odd answer", kind=odd.kind, retry_after=odd.retry_after)
        if odd.kind == "redirect":
            location = self.url + REDIRECTED_PATH
            return web.Response(status=307, headers={"Location": location}, text="moved")
        return web.json_response(
            {"message": "Service unavailable"},
            status=503,
            headers={"Retry-After": odd.retry_after},
        )

    def _odd_acceptance(self, odd: _Odd) -> web.Response:
        """A 200 for a body already taken, whose own body a client cannot decode."""
        log.info("fake cloud odd answer", kind=odd.kind)
        if odd.kind == "not_utf8":
            return web.Response(
                status=200, body=b"\xff\xfe\x00\xc3(not utf-8", content_type="text/plain"
            )
        return web.Response(
            status=200,
            body=b"this is not gzip at all",
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def _redirected(self, request: web.Request) -> web.Response:
        self.redirected.append(
            {"method": request.method, "api_key_sent": "api-key" in request.headers}
        )
        log.warning("fake cloud: a client followed a redirect", method=request.method)
        return web.json_response({"message": "you should not be here"}, status=418)

    async def _process(self, request: web.Request) -> web.Response:
        now = time.time()
        text = await request.text()
        given = request.headers.get("api-key", "")
        if not hmac.compare_digest(given.encode(), self._api_key.encode()):
            return self._reject(
                now, 401, text, {"error": "Unauthorized", "message": "Invalid API key"}
            )
        try:
            body = json.loads(text)
        except ValueError:
            errors = {"body": ["The request body must be valid JSON."]}
            return self._reject(now, 422, text, _unprocessable(errors))
        errors = self._validator.errors(body)
        if errors:
            return self._reject(now, 422, body, _unprocessable(errors))
        self.received.append({"received_at": now, "body": body})
        self._changed.set()
        # "event" is structlog's own key, hence event_body.
        log.info("fake cloud feedback", cabinets=body["cabinets"], event_body=body.get("event"))
        return web.json_response({"message": "Updated successfully"})

    def _reject(self, now: float, status: int, body: Any, response: dict[str, Any]) -> web.Response:
        self.rejected.append(
            {"received_at": now, "status": status, "body": body, "response": response}
        )
        log.info("fake cloud rejected feedback", status=status, response=response)
        return web.json_response(response, status=status)

    async def _fail(self, request: web.Request, failure: _Failure) -> web.Response:
        now = time.time()
        body = _json_or_text(await request.text())
        headers: dict[str, str] = {}
        if failure.retry_after_s is not None:
            headers["Retry-After"] = str(max(0, math.ceil(failure.retry_after_s)))
        message = "Simulated failure"
        if failure.status == 500:
            message = "Internal server error"
        response = {"message": message}
        if 400 <= failure.status < 500:
            self.rejected.append(
                {"received_at": now, "status": failure.status, "body": body, "response": response}
            )
        log.info("fake cloud injected failure", status=failure.status, headers=headers)
        return web.json_response(response, status=failure.status, headers=headers)

    def _drop(self, request: web.Request) -> web.Response:
        log.info("fake cloud dropped connection")
        # abort(): no answer at all, the client sees the connection vanish.
        if request.transport is not None:
            request.transport.abort()
        # Never reaches the client; returning keeps aiohttp from logging an error.
        return web.Response(status=499)


def _unprocessable(errors: dict[str, list[str]]) -> dict[str, Any]:
    first = next(iter(errors.values()))[0]
    extra = sum(len(m) for m in errors.values()) - 1
    message = first if extra == 0 else f"{first} (and {extra} more errors)"
    return {"message": message, "errors": errors}


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _id_key(command_id: Any) -> str:
    """Ids compared as JSON: 5 and "5" are different commands."""
    return json.dumps(command_id, sort_keys=True)


def _matches(predicate: Predicate, candidate: dict[str, Any]) -> bool:
    with contextlib.suppress(KeyError, TypeError, IndexError, AttributeError):
        return bool(predicate(candidate))
    return False
