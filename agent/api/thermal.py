"""A cabinet's thermal records over the local API, oldest first, at most ``MAX_ROWS``
(the newest):

- ``GET /api/lockers/cabinets/{key}/temperatures?since=ISO-8601`` (DESIGN.md,
  "Thermal"): ``[{"t": "2026-11-29T10:00:00Z", "temperature_c": 3.9, "mode": "chill"}]``;
- ``GET /api/lockers/cabinets/{key}/excursions?since=ISO-8601``: each time out of
  temperature, ``[{"start", "end", "duration_s", "peak_c", "mode"}]`` (``end`` None
  while it lasts).

Errors are domain errors (the API's middleware answers them): an unknown cabinet or
one without a thermal unit is ``NotFound``, a ``since`` that is not ISO 8601
``Invalid``, records the disk refuses ``Unavailable``. Without ``since``: the last
24 hours.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from agent.locker.cabinet import ThermalMode
from agent.locker.errors import Invalid, NotFound, Unavailable
from agent.locker.locker import Locker
from agent.thermal.records import Records, RecordsError, parse_since

MAX_ROWS = 10_000
DEFAULT_SPAN_S = 86400.0

Key = Callable[[web.Request], int]


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


def add_routes(app: web.Application, locker: Locker, records: Records | None, key: Key) -> None:
    """Serve the temperature log of ``records`` (None: no cabinet has a thermal unit);
    ``key(request)`` reads the cabinet key from the path (``NotFound`` when bad)."""

    async def answer(request: web.Request, name: str) -> web.Response:
        cabinet = locker.get(key(request))
        if records is None or cabinet.thermal_bands is None:
            raise NotFound(f"cabinet {cabinet.key} has no thermal unit")
        since_text = request.query.get("since")
        try:
            since = time.time() - DEFAULT_SPAN_S if since_text is None else parse_since(since_text)
        except ValueError as exc:
            raise Invalid(str(exc), {"since": [str(exc)]}) from None
        read = records.readings if name == "temperatures" else records.excursions
        try:
            rows: list[dict[str, Any]] = read(cabinet.key, since, MAX_ROWS)
        except RecordsError as exc:
            raise Unavailable(str(exc)) from None
        return web.json_response(rows)

    for name in LOGS:
        app.router.add_get(
            f"/api/lockers/cabinets/{{key}}/{name}", functools.partial(answer, name=name)
        )
