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
import copy
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from simulator.cloud.channel import COMMANDS_PATH, CommandChannel
from simulator.cloud.common import Predicate, json_or_text, matches
from simulator.cloud.spec import (
    FEEDBACK_PATH,
    FeedbackValidator,
    load_feedback_schema,
    unprocessable,
)

log = structlog.get_logger(__name__)

REDIRECTED_PATH = "/_sim/redirected"  # where an odd "redirect" answer points
ODD_KINDS = ("not_utf8", "false_gzip", "redirect", "retry_after")


@dataclass(slots=True)
class _Failure:
    status: int
    retry_after_s: float | None


@dataclass(slots=True)
class _Odd:
    kind: str
    retry_after: str


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
        self._channel = CommandChannel(api_key)

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
        app.router.add_get(COMMANDS_PATH, self._channel.handle)
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
        return self._channel.agents

    @property
    def connections(self) -> int:
        """Websocket upgrades accepted, ever."""
        return self._channel.connections

    @property
    def refused(self) -> int:
        """Upgrades refused for a wrong api-key."""
        return self._channel.refused

    @property
    def answers(self) -> list[Any]:
        """Every message an agent sent on the channel, parsed when it was JSON."""
        return self._channel.answers

    async def wait_for_agent(self, timeout: float) -> None:
        """Returns once an agent is connected; TimeoutError when none comes in time."""
        await self._channel.wait_for_agent(timeout)

    async def send_command(self, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a command to the newest connected agent and return its answer.

        See :meth:`CommandChannel.send_command`."""
        return await self._channel.send_command(body, timeout)

    async def send_raw(self, data: str | bytes) -> None:
        """Send any frame to the newest agent (bad messages); see ``wait_for_answer``."""
        await self._channel.send_raw(data)

    async def wait_for_answer(self, predicate: Predicate, timeout: float) -> dict[str, Any]:
        """The first answer (a JSON object) matching ``predicate``, received or to come."""
        return await self._channel.wait_for_answer(predicate, timeout)

    async def disconnect_agents(self) -> None:
        """Close every agent's socket (the agent should reconnect)."""
        await self._channel.disconnect_agents()

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
        """Forget every injected failure, drop and odd answer still queued, and delays."""
        self._failures.clear()
        self._drops.clear()
        self._odd.clear()
        self.delay = 0.0
        self.answer_delay_s = 0.0
        self.failing_status = None

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
                        if matches(predicate, candidate):
                            return candidate
                self._changed.clear()
                await self._changed.wait()

    # -- handlers -----------------------------------------------------------

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
            return self._reject(now, 422, text, unprocessable(errors))
        errors = self._validator.errors(body)
        if errors:
            return self._reject(now, 422, body, unprocessable(errors))
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
        body = json_or_text(await request.text())
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
