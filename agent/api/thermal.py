"""A cabinet's thermal unit over the local API: its records, oldest first, at most
``MAX_ROWS`` (the newest), and a technician's reset of its latches:

- ``GET /api/lockers/cabinets/{key}/temperatures?since=ISO-8601`` (DESIGN.md,
  "Thermal"): ``[{"t": "2026-11-29T10:00:00Z", "temperature_c": 3.9, "mode": "chill"}]``;
- ``GET /api/lockers/cabinets/{key}/excursions?since=ISO-8601``: each time out of
  temperature, ``[{"start", "end", "duration_s", "peak_c", "mode", "clock"}]`` (``end``
  None while it lasts; ``clock`` None unless the wall clock was not known right);
- ``POST /api/lockers/cabinets/{key}/thermal/reset`` with ``{"by": "who", "reason":
  "..."}`` (both optional): every latched safety shut-off cleared (ADR 0011), logged
  and recorded with who and when; answers ``{"key", "cleared", "cabinet"}``. Who is
  what the agent knows, not what the body claims (ADR 0020): on the technicians'
  socket the peer's account by the kernel (``SO_PEERCRED``), over TCP the token's
  holder at its address; ``by`` follows as the asker's note.

Errors are domain errors (the API's middleware answers them): an unknown cabinet or
one without a thermal unit is ``NotFound``, a ``since`` that is not ISO 8601 or a
reset body that is not one ``Invalid``, records the disk refuses ``Unavailable``.
Without ``since``: the last 24 hours.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.api.answers import CabinetView
from agent.api.peers import peer_of, user_name
from agent.locker.cabinet import ThermalMode
from agent.locker.errors import Invalid, NotFound, Unavailable
from agent.locker.locker import Locker
from agent.thermal.records import RecordsError
from agent.thermal.service import Thermal
from agent.thermal.times import iso, parse_since

MAX_ROWS = 10_000
DEFAULT_SPAN_S = 86400.0

Key = Callable[[web.Request], int]
ReadJson = Callable[[web.Request], Awaitable[Any]]


class TemperatureRow(BaseModel):
    """One row of a cabinet's temperature log; ``temperature_c`` None: not trusted."""

    t: str
    temperature_c: float | None
    mode: ThermalMode


class Excursion(BaseModel):
    """One time out of temperature: ISO 8601 UTC ``start`` and ``end`` (None while it
    lasts), ``duration_s``, the worst temperature ``peak_c``."""

    start: str
    end: str | None
    duration_s: int | None
    peak_c: float | None
    mode: ThermalMode
    clock: str | None = None  # unsure, corrected, outage; None: the clock was known right


class ThermalReset(BaseModel):
    """The body of a reset: who says they reset (a note beside who asked, for the log
    and the records), and why."""

    model_config = ConfigDict(extra="forbid", strict=True)

    by: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=500)


class Cleared(BaseModel):
    """One latch a reset cleared: its alarm, why it latched, since when (ISO 8601)."""

    alarm: str
    why: str
    since: str


class ResetAnswer(BaseModel):
    """What a reset did: the latches it cleared (none: nothing was latched), and the
    cabinet after."""

    key: int
    cleared: list[Cleared]
    cabinet: CabinetView


# name -> (operationId, summary, answer row): the routes, and the OpenAPI document's.
LOGS: dict[str, tuple[str, str, type[BaseModel]]] = {
    "temperatures": (
        "getTemperatures",
        "A cabinet's temperature log, oldest first (default: the last 24 hours)",
        TemperatureRow,
    ),
    "excursions": (
        "getExcursions",
        "A cabinet's times out of temperature, oldest first (default: the last 24 hours)",
        Excursion,
    ),
}


def add_routes(
    app: web.Application, locker: Locker, thermal: Thermal | None, key: Key, read_json: ReadJson
) -> None:
    """Serve the records of ``thermal`` and its reset (``thermal`` None: no thermal unit).

    ``key(request)`` reads the cabinet key from the path (``NotFound`` when bad);
    ``read_json(request)`` the body, as the API reads every body.
    """

    def unit_of(request: web.Request) -> int:
        cabinet = locker.get(key(request))
        if thermal is None or cabinet.thermal_bands is None:
            raise NotFound(f"cabinet {cabinet.key} has no thermal unit")
        return cabinet.key

    async def answer(request: web.Request, name: str) -> web.Response:
        cabinet_key = unit_of(request)
        assert thermal is not None
        since_text = request.query.get("since")
        try:
            since = time.time() - DEFAULT_SPAN_S if since_text is None else parse_since(since_text)
        except ValueError as exc:
            raise Invalid(str(exc), {"since": [str(exc)]}) from None
        records = thermal.records
        read = records.readings if name == "temperatures" else records.excursions
        try:
            rows: list[dict[str, Any]] = read(cabinet_key, since, MAX_ROWS)
        except RecordsError as exc:
            raise Unavailable(str(exc)) from None
        return web.json_response(rows)

    async def reset(request: web.Request) -> web.Response:
        cabinet_key = unit_of(request)
        assert thermal is not None
        data = await read_json(request) if request.body_exists else {}
        if not isinstance(data, dict):
            raise Invalid("the body must be a JSON object")
        try:
            body = ThermalReset.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, list[str]] = {}
            for err in exc.errors(include_input=False, include_url=False):
                where = ".".join(str(p) for p in err["loc"]) or "body"
                errors.setdefault(where, []).append(err["msg"])
            first, messages = next(iter(errors.items()))
            raise Invalid(f"{first}: {messages[0]}", errors) from None
        who = asker(request, body.by)
        if body.reason:
            who += f": {body.reason}"
        cleared = thermal.reset(cabinet_key, who)
        return web.json_response(
            {
                "key": cabinet_key,
                "cleared": [
                    {"alarm": c.alarm, "why": c.why, "since": iso(c.since)} for c in cleared
                ],
                "cabinet": locker.get(cabinet_key).as_cloud(),
            }
        )

    for name in LOGS:
        app.router.add_get(
            f"/api/lockers/cabinets/{{key}}/{name}", functools.partial(answer, name=name)
        )
    app.router.add_post("/api/lockers/cabinets/{key}/thermal/reset", reset)


def asker(request: web.Request, note: str | None) -> str:
    """Who sent ``request``, by what the agent knows: on a Unix socket the peer's account
    as the kernel gives it (``root (uid 0, pid 812) on the agent's socket``), else the
    token's holder at its address; ``note`` (what the body says, e.g. ``--by``) after it,
    quoted, as theirs."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    who = f"the API token's holder at {request.remote or 'an unknown address'}"
    if sock is not None and sock.family == socket.AF_UNIX:
        try:
            peer = peer_of(sock)
        except OSError:  # no credentials: the gate refuses such a peer before this
            who = "a peer without credentials on the agent's socket"
        else:
            who = f"{user_name(peer.uid)} (uid {peer.uid}, pid {peer.pid}) on the agent's socket"
    return who if note is None else f"{who}, noted as {note!r}"
