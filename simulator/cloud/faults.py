"""The fake cloud's fault switches: failures, dropped connections, stalls and odd answers.

The feedback endpoint takes from them, request by request, how to misbehave;
they build the odd answers it gives and record the clients that followed a
redirect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

REDIRECTED_PATH = "/_sim/redirected"  # where an odd "redirect" answer points
ODD_KINDS = ("not_utf8", "false_gzip", "redirect", "retry_after")


@dataclass(slots=True)
class Failure:
    """An injected error answer: its HTTP status and Retry-After in seconds (or none)."""

    status: int
    retry_after_s: float | None


@dataclass(slots=True)
class Odd:
    """An injected odd answer: one of :data:`ODD_KINDS` and the raw Retry-After it carries."""

    kind: str
    retry_after: str


class FaultSwitches:
    """What the next feedback requests suffer, set by the tests and the simulator's fate."""

    def __init__(self) -> None:
        # Seconds to stall before answering each feedback request. NOTE: not
        # delay_s, unlike the rest of the simulator: the agent's tests set it.
        self.delay = 0.0
        # Seconds to hold each answer back *after* the body was taken and recorded:
        # a slow cloud whose late answer a client may give up on (it then resends).
        self.answer_delay_s = 0.0
        # An HTTP status every feedback request gets until set back to None (a cloud
        # answering 500 for a while), after the queued failures of fail_next.
        self.failing_status: int | None = None
        self._failures: list[Failure] = []
        self._odd: list[Odd] = []
        # Requests that followed a redirect: {"method", "api_key_sent"}; never any.
        self.redirected: list[dict[str, Any]] = []
        # Odd answers given: {"answered_at": unix time, "kind", "retry_after": the header
        # value of a "retry_after" answer, else None}.
        self.odd_answers: list[dict[str, Any]] = []
        self._drops: list[bool] = []  # one per connection to drop: after processing?

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer ``status`` to the next ``count`` feedback requests, recording nothing.

        ``retry_after`` (seconds; named after the HTTP header, and the agent's
        tests call it so) goes out as whole seconds, rounded up: HTTP's
        delay-seconds is an integer.
        """
        self._failures.extend(Failure(status, retry_after) for _ in range(count))

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
        self._odd.extend(Odd(kind, retry_after) for _ in range(count))

    def heal(self) -> None:
        """Forget every injected failure, drop and odd answer still queued, and delays."""
        self._failures.clear()
        self._drops.clear()
        self._odd.clear()
        self.delay = 0.0
        self.answer_delay_s = 0.0
        self.failing_status = None

    # -- what the next request suffers -------------------------------------------

    def take_drop(self) -> bool | None:
        """The next queued drop (True: after processing, False: before), or None."""
        return self._drops.pop(0) if self._drops else None

    def take_failure(self) -> Failure | None:
        """The next queued failure, else the standing ``failing_status``, else None."""
        if self._failures:
            return self._failures.pop(0)
        if self.failing_status is not None:
            return Failure(self.failing_status, None)
        return None

    def take_odd(self) -> Odd | None:
        """The next queued odd answer, recorded in :attr:`odd_answers` as given, or None."""
        odd = self._odd.pop(0) if self._odd else None
        if odd is not None:
            retry_after = odd.retry_after if odd.kind == "retry_after" else None
            self.odd_answers.append(
                {"answered_at": time.time(), "kind": odd.kind, "retry_after": retry_after}
            )
        return odd

    # -- the odd answers -----------------------------------------------------------

    def odd_refusal(self, odd: Odd, url: str) -> web.Response:
        """A feedback request not taken: a redirect (to ``url``'s :data:`REDIRECTED_PATH`),
        or a 503 with an absurd Retry-After."""
        log.info("fake cloud odd answer", kind=odd.kind, retry_after=odd.retry_after)
        if odd.kind == "redirect":
            location = url + REDIRECTED_PATH
            return web.Response(status=307, headers={"Location": location}, text="moved")
        return web.json_response(
            {"message": "Service unavailable"},
            status=503,
            headers={"Retry-After": odd.retry_after},
        )

    def odd_acceptance(self, odd: Odd) -> web.Response:
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

    async def redirected_to(self, request: web.Request) -> web.Response:
        """Any method on :data:`REDIRECTED_PATH`: a client followed a redirect (418)."""
        self.redirected.append(
            {"method": request.method, "api_key_sent": "api-key" in request.headers}
        )
        log.warning("fake cloud: a client followed a redirect", method=request.method)
        return web.json_response({"message": "you should not be here"}, status=418)


def drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; the response returned never goes out."""
    log.info("fake cloud dropped connection")
    # abort(): no answer at all, the client sees the connection vanish.
    if request.transport is not None:
        request.transport.abort()
    # Never reaches the client; returning keeps aiohttp from logging an error.
    return web.Response(status=499)
