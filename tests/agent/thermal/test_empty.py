"""An empty cabinet coming up to temperature (a start-up pull-down or pre-heat) is not
food out of temperature (ADR 0021): against the simulator's physics on a fake clock,
with item sensors on mock pins read as a board's answers are. No
``temperature_out_of_band``, no excursion, the hours labelled in the records and on
the day sheet; an item put in while still past the line starts the excursion then;
an unknown, unsensed or assumed occupancy changes nothing; ``thermal_not_converging``
still catches an empty cabinet that never comes up; food clocks of occupied cabinets
count as they did."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from agent.thermal.alarms import NOT_CONVERGING, OUT_OF_BAND
from agent.thermal.dayrecord import read_day
from agent.thermal.export import export_csv
from agent.thermal.records import RECORDS_FILE, Records
from agent.thermal.report import render

MODES = {0: "heat", 1: "chill", 2: "freeze"}


def _rows(rig, key: int) -> list[tuple]:
    """Every row of ``key`` in the excursions table, kinds included, oldest first."""
    db = sqlite3.connect(rig.tmp_path / RECORDS_FILE)
    try:
        return db.execute(
            "SELECT start, end, peak_c, mode, kind FROM excursions WHERE key = ? ORDER BY start",
            (key,),
        ).fetchall()
    finally:
        db.close()


def _notes(rig, key: int) -> list[str | None]:
    db = sqlite3.connect(rig.tmp_path / RECORDS_FILE)
    try:
        rows = db.execute("SELECT note FROM readings WHERE key = ? ORDER BY t", (key,))
        return [note for (note,) in rows]
    finally:
        db.close()


def _wall(rig) -> float:
    return rig.now + 1.8e9 + rig.wall_offset_s


async def test_an_empty_cabinets_pull_down_and_pre_heat_page_nobody(rigs):
    rig = await rigs(MODES, items=True)
    assert all(not rig.locker.cabinets[k].occupied for k in MODES)
    rig.run(2 * 3600, dt_s=30)  # from the room to every band
    for key in MODES:
        assert rig.alarms(key) == set(), key
        assert rig.thermal.records.excursions(key) == [], key  # the API's: food's only
        assert rig.thermal.units[key].food.out_s == 0.0
    assert OUT_OF_BAND not in rig.events()
    # Not hidden: each came up as a row of its own, labelled, ended once in line.
    [(_, end, peak, mode, kind)] = _rows(rig, 0)
    assert (mode, kind, peak) == ("heat", "pre-heat", 22.0) and end is not None
    for key in (1, 2):
        [(_, end, peak, mode, kind)] = _rows(rig, key)
        assert (mode, kind, peak) == (MODES[key], "pull-down", 22.0) and end is not None
    notes = _notes(rig, 2)
    assert notes[0] == "pull-down" and notes[-1] is None  # the hours it came up, then held
    # The CSV carries the label; its excursions are food's only.
    csv = "".join(export_csv(rig.tmp_path / RECORDS_FILE, key=2))
    assert csv.splitlines()[0].endswith(",clock,note") and ",pull-down" in csv
    excursions = list(export_csv(rig.tmp_path / RECORDS_FILE, key=2, table="excursions"))
    assert len(excursions) == 1  # the header alone


async def test_an_item_put_in_mid_pull_down_starts_the_excursion_then(rigs):
    rig = await rigs({2: "freeze"}, items=True, alarm_raise_s=20)
    rig.run(600, dt_s=10)
    assert rig.temp(2) > -15.0 and rig.alarms(2) == set()  # coming down, still past its line
    put_in = _wall(rig)
    await rig.item(2, True)  # a courier puts the food in early
    rig.run(10, dt_s=10)
    [(_, p_end, _, _, p_kind), (e_start, e_end, e_peak, e_mode, e_kind)] = _rows(rig, 2)
    assert p_kind == "pull-down" and p_end == e_start
    assert e_kind is None and e_end is None and put_in <= e_start <= put_in + 10
    assert e_mode == "freeze" and e_peak == rig.thermal.units[2].verdict.temperature_c
    [excursion] = rig.thermal.records.excursions(2)  # the API's
    assert excursion["end"] is None and excursion["mode"] == "freeze"
    rig.run(30, dt_s=10)  # its cause lasts alarm_raise_s: raised
    assert OUT_OF_BAND in rig.alarms(2)
    assert rig.events().count(OUT_OF_BAND) == 1
    food = rig.thermal.units[2].food
    assert 30.0 <= food.out_s <= 50.0  # counted from the item, not from the power-up
    rig.run(3 * 3600, dt_s=30)  # it comes into its line: the excursion ends
    assert OUT_OF_BAND not in rig.alarms(2)
    [excursion] = rig.thermal.records.excursions(2)
    assert excursion["end"] is not None and excursion["peak_c"] > -15.0


async def test_the_sheet_labels_the_pull_down_and_the_excursion_after_it(rigs):
    rig = await rigs({2: "freeze"}, items=True)
    rig.run(900, dt_s=10)
    await rig.item(2, True)
    rig.run(3 * 3600, dt_s=30)
    day = _day(rig, 2)
    [(_, _, _, _, _, kind)] = day.empty
    assert kind == "pull-down" and len(day.excursions) == 1
    sheet = _render(rig, day)
    assert "Coming up to temperature, cabinet empty" in sheet
    assert "pull-down, cabinet empty; frozen: at or below -15 C" in sheet
    assert "an item was put in; its time out of temperature began" in sheet
    assert "Out of temperature</td><td>1 time(s)" in sheet  # the food's, once
    # From the first round to the round after the item: 920 s of 10 s and 30 s rounds.
    assert "Past its line while empty</td><td>1 time(s), 15 min 20 s" in sheet
    hours = sheet.split("class='hours'")[1].split("</table>")[0]
    assert "past its line: pull-down, cabinet empty" in hours  # the hour it came down empty
    assert "OUT OF LINE" in hours  # and the food's, marked


async def test_taking_the_food_out_ends_the_excursion_and_the_alarm(rigs):
    rig = await rigs({1: "chill"}, items=True, alarm_raise_s=0, alarm_clear_s=60)
    await rig.item(1, True)
    rig.run(120, dt_s=10)
    assert OUT_OF_BAND in rig.alarms(1)
    await rig.item(1, False)  # taken out, still past the line
    rig.run(120, dt_s=10)
    assert OUT_OF_BAND not in rig.alarms(1)
    [(_, e_end, _, _, e_kind), (p_start, p_end, _, _, p_kind)] = _rows(rig, 1)
    assert e_kind is None and e_end == p_start and p_kind == "pull-down" and p_end is None


async def test_occupancy_unknown_unsensed_or_assumed_alarms_as_before(rigs):
    # No answer from the item sensor yet (a cabinet without one): occupied is a default.
    rig = await rigs({1: "chill"}, alarm_raise_s=0)
    rig.run(60, dt_s=10)
    assert OUT_OF_BAND in rig.alarms(1) and _rows(rig, 1)[0][4] is None
    # Its board went silent: the last reading, empty, is not known now.
    rig = await rigs({1: "chill"}, items=True, alarm_raise_s=0)
    rig.locker.item_sensed(1, None)
    rig.run(60, dt_s=10)
    assert OUT_OF_BAND in rig.alarms(1) and _rows(rig, 1)[0][4] is None
    # No item sensors trusted (assume_occupied): an empty reading proves nothing.
    rig = await rigs({1: "chill"}, items=True, alarm_raise_s=0, assume_occupied=True)
    rig.run(60, dt_s=10)
    assert OUT_OF_BAND in rig.alarms(1) and _rows(rig, 1)[0][4] is None


async def test_an_empty_cabinet_that_never_comes_up_is_still_caught(rigs):
    rig = await rigs({2: "freeze"}, items=True, compressor_min_off_s=0, converge_s=600)
    rig.plant.body(2).cooler_failed = True  # the compressor runs, nothing cools
    rig.run(900, dt_s=10)
    assert NOT_CONVERGING in rig.alarms(2) and OUT_OF_BAND not in rig.alarms(2)
    assert rig.thermal.units[2].latched and not rig.pin(22)
    assert rig.locker.cabinets[2].thermal_latches  # set_thermal_mode meets it
    [(_, end, _, _, kind)] = _rows(rig, 2)
    assert kind == "pull-down" and end is None  # still shown as not come up


async def test_an_empty_cabinet_past_its_line_after_holding_it_is_paged_and_labelled(rigs):
    """Only coming up is quiet: an empty cabinet that leaves its line after holding it
    is paged (a unit failing before food goes in; channels with no sensor fitted read
    empty), and its record is labelled ``empty``, not a food excursion."""
    rig = await rigs({1: "chill"}, 3.0, items=True, alarm_raise_s=0)
    rig.run(300, dt_s=10)
    await rig.door(1, True)  # left open, nothing in it
    rig.plant.room_c = 30.0
    rig.run(1800, dt_s=10)
    assert rig.temp(1) > 8.0 and OUT_OF_BAND in rig.alarms(1)
    [(_, _, _, _, kind)] = _rows(rig, 1)
    assert kind == "empty"


async def test_an_occupied_cabinets_food_clock_is_as_without_item_sensors(rigs):
    """The same physics, one rig reading an item, one with no item sensor: the food
    clocks, the alarms and the excursions agree, round for round."""
    faults = {"alarm_raise_s": 20}
    sensed = await rigs({1: "chill", 2: "freeze"}, items=True, **faults)
    plain = await rigs({1: "chill", 2: "freeze"}, **faults)
    for key in (1, 2):
        await sensed.item(key, True)
        plain.locker.cabinets[key].occupied = True  # the old default path: no sensor
    for rig in (sensed, plain):
        rig.plant.body(1).cooler_failed = True  # food left in a failing chiller
    for _ in range(40):
        sensed.run(300, dt_s=30)
        plain.run(300, dt_s=30)
        for key in (1, 2):
            a, b = sensed.thermal.units[key], plain.thermal.units[key]
            assert a.food.out_s == b.food.out_s, key
            assert a.food.exceeded == b.food.exceeded
            assert sensed.alarms(key) == plain.alarms(key)
    assert sensed.thermal.units[1].food.exceeded  # the failing chiller's food ran out
    for key in (1, 2):
        assert sensed.thermal.records.excursions(key) == plain.thermal.records.excursions(key)


def test_a_file_an_older_agent_wrote_is_read_and_brought_up(tmp_path):
    """No ``kind`` nor ``note`` yet: the sheet and the CSV read it read-only as it is
    (every row food's), and the agent adds the columns at open."""
    path = tmp_path / RECORDS_FILE
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE readings (key INTEGER NOT NULL, t REAL NOT NULL, temperature_c REAL,"
        " mode TEXT NOT NULL, sensor TEXT NOT NULL, clock TEXT, mono REAL);"
        "CREATE TABLE excursions (key INTEGER NOT NULL, start REAL NOT NULL, end REAL,"
        " peak_c REAL, mode TEXT NOT NULL, clock TEXT, start_mono REAL, end_mono REAL);"
        "CREATE TABLE latch_log (key INTEGER NOT NULL, t REAL NOT NULL, event TEXT NOT NULL,"
        " alarm TEXT NOT NULL, why TEXT NOT NULL, by TEXT);"
        "INSERT INTO readings VALUES (1, 1.8e9, 9.5, 'chill', 'ok', NULL, NULL);"
        "INSERT INTO excursions VALUES (1, 1.8e9, 1.8e9 + 600, 9.5, 'chill', NULL, NULL, NULL);"
    )
    db.commit()
    db.close()
    day = datetime.fromtimestamp(1.8e9, UTC).date()
    [cab] = read_day(path, None, [1], day, UTC)
    assert cab.readings[0][5] is None and len(cab.excursions) == 1 and cab.empty == []
    assert "".join(export_csv(path)).splitlines()[1].endswith(",chill,ok,,")
    assert len(list(export_csv(path, table="excursions"))) == 2
    records = Records(path)
    try:
        records.log(1.8e9 + 60, [(1, 3.0, "chill", "ok", None)])
        assert len(records.excursions(1)) == 1
    finally:
        records.close()


def _sheet(rig, key: int) -> str:
    """The day sheet of ``key`` for the rig's day (UTC), its records closed first."""
    return _render(rig, _day(rig, key))


def _day(rig, key: int):
    """``key``'s record of the rig's day (UTC), its records closed first."""
    rig.thermal.records.close()
    utc = datetime.fromtimestamp(_wall(rig), UTC)
    [day] = read_day(rig.tmp_path / RECORDS_FILE, None, [key], utc.date(), UTC)
    return day


def _render(rig, day) -> str:
    """The sheet of ``day`` as the rig's config would print it, made now."""
    config = rig.config.thermal
    return render(
        [day],
        day=datetime.fromtimestamp(_wall(rig), UTC).date(),
        tz=UTC,
        locker="Canteen",
        food_code="uk",
        lines=config.alarm_lines(),
        bands={m: (b.low, b.high) for m, b in config.held_bands().items()},
        log_every_s=60,
        time_limit_s=config.time_limit_s(),
        made_at=_wall(rig),
    )


async def test_a_silent_item_board_mid_pull_down_is_not_food_in_the_record(rigs):
    """Review finding: the item sensor's board missing polls during an empty cabinet's
    pull-down ended the pull-down row and opened a food excursion, and the sheet said
    "an item was put in". Its last reading was empty: the row goes on."""
    rig = await rigs({2: "freeze"}, items=True, alarm_raise_s=300)
    rig.run(600, dt_s=10)
    assert rig.temp(2) > -15.0  # coming down, still past its line
    rig.locker.item_sensed(2, None)  # the board silent for a minute (missed polls)
    rig.run(60, dt_s=10)
    assert rig.thermal.units[2].coming_up == "pull-down"
    rig.locker.item_sensed(2, False)  # it answers again: still empty
    rig.run(3 * 3600, dt_s=30)
    [(_, end, peak, mode, kind)] = _rows(rig, 2)  # one row, from the room to its line
    assert (mode, kind, peak) == ("freeze", "pull-down", 22.0) and end is not None
    assert rig.thermal.records.excursions(2) == []  # the API's: food's only
    assert rig.thermal.units[2].food.out_s == 0.0
    db = sqlite3.connect(rig.tmp_path / RECORDS_FILE)
    try:  # each reading of the pull-down labelled, the silent minute's too
        notes = db.execute("SELECT note FROM readings WHERE key = 2 AND t < ?", (end,))
        assert {note for (note,) in notes} == {"pull-down"}
    finally:
        db.close()
    sheet = _sheet(rig, 2)
    assert "Out of temperature</td><td>0 time(s)" in sheet
    assert "an item was put in" not in sheet
    hours = sheet.split("class='hours'")[1].split("</table>")[0]
    assert "OUT OF LINE" not in hours


async def test_a_silent_item_board_still_pages_and_an_item_read_starts_the_excursion(rigs):
    """The alarms stay cautious (ADR 0021: unknown occupancy may be food), only the
    record waits for an item to be read; read while still past its line, the
    pull-down row ends and the food's excursion starts then."""
    rig = await rigs({2: "freeze"}, items=True, alarm_raise_s=0)
    rig.run(600, dt_s=10)
    assert OUT_OF_BAND not in rig.alarms(2)
    rig.locker.item_sensed(2, None)
    rig.run(60, dt_s=10)
    assert OUT_OF_BAND in rig.alarms(2)  # silence pages as before
    [(_, end, _, _, kind)] = _rows(rig, 2)
    assert kind == "pull-down" and end is None  # the row goes on
    put_in = _wall(rig)
    rig.locker.item_sensed(2, True)  # it answers: an item is in
    rig.run(10, dt_s=10)
    [(_, p_end, _, _, p_kind), (e_start, e_end, _, _, e_kind)] = _rows(rig, 2)
    assert p_kind == "pull-down" and p_end == e_start and put_in <= e_start <= put_in + 10
    assert e_kind is None and e_end is None
    assert OUT_OF_BAND in rig.alarms(2)


async def test_a_board_silent_with_no_labelled_row_open_records_food(rigs):
    """Only a labelled row goes on: past its line with the board silent and no row
    open (or a food row open), the record stays food's, as before."""
    rig = await rigs({1: "chill"}, 3.0, items=True, alarm_raise_s=0)
    rig.run(600, dt_s=10)  # in its line, empty
    rig.locker.item_sensed(1, None)
    await rig.door(1, True)
    rig.plant.room_c = 30.0
    rig.run(1800, dt_s=10)
    assert OUT_OF_BAND in rig.alarms(1)
    assert [kind for *_, kind in _rows(rig, 1)] == [None]
