"""The sections of a cabinet's HACCP day sheet (``report.py`` puts them on the page):
the hours, the times out of temperature, an empty cabinet's times past its line
(a pull-down or pre-heat: no food, so no excursion, but shown, ADR 0021), the
corrective actions and the clock's evidence. Each answers HTML, escaped; none raises.
"""

from __future__ import annotations

import html
from datetime import date, datetime, tzinfo
from typing import Any

from agent.thermal.bands import Lines
from agent.thermal.dayrecord import CabinetDay

MODE_NAMES = {"heat": "hot holding", "chill": "chilled", "freeze": "frozen", "ambient": "ambient"}
EMPTY_NAMES = {
    "pull-down": "pull-down, cabinet empty",
    "pre-heat": "pre-heat, cabinet empty",
    "empty": "past its line, cabinet empty",
}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def at(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%H:%M:%S")


def when(t: float, tz: tzinfo, day: date) -> str:
    """The time of day, with the date when it is not the sheet's day."""
    moment = datetime.fromtimestamp(t, tz)
    return moment.strftime("%H:%M:%S" if moment.date() == day else "%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def celsius(value: float | None) -> str:
    return "not trusted" if value is None else f"{value:.1f} °C"


def table(
    head: list[str] | None,
    rows: list[tuple[str, ...]],
    cls: str = "",
    mark: list[bool] | None = None,
) -> str:
    out = [f"<table class='{cls}'>" if cls else "<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
    for i, row in enumerate(rows):
        out.append(("<tr class='out'>" if mark and mark[i] else "<tr>") + "".join(row) + "</tr>")
    return "\n".join(out) + "</table>"


def hours(cab: CabinetDay, day: date, tz: tzinfo, lines: Lines) -> str:
    """Each hour's readings: how many, lowest, highest, last, and a verdict (food out of
    line is marked; an empty cabinet past its line says its label, unmarked)."""
    if not cab.readings:
        return "<p class='none'>No reading was kept this day.</p>"
    by_hour: dict[str, list[tuple[Any, ...]]] = {}
    for t in range(int(cab.start), int(cab.readings[-1][0]) + 1, 3600):  # gaps shown
        by_hour[datetime.fromtimestamp(t, tz).strftime("%H:00")] = []
    for row in cab.readings:
        by_hour.setdefault(datetime.fromtimestamp(row[0], tz).strftime("%H:00"), []).append(row)
    rows, marks = [], []
    for hour, group in by_hour.items():
        if not group:  # a gap an inspector must see, never a silent one
            rows.append((f"<td>{hour}</td>", "<td colspan='6'>NO READING KEPT</td>"))
            marks.append(True)
            continue
        temps = [r[1] for r in group if r[1] is not None]
        modes = "/".join(dict.fromkeys(r[2] for r in group))
        past = [r for r in group if r[1] is not None and not lines.safe(r[2], r[1])]
        out = any(r[5] is None for r in past)  # food's: an empty cabinet's is labelled
        labels = list(dict.fromkeys(EMPTY_NAMES.get(r[5], r[5]) for r in past if r[5]))
        held = any(r[2] != "ambient" for r in group)
        doubt = sum(1 for r in group if r[1] is None)
        last = group[-1]
        verdict = "OUT OF LINE" if out else "within line" if held else "no line (ambient)"
        if labels:  # the hours a cabinet came up to temperature empty: said, not hidden
            verdict = ("OUT OF LINE; " if out else "") + "past its line: " + "; ".join(labels)
        rows.append(
            (
                f"<td>{hour}</td>",
                f"<td>{esc(modes)}</td>",
                f"<td class='n'>{len(group)}</td>",
                f"<td class='n'>{celsius(min(temps)) if temps else '-'}</td>",
                f"<td class='n'>{celsius(max(temps)) if temps else '-'}</td>",
                f"<td class='n'>{celsius(last[1])} at {at(last[0], tz)}</td>",
                f"<td>{esc(verdict)}{f', {doubt} not trusted' if doubt else ''}</td>",
            )
        )
        marks.append(out)
    head = ["Hour", "Mode", "Readings", "Lowest", "Highest", "Last", "Verdict"]
    after = f"<p>No reading after {at(cab.readings[-1][0], tz)}.</p>"
    return table(head, rows, "hours", mark=marks) + after


def excursions(cab: CabinetDay, day: date, tz: tzinfo, lines: Lines) -> str:
    """Each time food was out of temperature: start, end, duration, worst, line, clock."""
    if not cab.excursions and not cab.readings:
        return "<p class='none'>NO RECORDS: nothing here says the food stayed in its line.</p>"
    if not cab.excursions:
        return "<p class='none'>None at the readings kept (see the hours above).</p>"
    rows = []
    for start, end, peak, mode, clock in cab.excursions:
        ended = when(end, tz, day) if end is not None else "not ended by the last record"
        length = duration(end - start) if end is not None else "still open"
        worst = "lowest" if mode == "heat" else "highest"
        rows.append(
            (
                f"<td>{when(start, tz, day)}</td>",
                f"<td>{ended}</td>",
                f"<td class='n'>{length}</td>",
                f"<td class='n'>{celsius(peak)} ({worst})</td>",
                f"<td>{esc(MODE_NAMES.get(mode, mode))}: {esc(lines.describe(mode))}</td>",
                f"<td>{esc(clock_note(clock))}</td>",
            )
        )
    head = ["Start", "End", "Duration", "Worst", "Line", "Clock"]
    return table(head, rows, "excursions")


def empty(cab: CabinetDay, day: date, tz: tzinfo, lines: Lines) -> str:
    """Each time the cabinet, known empty, was past its line (a pull-down, a pre-heat,
    or later while empty): start, end, duration, worst, what, how it ended, clock."""
    if not cab.empty:
        return "<p class='none'>None this day.</p>"
    food_from = {start for start, *_ in cab.excursions}
    rows = []
    for start, end, peak, mode, clock, kind in cab.empty:
        if end is None:
            ended, length = "not ended by the last record", "still open"
        else:
            ended, length = when(end, tz, day), duration(end - start)
            if end in food_from:  # an item put in while still past the line
                ended += ": an item was put in; its time out of temperature began"
        worst = "lowest" if mode == "heat" else "highest"
        rows.append(
            (
                f"<td>{when(start, tz, day)}</td>",
                f"<td>{esc(ended)}</td>",
                f"<td class='n'>{length}</td>",
                f"<td class='n'>{celsius(peak)} ({worst})</td>",
                f"<td>{esc(EMPTY_NAMES.get(kind, kind))}; {esc(MODE_NAMES.get(mode, mode))}:"
                f" {esc(lines.describe(mode))}</td>",
                f"<td>{esc(clock_note(clock))}</td>",
            )
        )
    head = ["Start", "End", "Duration", "Worst", "What", "Clock"]
    return table(head, rows, "empty")


def actions(cab: CabinetDay, day: date, tz: tzinfo) -> str:
    """The corrective actions and safety events, with the mode changes seen."""
    rows = [
        (
            a.t,
            f"<td>{when(a.t, tz, day)}</td>",
            f"<td>{esc(a.what)}</td>",
            f"<td>{esc(a.by or 'the agent (automatic)')}</td>",
            f"<td>{esc(a.why or '-')}</td>",
            f"<td>{esc(a.outcome)}</td>",
        )
        for a in cab.actions
    ]
    previous = None
    for t, _temp, mode, *_ in cab.readings:
        if previous is not None and mode != previous:
            rows.append(
                (
                    t,
                    f"<td>{when(t, tz, day)}</td>",
                    f"<td>mode seen changed: {esc(previous)} to {esc(mode)}</td>",
                    "<td>-</td>",
                    "<td>first reading in the new mode</td>",
                    "<td>seen</td>",
                )
            )
        previous = mode
    if not rows:
        return "<p class='none'>None recorded this day.</p>"
    rows.sort(key=lambda r: r[0])  # stable: an action before the reading that shows it
    cells = [tuple(str(c) for c in r[1:]) for r in rows]
    return table(["Time", "What", "Who", "Why", "Outcome"], cells, "actions")


def clock_note(clock: str | None) -> str:
    return {
        None: "known right",
        "unsure": "not known right when written",
        "corrected": "corrected once the clock was known",
        "outage": "began during a power cut: start is the last record before it",
        "outage, end unsure": "began during a power cut; end not known right",
    }.get(clock, str(clock))


def clock_evidence(cab: CabinetDay, day: date, tz: tzinfo) -> str:
    """What the clock's evidence says of this page's times."""
    notes: dict[str, list[float]] = {}
    for row in cab.readings:
        if row[4] is not None:
            notes.setdefault(row[4], []).append(row[0])
    if not cab.readings:
        return "<p>No reading was kept this day: no clock to vouch for.</p>"
    if not notes and not any(e[4] for e in cab.excursions):
        return (
            "<p>Every time on this page was written by a wall clock known synchronised"
            " (network time).</p>"
        )
    items = [
        f"<li>{len(ts)} reading(s) from {when(ts[0], tz, day)} to {when(ts[-1], tz, day)}:"
        f" {esc(clock_note(k))}</li>"
        for k, ts in sorted(notes.items())
    ]
    items += [
        f"<li>Excursion from {when(e[0], tz, day)}: {esc(clock_note(e[4]))}</li>"
        for e in cab.excursions
        if e[4]
    ]
    return "<ul class='clock'>" + "".join(items) + "</ul>"
