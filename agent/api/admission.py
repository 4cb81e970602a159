"""Who may ask the local API: Host, Origin, token, body type, and how often.

DNS rebinding, a web page that knows the token, a form posted with
``enctype=text/plain``: each is refused here before a handler runs
(``docs/security.md``). ``Admission.admit(request)`` raises ``HttpProblem``. A
request on the technicians' Unix socket comes from a peer whose credentials were
checked when it connected (``agent/api/unix.py``): it needs no token, and every
other check still applies.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

# Names the API always answers to, besides the listen address and the address a
# connection arrived on.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_READS = frozenset({"GET", "HEAD"})
# What an HTML form can send without a preflight: refused on requests that act.
_FORMS = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.?")

_HTTP_TYPES = {
    400: "INVALID_REQUEST",
    401: "INVALID_TOKEN",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    421: "MISDIRECTED_REQUEST",
    429: "TOO_MANY_REQUESTS",
}


def http_type(status: int) -> str:
    """The Lok error ``type`` of an HTTP-level refusal."""
    return _HTTP_TYPES.get(status, "INVALID_REQUEST")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``burst`` actions at once, then one more every ``interval_s`` seconds."""

    burst: int
    interval_s: float


class _Buckets:
    """Token buckets by name, on a monotonic ``clock`` (seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, wanted: list[tuple[str, RateLimit]]) -> float:
        """Take one token from every named bucket, or none: 0.0 when taken, else the
        seconds until every bucket has one again."""
        now = self._clock()
        levels = {}
        wait = 0.0
        for name, limit in wanted:
            tokens, at = self._state.get(name, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - at) / limit.interval_s)
            levels[name] = tokens
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) * limit.interval_s)
        if wait:
            return wait
        for name, tokens in levels.items():
            self._state[name] = (tokens - 1.0, now)
        return 0.0


CABINET_RATE = RateLimit(burst=3, interval_s=2.0)  # a lock: three tries, then one per 2 s
API_RATE = RateLimit(burst=20, interval_s=0.25)  # every acting request together


class HttpProblem(Exception):
    """An HTTP-level refusal (auth, body size, not JSON, origin, rate): the edge's own
    errors. ``close``: the connection cannot carry another request."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, http_type(status), message
        self.headers = headers
        self.close = close


def _name(value: str) -> str | None:
    """The host name of a ``Host`` value (``name[:port]``, ``[v6][:port]``),
    lower-case, IPv6 without brackets; None when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, port = value[1:].partition("]")
        if not sep or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    name, _, port = value.partition(":")
    if (port and not port.isdigit()) or not _HOSTNAME.fullmatch(name):
        return None
    return name


def _local_name(sockname: Any) -> str | None:
    """The address a connection arrived on, as a Host would name it."""
    if not sockname:
        return None
    address = str(sockname[0]).split("%")[0]
    if address.startswith("::ffff:") and "." in address:
        address = address[7:]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _normalise(name: str) -> str:
    """A configured name (``lobby-a.local``, ``[::1]``, ``10.0.0.5``) as ``_name`` gives it."""
    name = name.strip().lower().strip("[]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


class Admission:
    """The checks every request passes: ``names`` it may carry as ``Host`` (the
    address it arrived on is always one), the ``token``, and the rate limits."""

    def __init__(
        self,
        token: bytes,
        names: Iterable[str],
        *,
        cabinet_rate: RateLimit,
        api_rate: RateLimit,
        clock: Callable[[], float],
    ) -> None:
        self._token = token
        self._names = frozenset({_normalise(n) for n in names} - _WILDCARDS)
        self._cabinet_rate = cabinet_rate
        self._api_rate = api_rate
        self._buckets = _Buckets(clock)

    def admit(self, request: web.Request, *, by_peer: bool = False) -> None:
        """Admit a request or raise ``HttpProblem``: Host, Origin, the token, the body's type.

        Origin and the body's type only on requests that act; the token is skipped when
        ``by_peer`` (the peer's credentials admitted the connection).
        """
        self._check_host(request)
        acts = request.method not in _READS
        if acts:
            self._check_origin(request)
        if request.path != "/healthz" and not by_peer:
            self._check_token(request, acts)
        if acts and request.match_info.http_exception is None:  # a route that acts
            _check_json_body(request)

    def _check_host(self, request: web.Request) -> None:
        if not request.raw_path.startswith("/"):
            raise HttpProblem(400, "only origin-form request targets are served")
        hosts = request.headers.getall("Host", [])
        name = _name(hosts[0]) if len(hosts) == 1 else None
        if name is None:
            raise HttpProblem(400, "a request names exactly one valid Host")
        transport = request.transport
        here = _local_name(transport.get_extra_info("sockname") if transport else None)
        if name not in self._names and name != here:
            raise HttpProblem(421, "this agent does not serve that Host")

    def _check_origin(self, request: web.Request) -> None:
        # Browsers send Origin on every request that is not GET/HEAD; the agent serves
        # no pages, so only its own origin (curl and scripts send none) may act.
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{request.headers['Host']}".lower():
            raise HttpProblem(403, "requests that act are not taken from a web page")
        if request.headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin"):
            raise HttpProblem(403, "requests that act are not taken from a web page")

    def _check_token(self, request: web.Request, acts: bool) -> None:
        if len(request.query.getall("secret_token", [])) > 1:
            raise HttpProblem(401, "give the token once")
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif not acts:
            given = request.query.get("secret_token", "")
        else:
            raise HttpProblem(401, "requests that act carry the token as Authorization: Bearer")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token):
            raise HttpProblem(401, "missing or wrong token")

    def take(self, cabinets: Collection[int]) -> None:
        """One token for the API and one for each cabinet, or 429 with Retry-After."""
        wanted = [("api", self._api_rate)]
        wanted += [(f"cabinet {k}", self._cabinet_rate) for k in cabinets]
        wait = self._buckets.take(wanted)
        if wait:
            log.warning("api.rate_limited", cabinets=list(cabinets)[:20], retry_after_s=wait)
            raise HttpProblem(
                429,
                "too many actions; the locks need a rest",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )


def _check_json_body(request: web.Request) -> None:
    """A request that acts must declare ``Content-Type: application/json``, even bodiless.

    No HTML form can send it without a preflight (DESIGN.md's contract); ``POST
    open-all`` may have no body and still declares it.
    """
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return
    raise HttpProblem(415, "a request that acts sends Content-Type: application/json")
