"""``GET /api/lockers/cabinets/{key}/temperatures?since=ISO-8601``: a cabinet's
temperature log (DESIGN.md, "Thermal"), oldest first, at most ``MAX_ROWS`` rows:
``[{"t": "2026-11-29T10:00:00Z", "temperature_c": 3.9, "mode": "chill"}, ...]``.

Errors are domain errors (the API's middleware answers them): an unknown cabinet or
one without a thermal unit is ``NotFound``, a ``since`` that is not ISO 8601
``Invalid``, records the disk refuses ``Unavailable``. Without ``since``: the last
24 hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from agent.errors import Invalid, NotFound, Unavailable
from agent.locker import Locker
from agent.thermal.records import Records, RecordsError, parse_since

MAX_ROWS = 10_000
DEFAULT_SPAN_S = 86400.0

Key = Callable[[web.Request], int]


def add_routes(app: web.Application, locker: Locker, records: Records | None, key: Key) -> None:
    """Serve the temperature log of ``records`` (None: no cabinet has a thermal unit);
    ``key(request)`` reads the cabinet key from the path (``NotFound`` when bad)."""

    async def temperatures(request: web.Request) -> web.Response:
        cabinet = locker.get(key(request))
        if records is None or cabinet.thermal is None:
            raise NotFound(f"cabinet {cabinet.key} has no thermal unit")
        since_text = request.query.get("since")
        try:
            since = time.time() - DEFAULT_SPAN_S if since_text is None else parse_since(since_text)
        except ValueError as exc:
            raise Invalid(str(exc), {"since": [str(exc)]}) from None
        try:
            rows: list[dict[str, Any]] = records.readings(cabinet.key, since, MAX_ROWS)
        except RecordsError as exc:
            raise Unavailable(str(exc)) from None
        return web.json_response(rows)

    app.router.add_get("/api/lockers/cabinets/{key}/temperatures", temperatures)
