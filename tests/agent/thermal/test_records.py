"""The temperature records: kept, served, pruned, exported as CSV, survived damage."""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys

import pytest

from agent.thermal.export import export_csv
from agent.thermal.records import RECORDS_FILE, Records, RecordsError
from agent.thermal.times import parse_since

T0 = 1_795_000_000.0  # 2026-11-18


def test_readings_excursions_and_clocks_round_trip(tmp_path):
    records = Records(tmp_path / RECORDS_FILE)
    records.log(T0, [(0, 3.94, "chill", "ok"), (1, None, "freeze", "failed")])
    records.log(T0 + 300, [(0, 4.06, "chill", "ok")])
    assert records.readings(0) == [
        {"t": "2026-11-18T11:06:40Z", "temperature_c": 3.9, "mode": "chill"},
        {"t": "2026-11-18T11:11:40Z", "temperature_c": 4.1, "mode": "chill"},
    ]
    assert records.readings(0, since=T0 + 1) == records.readings(0)[1:]
    assert records.readings(1) == [
        {"t": "2026-11-18T11:06:40Z", "temperature_c": None, "mode": "freeze"}
    ]
    records.excursion_started(0, T0, 8.5, "chill")
    records.excursion_peak(0, 11.25, hot=False)
    records.excursion_peak(0, 9.0, hot=False)  # not worse: the peak stays
    records.excursion_ended(0, T0 + 1800)
    [excursion] = records.excursions(0)
    assert excursion == {
        "start": "2026-11-18T11:06:40Z",
        "end": "2026-11-18T11:36:40Z",
        "duration_s": 1800,
        "peak_c": 11.2,
        "mode": "chill",
        "clock": None,
    }
    records.save_food_clocks(T0, {0: (125.0, True, 9.5)})
    records.close()
    assert Records(tmp_path / RECORDS_FILE).food_clocks() == {0: (125.0, T0, True, 9.5)}


def test_retention_forgets_what_is_older(tmp_path):
    records = Records(tmp_path / RECORDS_FILE, retention_days=400)
    records.log(T0 - 401 * 86400, [(0, 1.0, "chill", "ok")])
    records.log(T0 - 399 * 86400, [(0, 2.0, "chill", "ok")])
    records.prune(T0)
    assert [r["temperature_c"] for r in records.readings(0)] == [2.0]


def test_a_damaged_file_is_set_aside_and_records_go_on(tmp_path):
    path = tmp_path / RECORDS_FILE
    path.write_bytes(b"this is not a database" * 100)
    records = Records(path)
    assert records.notice is not None and "damaged" in records.notice
    records.log(T0, [(0, 5.0, "chill", "ok")])
    assert records.readings(0)[0]["temperature_c"] == 5.0
    assert any(p.name.startswith(f"{RECORDS_FILE}.damaged-") for p in tmp_path.iterdir())


def test_since_is_iso_8601():
    assert parse_since("2026-11-29T10:00:00Z") == parse_since("2026-11-29T10:00:00+00:00")
    with pytest.raises(ValueError, match="%2B"):
        parse_since("2026-11-29T10:00:00 01:00")  # an unencoded + in a URL
    for odd in ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", ""):
        with contextlib.suppress(ValueError):
            parse_since(odd)
    assert parse_since("2026-11-29T10:00:00") == parse_since("2026-11-29T10:00:00Z")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("last tuesday")


def test_csv_export_streams_and_a_missing_file_is_said(tmp_path):
    records = Records(tmp_path / RECORDS_FILE)
    records.log(T0, [(0, 3.9375, "chill", "ok"), (1, None, "freeze", "failed")])
    records.log(T0 + 60, [(2, 15.0, "chill", "ok", "pull-down")])  # an empty cabinet's
    lines = list(export_csv(tmp_path / RECORDS_FILE))
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    assert rows == [
        {"key": "0", "t": "2026-11-18T11:06:40Z", "temperature_c": "3.94", "mode": "chill",
         "sensor": "ok", "clock": "", "note": ""},
        {"key": "1", "t": "2026-11-18T11:06:40Z", "temperature_c": "", "mode": "freeze",
         "sensor": "failed", "clock": "", "note": ""},
        {"key": "2", "t": "2026-11-18T11:07:40Z", "temperature_c": "15.00", "mode": "chill",
         "sensor": "ok", "clock": "", "note": "pull-down"},
    ]  # fmt: skip
    assert len(list(export_csv(tmp_path / RECORDS_FILE, key=1))) == 2
    with pytest.raises(RecordsError, match="no temperature records"):
        list(export_csv(tmp_path / "nowhere.sqlite3"))


