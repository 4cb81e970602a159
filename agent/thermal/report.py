"""``locker-agent thermal report --day YYYY-MM-DD``: a printable HACCP day sheet, one
page per thermal cabinet, as HTML with print CSS (open it in a browser, print to paper
or PDF), read-only from the storage directory while the agent runs.

Each page says what an inspector asks: which cabinet, which day, in which time zone;
the food code's line and the band held; the readings (each hour's lowest, highest and
last, with how many were taken against how many were due); every time out of
temperature with its start, end, duration and worst temperature; the times an empty
cabinet spent past its line (a pull-down or pre-heat: no food, so no excursion, but
shown and labelled, ADR 0021); the corrective actions
and safety events with who and when (latches and their resets, disables, enables and
mode changes sent by the cloud or a technician); the clock's evidence (readings written
while the wall clock was not known right, excursions found after a power cut); and
lines for the person who checks the sheet to sign. The full readings are in ``thermal
log`` (CSV).

``render(...)`` builds the HTML from a :class:`~agent.thermal.dayrecord.CabinetDay` list;
``main(args, config)`` is the command (exit 0; 1 when the records cannot be read; 2 for
a bad ``--day`` or ``--tz``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.config import Config
from agent.storage.store import STATE_FILE
from agent.thermal.bands import Lines
from agent.thermal.dayrecord import CabinetDay, day_bounds, local_zone, read_day, zone_name
from agent.thermal.records import RECORDS_FILE, RecordsError
from agent.thermal.sheet import (
    MODE_NAMES,
    actions,
    clock_evidence,
    duration,
    empty,
    esc,
    excursions,
    hours,
    table,
)

CSS = """
@page { size: A4; margin: 10mm 12mm; }
body { font: 8.5pt/1.2 "DejaVu Sans", Arial, sans-serif; color: #000; margin: 0; }
.sheet { break-after: page; page-break-after: always; }
.sheet:last-child { break-after: auto; page-break-after: auto; }
h1 { font-size: 13pt; margin: 0 0 2mm; } h2 { font-size: 10pt; margin: 2.5mm 0 .8mm; }
table { border-collapse: collapse; width: 100%; margin-bottom: 2mm; }
th, td { border: 1px solid #555; padding: 0 3px; text-align: left; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.out td { font-weight: bold; } tr.out td:first-child::before { content: "\\2716  "; }
.facts td:first-child { width: 32%; font-weight: bold; }
.none { font-style: italic; } .note { font-size: 8.5pt; }
.sign td { height: 8mm; } ul.clock { margin: 0; padding-left: 5mm; }
@media screen { body { background: #ccc; } .sheet { background: #fff; max-width: 190mm;
  margin: 6mm auto; padding: 8mm; box-shadow: 0 0 4px #888; } }
"""


def render(
    days: Iterable[CabinetDay],
    *,
    day: date,
    tz: tzinfo,
    locker: str,
    food_code: str,
    lines: Lines,
    bands: dict[str, tuple[float, float]],
    log_every_s: int,
    time_limit_s: float,
    made_at: float,
) -> str:
    """The sheet's HTML: one ``<section class="sheet">`` per cabinet.

    A day still going when the sheet is made (``made_at``, UNIX seconds) is told up to
    then: readings due, and time out of line still open, count to ``made_at``, never
    to midnight."""
    zone = zone_name(tz, day)
    made = datetime.fromtimestamp(made_at, tz).strftime("%Y-%m-%d %H:%M:%S")
    pages = [
        _page(cab, day, tz, zone, locker, food_code, lines, bands, log_every_s, time_limit_s, made)
        for cab in (replace(c, end=max(c.start, min(c.end, made_at))) for c in days)
    ]
    if not pages:
        pages = [
            "<section class='sheet'><p class='none'>This locker has no thermal cabinet.</p>"
            "</section>"
        ]
    title = f"HACCP temperature record, {esc(locker)}, {day.isoformat()}"
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body data-made='{esc(made)}'>\n"
        + "\n".join(pages)
        + "\n</body></html>\n"
    )


def _page(
    cab: CabinetDay,
    day: date,
    tz: tzinfo,
    zone: str,
    locker: str,
    food_code: str,
    lines: Lines,
    bands: dict[str, tuple[float, float]],
    log_every_s: int,
    time_limit_s: float,
    made: str,
) -> str:
    modes = sorted({r[2] for r in cab.readings}, key=list(MODE_NAMES).index)
    held = [m for m in modes if m != "ambient"]
    line_text = "; ".join(f"{MODE_NAMES[m]}: {lines.describe(m)}" for m in held) or "none held"
    band_text = "; ".join(f"{MODE_NAMES[m]} {bands[m][0]:g} to {bands[m][1]:g} °C" for m in held)
    trusted = [r[1] for r in cab.readings if r[1] is not None]
    due = round((cab.end - cab.start) / log_every_s)
    out_s = _within(cab, cab.excursions)
    span = f"{min(trusted):.1f} to {max(trusted):.1f} °C" if trusted else "no trusted reading"
    facts = [
        ("Locker, cabinet", f"{locker}, cabinet {cab.key}"),
        ("Day", f"{day.isoformat()} ({_span(cab, day, tz)}), times in {zone}"),
        ("Modes held", ", ".join(MODE_NAMES[m] for m in modes) or "no reading this day"),
        (f"Alarm line ({food_code.upper()} code)", line_text),
        ("Band the unit holds", band_text or "none"),
        ("Time food may be out of line", duration(time_limit_s)),
        (
            "Readings",
            f"{len(cab.readings)} of {due} due (one each {log_every_s} s); "
            f"{len(cab.readings) - len(trusted)} not trusted (sensor)",
        ),
        ("Lowest to highest", span),
        ("Out of temperature", f"{len(cab.excursions)} time(s), {duration(out_s)} in all"),
        (
            "Past its line while empty",
            f"{len(cab.empty)} time(s), {duration(_within(cab, cab.empty))} in all"
            " (pull-down or pre-heat: no food)",
        ),
    ]
    parts = [
        f"<section class='sheet' data-key='{cab.key}'>",
        f"<h1>HACCP temperature record: cabinet {cab.key}, {day.isoformat()}</h1>",
        table(None, [(f"<td>{esc(k)}</td>", f"<td>{esc(v)}</td>") for k, v in facts], "facts"),
        "<h2>Readings, hour by hour</h2>",
        hours(cab, day, tz, lines),
        "<h2>Times out of temperature</h2>",
        excursions(cab, day, tz, lines),
        "<h2>Coming up to temperature, cabinet empty (no food: not out of temperature)</h2>",
        empty(cab, day, tz, lines),
        "<h2>Corrective actions and safety events</h2>",
        actions(cab, day, tz),
        "<h2>Clock</h2>",
        clock_evidence(cab, day, tz),
        "<h2>Checked</h2>",
        "<table class='sign'><tr><th>Name</th><th>Signature</th><th>Date</th></tr>"
        "<tr><td></td><td></td><td></td></tr></table>",
        f"<p class='note'>Made {made} by locker-agent thermal report from the locker's"
        " records; every reading is in <code>locker-agent thermal log</code> (CSV).</p>",
        "</section>",
    ]
    return "\n".join(parts)


def _span(cab: CabinetDay, day: date, tz: tzinfo) -> str:
    """ "00:00 to 24:00", or "00:00 to HH:MM so far" for a day the sheet was made in."""
    if cab.end >= day_bounds(day, tz)[1]:
        return "00:00 to 24:00"
    return f"00:00 to {datetime.fromtimestamp(cab.end, tz):%H:%M} so far"


def _within(cab: CabinetDay, rows: Iterable[tuple[Any, ...]]) -> float:
    """Seconds of ``rows`` (start, end or None: open, ...) within the day as told
    (``cab.end``: midnight, or when the sheet was made)."""
    return sum(
        max(0.0, min(end if end is not None else cab.end, cab.end) - max(start, cab.start))
        for start, end, *_ in rows
    )


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``thermal report``: its arguments (the config file as every thermal command)."""
    report = sub.add_parser("report", help="a printable HACCP day sheet (HTML), one page a cabinet")
    report.add_argument("--day", required=True, help="the day, YYYY-MM-DD (in --tz)")
    report.add_argument(
        "--out", type=Path, metavar="FILE", help="write the sheet here (default: stdout)"
    )
    report.add_argument("--key", type=int, help="one cabinet only (default: every one)")
    report.add_argument("--tz", help="the time zone, e.g. Europe/London (default: this machine's)")
    report.add_argument("file", nargs="?", help="the TOML config file")
    report.add_argument("--config", dest="config_flag", metavar="FILE", help="the same")


def main(args: argparse.Namespace, config: Config, now: float | None = None) -> int:
    """Write the sheet for ``args.day``; the exit status."""
    # Each in its own try: ZoneInfo raises ValueError too (a path, a file not a zone),
    # which a shared one said was --day's.
    try:
        day = date.fromisoformat(args.day)
    except ValueError:
        print(f"locker-agent thermal report: --day: YYYY-MM-DD, not {args.day!r}", file=sys.stderr)
        return 2
    try:
        tz: tzinfo = ZoneInfo(args.tz) if args.tz else local_zone()
    except (ValueError, ZoneInfoNotFoundError, OSError):
        print(f"locker-agent thermal report: --tz: no time zone {args.tz!r}", file=sys.stderr)
        return 2
    keys = [c.key for c in config.cabinets if c.thermal is not None]
    if args.key is not None:
        if args.key not in keys:
            print(
                f"locker-agent thermal report: cabinet {args.key} has no thermal unit",
                file=sys.stderr,
            )
            return 2
        keys = [args.key]
    storage = config.storage.dir
    try:
        days = read_day(storage / RECORDS_FILE, storage / STATE_FILE, keys, day, tz)
    except RecordsError as exc:
        print(f"locker-agent thermal report: {exc}", file=sys.stderr)
        return 1
    thermal = config.thermal
    sheet = render(
        days,
        day=day,
        tz=tz,
        locker=config.locker.name or "locker",
        food_code=thermal.food_code,
        lines=thermal.alarm_lines(),
        bands={m: (b.low, b.high) for m, b in thermal.held_bands().items()},
        log_every_s=thermal.log_every_s,
        time_limit_s=thermal.time_limit_s(),
        made_at=now if now is not None else datetime.now(UTC).timestamp(),
    )
    if args.out is None:
        sys.stdout.write(sheet)
    else:
        args.out.write_text(sheet, encoding="utf-8")
        print(f"{args.out}: {len(days)} cabinet page(s) for {day.isoformat()}", file=sys.stderr)
    if not any(cab.readings for cab in days):
        print(f"locker-agent thermal report: no records for {day.isoformat()}", file=sys.stderr)
        return 1
    return 0
