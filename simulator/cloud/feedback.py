"""The fake cloud's feedback endpoint: bodies checked against the spec, recorded, answered.

``POST /api/lockers/cabinet/status`` with the ``api-key`` header: a body the
spec accepts is recorded and answered 200, anything else 401 or 422 as the
real cloud answers, unless the fault switches say otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from simulator.cloud.common import Predicate, json_or_text, matches
from simulator.cloud.faults import Failure, FaultSwitches, drop
from simulator.cloud.spec import FeedbackValidator, unprocessable

log = structlog.get_logger(__name__)


class FeedbackEndpoint:
    """Takes the agent's feedback as the cloud would, through ``faults``; keeps what it took.

    ``url`` gives the cloud's own URL (for the Location of an odd redirect).
    """

    def __init__(
        self,
        api_key: str,
        validator: FeedbackValidator,
        faults: FaultSwitches,
        url: Callable[[], str],
    ) -> None:
        self._api_key = api_key
        self._validator = validator
        self._faults = faults
        self._url = url
        # Accepted requests: {"received_at": unix time, "body": the JSON body}.
        self.received: list[dict[str, Any]] = []
        # Requests answered 4xx: {"received_at", "status", "body", "response"}.
        self.rejected: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

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

    async def listing(self, request: web.Request) -> web.Response:
        """``GET /_sim/feedback``: every accepted request, oldest first."""
        return web.json_response(self.received)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/lockers/cabinet/status``: the feedback, as the fault switches allow."""
        faults = self._faults
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        drop_after = faults.take_drop()
        if drop_after is False:
            return drop(request)
        failure = faults.take_failure() if drop_after is None else None
        if failure is not None:
            return await self._fail(request, failure)
        odd = faults.take_odd() if drop_after is None else None
        if odd is not None and odd.kind in ("redirect", "retry_after"):
            return faults.odd_refusal(odd, self._url())

        response = await self._process(request)
        if drop_after:
            return drop(request)
        if odd is not None and response.status == 200:
            response = faults.odd_acceptance(odd)
        if faults.answer_delay_s > 0:
            await asyncio.sleep(faults.answer_delay_s)
        return response

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

    async def _fail(self, request: web.Request, failure: Failure) -> web.Response:
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
