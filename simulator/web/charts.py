"""What the page's temperature charts draw, and what each cabinet's hardware can do.

``GET /_sim/temperatures/{key}?hours=H`` (1-48, default 3) answers one thermal
cabinet's chart, asked of the agent's local API as any client would
(``/temperatures`` and ``/excursions``, DESIGN.md "Thermal") and joined with the
lines and bands of the config the agent runs on::

    {"key": 4, "since": 1764950000.0, "mode": "chill",
     "readings": [[t, temperature_c | null, mode], ...],      # t: UNIX seconds
     "excursions": [[start, end | null, peak_c | null, mode], ...],
     "lines": {"heat": 63.0, "chill": 8.0, "freeze": -15.0},  # past it: out of temperature
     "bands": {"heat": [66.0, 70.0], "chill": [1.0, 4.0], "freeze": [-22.0, -19.0]}}

:func:`abilities` says what a cabinet's hardware allows, for the page's selectors: the
thermal modes it can hold and whether it has a rear door.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from agent.config import Config

HOURS = (1, 48)
DEFAULT_HOURS = 3


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def abilities(config: Config | None, cab: dict[str, Any]) -> dict[str, Any]:
    """``{"modes": [...], "rear": bool}`` of one cabinet of the raw config ``cab``;
    ``modes`` empty without a thermal unit (``config``: the agent's, None before start)."""
    modes: list[str] = []
    if config is not None:
        for each in config.cabinets:
            if each.key == cab["key"] and each.thermal is not None:
                order = ("ambient", "chill", "freeze", "heat")
                modes = [m for m in order if m in each.thermal.modes()]
    return {"modes": modes, "rear": isinstance(cab.get("rear"), dict)}


async def chart(
    session: aiohttp.ClientSession, api_url: str, config: Config, key: int, hours: float
) -> dict[str, Any]:
    """One cabinet's chart (the module's shape). ``ValueError`` for a cabinet without a
    thermal unit; ``aiohttp.ClientError`` or ``TimeoutError`` when the agent does not answer."""
    if not any(c.key == key and c.thermal is not None for c in config.cabinets):
        raise ValueError(f"cabinet {key} has no thermal unit")
    since = time.time() - hours * 3600.0
    stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in ("temperatures", "excursions"):
        url = f"{api_url}/api/lockers/cabinets/{key}/{name}"
        async with session.get(url, params={"since": stamp}) as resp:
            resp.raise_for_status()
            rows[name] = await resp.json()
    lines = config.thermal.alarm_lines()
    readings = [[_unix(r["t"]), r["temperature_c"], r["mode"]] for r in rows["temperatures"]]
    return {
        "key": key,
        "since": since,
        "mode": readings[-1][2] if readings else None,
        "readings": readings,
        "excursions": [
            [_unix(e["start"]), _unix(e["end"]) if e["end"] else None, e["peak_c"], e["mode"]]
            for e in rows["excursions"]
        ],
        "lines": {
            "heat": lines.hot_min_c,
            "chill": lines.chill_max_c,
            "freeze": lines.frozen_max_c,
        },
        "bands": {m: [b.low, b.high] for m, b in config.thermal.held_bands().items()},
    }