def test_thermal_log_command(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    records = Records(state / RECORDS_FILE)
    records.log(T0, [(0, 63.5, "heat", "ok"), (1, -19.0, "freeze", "ok")])
    records.close()
    config = tmp_path / "agent.toml"
    config.write_text(
        '[cloud]\nurl = "https://c.example.com"\napi_key = "k"\n[api]\ntoken = "t"\n'
        f'[storage]\ndir = "{state}"\n'
        '[[buses]]\nname = "gpio"\ndriver = "gpio"\npin_factory = "mock"\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "gpio", switch = 4, lock = 5 }\n'
        'thermal = { sensor = "28-00000a1b2c3d", bus = "gpio", heater = 17 }\n'
    )
    agent = [sys.executable, "-m", "agent", "thermal", "log"]
    done = subprocess.run([*agent, str(config), "--key", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "key,t,temperature_c,mode,sensor,clock,note",
        "0,2026-11-18T11:06:40Z,63.50,heat,ok,,",
    ]
    bad = subprocess.run([*agent, "--config", str(config), "--since", "soon"], capture_output=True)
    assert bad.returncode == 2 and b"ISO 8601" in bad.stderr
    empty = subprocess.run([*agent, str(config), "--since", ""], capture_output=True)
    assert empty.returncode == 2
    records = Records(state / RECORDS_FILE)
    records.excursion_started(0, T0, 61.0, "heat")
    records.excursion_ended(0, T0 + 600)
    records.close()
    done = subprocess.run([*agent, str(config), "--excursions"], capture_output=True, text=True)
    assert done.stdout.splitlines() == [
        "key,start,end,duration_s,peak_c,mode,clock",
        "0,2026-11-18T11:06:40Z,2026-11-18T11:16:40Z,600,61.00,heat,",
    ]
    (state / RECORDS_FILE).write_bytes(b"not a database" * 300)
    damaged = subprocess.run([*agent, str(config)], capture_output=True, text=True)
    assert damaged.returncode == 1 and damaged.stdout == ""
    (state / RECORDS_FILE).unlink()
    gone = subprocess.run([*agent, str(config)], capture_output=True, text=True)
    assert gone.returncode == 1 and "no temperature records" in gone.stderr
    # A locker with no thermal unit is told so, not asked whether this is its storage.
    config.write_text(
        config.read_text().replace(
            'thermal = { sensor = "28-00000a1b2c3d", bus = "gpio", heater = 17 }\n', ""
        )
    )
    for command in (
        [*agent, str(config)],
        [*agent[:-1], "report", str(config), "--day", "2026-12-05"],
    ):
        none = subprocess.run(command, capture_output=True, text=True)
        assert none.returncode == 1 and none.stderr == (
            f"locker-agent thermal {command[4]}: no cabinet of this locker has a thermal"
            " unit: it keeps no temperature records\n"
        )


def test_a_mode_toggled_for_ever_cannot_grow_the_excursions(tmp_path):
    """A peer toggling a cabinet's mode makes an excursion a toggle: kept to a bound,
    the oldest ended ones dropped first and counted; an open one is never dropped."""
    records = Records(tmp_path / RECORDS_FILE, max_excursions=50)
    records.excursion_started(9, 0.0, 30.0, "chill")  # still open: never dropped
    for i in range(1, 200):
        records.excursion_started(1, float(i), 20.0, "chill")
        records.excursion_ended(1, i + 0.5)
    kept = records.excursions(1)
    assert len(kept) <= 50 + 1  # the bound, and the one that was open at the last trim
    assert records.excursions_dropped == 199 - len(kept)
    assert [e["end"] for e in records.excursions(9)] == [None]
    assert max(e["start"] for e in kept) == "1970-01-01T00:03:19Z"  # the newest kept
    records.close()


def test_times_written_under_an_unsure_clock_say_so_and_are_corrected(tmp_path):
    """A Pi without a clock chip boots 40 min behind: what it writes says ``unsure``
    until the clock is known, then every row of this run is rewritten from it."""
    records = Records(tmp_path / RECORDS_FILE)
    behind = 2400.0
    records.log(T0 - behind, [(0, 9.0, "chill", "ok")], unsure_mono=100.0)
    records.excursion_started(0, T0 - 3 * 3600, 9.0, "chill", clock="outage")
    records.excursion_ended(0, T0 + 60 - behind, unsure_mono=160.0)
    rows = list(csv.DictReader(io.StringIO("".join(export_csv(tmp_path / RECORDS_FILE)))))
    assert [r["clock"] for r in rows] == ["unsure"]
    assert records.excursions(0, since=0)[0]["clock"] == "outage, end unsure"
    assert records.correct(wall=T0 + 200.0, mono=300.0) == 2  # the clock, now known
    assert records.readings(0)[0]["t"] == "2026-11-18T11:06:40Z"  # T0
    [excursion] = records.excursions(0, since=T0 - 86400)
    assert excursion["start"] == "2026-11-18T08:06:40Z"  # the last record before the cut
    assert excursion["end"] == "2026-11-18T11:07:40Z" and excursion["clock"] == "outage"
    rows = list(csv.DictReader(io.StringIO("".join(export_csv(tmp_path / RECORDS_FILE)))))
    assert [r["clock"] for r in rows] == ["corrected"]
    records.log(T0 + 500, [(0, 4.0, "chill", "ok")], unsure_mono=600.0)
    records.close()
    again = Records(tmp_path / RECORDS_FILE)  # another run: its monotonic clock is new
    assert again.correct(wall=T0 + 9000.0, mono=10.0) == 0  # the row stays "unsure"


def test_an_older_file_gains_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / RECORDS_FILE
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE readings (key INTEGER NOT NULL, t REAL NOT NULL, temperature_c REAL,"
        " mode TEXT NOT NULL, sensor TEXT NOT NULL);"
        "CREATE TABLE excursions (key INTEGER NOT NULL, start REAL NOT NULL, end REAL,"
        " peak_c REAL, mode TEXT NOT NULL);"
        "CREATE TABLE food_clock (key INTEGER PRIMARY KEY, out_s REAL NOT NULL,"
        " saved_at REAL NOT NULL, unsafe INTEGER NOT NULL);"
        f"INSERT INTO readings VALUES (0, {T0}, 3.0, 'chill', 'ok');"
        f"INSERT INTO food_clock VALUES (0, 60.0, {T0}, 0);"
    )
    db.commit()
    db.close()
    records = Records(path)
    assert records.food_clocks() == {0: (60.0, T0, False, None)}
    records.log(T0 + 300, [(0, 3.5, "chill", "ok")], unsure_mono=5.0)
    assert len(records.readings(0)) == 2


def test_latches_are_kept_and_each_reset_logged_with_who_and_when(tmp_path):
    records = Records(tmp_path / RECORDS_FILE)
    records.latched(3, "thermal_not_converging", "the heater ran 1200 s", T0, cut=False)
    records.latched(3, "temperature_over_limit", "91.0 C", T0 + 60, cut=True)
    records.close()
    records = Records(tmp_path / RECORDS_FILE)
    assert records.latches() == {
        3: [
            ("thermal_not_converging", "the heater ran 1200 s", T0, False),
            ("temperature_over_limit", "91.0 C", T0 + 60, True),
        ]
    }
    by = "ana (locker-agent thermal reset)"
    records.reset(3, T0 + 600, by, [("temperature_over_limit", "91.0 C")])
    assert records.latches() == {}
    [*_, reset] = records.latch_log(3)
    assert reset == {
        "key": 3, "t": "2026-11-18T11:16:40Z", "event": "reset",
        "alarm": "temperature_over_limit", "why": "91.0 C", "by": by,
    }  # fmt: skip
