"""The HACCP day sheet (``locker-agent thermal report``), rendered from a fake day of
records written by the agent's own ``Records`` and ``StateStore``: its excursions with
peak and duration, its corrective actions with who and when, its clock evidence, the
day's bounds in the zone it names, and the command's exits."""

import html
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from agent.storage.store import STATE_FILE, StateStore
from agent.thermal.records import RECORDS_FILE, Records

DAY = "2026-07-14"  # summer: London is UTC+01:00


def at(hhmm: str, day: str = DAY) -> float:
    """Local London time on ``day`` as UNIX seconds (UTC+1 in July)."""
    return datetime.fromisoformat(f"{day}T{hhmm}:00+01:00").timestamp()


def _fake_day(state: Path) -> None:
    records = Records(state / RECORDS_FILE)
    # The day before, late: not on this sheet.
    records.log(at("23:55", "2026-07-13"), [(4, 99.0, "chill", "ok")])
    t = at("00:00")
    while t < at("00:00", "2026-07-15"):
        local = (t - at("00:00")) / 3600.0  # hours into the day
        chill = 11.2 if 10.2 <= local < 10.6 else 9.0 if 10.0 < local < 10.7 else 3.0
        chill_c: float | None = None if 14.0 <= local < 14.25 else chill  # a lost sensor
        heat_mode = "ambient" if local < 6 else "heat"
        clock = at("00:20") if local < 0.34 else None  # booted without the network time
        records.log(t, [(4, chill_c, "chill", "ok" if chill_c is not None else "missing")], clock)
        records.log(t, [(0, 22.0 if local < 6 else 65.0, heat_mode, "ok")])
        t += 300
    records.excursion_started(4, at("10:05"), 9.0, "chill")
    records.excursion_peak(4, 11.2, hot=False)
    records.excursion_ended(4, at("10:41"))
    records.excursion_started(4, at("23:50"), 8.6, "chill")  # still open at the last record
    records.latched(4, "thermal_not_converging", "cooling 20 min without a fall", at("10:30"), True)
    records.reset(4, at("11:02"), "Ana (locker-agent thermal reset): compressor fan freed",
                  [("thermal_not_converging", "cooling 20 min without a fall")])  # fmt: skip
    records.close()
    store = StateStore(state / STATE_FILE)
    disable = '{"command":"disable","rearload":false,"delay":null,"size":null,'
    disable += '"thermal_mode":null,"acted_by":17,"order_id":null,"reason":"food moved out"}'
    store.save_command("cloud:c-81", f"4:{disable}", at("10:20"), "ok", {})
    enable = disable.replace('"disable"', '"enable"').replace('"food moved out"', "null")
    enable = enable.replace('"acted_by":17', '"acted_by":null')
    store.save_command("local:k-2", f"4:{enable}", at("11:10"), "ok", {})
    store.save_command(
        "cloud:c-82", f"4:{disable.replace('disable', 'open')}", at("12:00"), "ok", {}
    )
    store.save_command("cloud:c-83", f"5:{disable}", at("12:00"), "ok", {})  # another cabinet
    heat = disable.replace('"disable"', '"set_thermal_mode"').replace(
        '"thermal_mode":null', '"thermal_mode":"heat"'
    )
    store.save_command(
        "cloud:c-84", f"0:{heat.replace('food moved out', 'lunch service')}", at("05:59"), "ok", {}
    )
    store.save_command(
        "cloud:c-85", f"0:{heat}", at("13:00"), "failed", {}
    )  # refused: kept as such
    store.close()


@pytest.fixture
def locker(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _fake_day(state)
    config = tmp_path / "agent.toml"
    config.write_text(
        '[locker]\nname = "Canteen B"\n'
        '[cloud]\nurl = "https://c.example.com"\napi_key = "k"\n[api]\ntoken = "t"\n'
        f'[storage]\ndir = "{state}"\n[thermal]\nfood_code = "uk"\nlog_every_s = 300\n'
        '[[buses]]\nname = "gpio"\ndriver = "gpio"\npin_factory = "mock"\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "gpio", switch = 4, lock = 5 }\n'
        'thermal = { sensor = "28-00000a1b2c3d", bus = "gpio", heater = 17 }\n'
        '[[cabinets]]\nkey = 4\nfront = { bus = "gpio", switch = 6, lock = 7 }\n'
        'thermal = { sensor = "28-00000a1b2c3e", bus = "gpio", cooler = 27 }\n'
        '[[cabinets]]\nkey = 5\nfront = { bus = "gpio", switch = 8, lock = 9 }\n'
    )
    return config


def report(config, *args):
    agent = [sys.executable, "-m", "agent", "thermal", "report", "--config", str(config)]
    return subprocess.run([*agent, *args], capture_output=True, text=True)


def sheets(text):
    """The sheet's pages by cabinet key, their tags stripped to plain text."""
    pages = re.findall(r"<section class='sheet' data-key='(\d+)'>(.*?)</section>", text, re.S)
    return {int(k): html.unescape(re.sub(r"<[^>]+>", " ", body)) for k, body in pages}


def rows(text, cls):
    """The rows of the page's table of class ``cls``, as lists of cell texts."""
    table = re.search(rf"<table class='{cls}'>(.*?)</table>", text, re.S)
    assert table, cls
    found = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S) for r in found]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in row] for row in cells][1:]


def test_a_day_sheet_has_each_thermal_cabinet_its_excursions_and_actions(locker, tmp_path):
    out = tmp_path / "haccp.html"
    done = report(locker, "--day", DAY, "--tz", "Europe/London", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 cabinet page(s)" in done.stderr
    text = out.read_text()
    assert "@page" in text and "break-after: page" in text  # printable, a page each
    pages = sheets(text)
    assert sorted(pages) == [0, 4]  # cabinet 5 has no thermal unit
    page4 = text.split("data-key='4'>")[1].split("</section>")[0]
    plain = pages[4]
    assert "Canteen B, cabinet 4" in plain
    assert "Europe/London (UTC+01:00)" in plain  # one zone, named, on every page
    assert "chilled: at or below 8 C" in plain and "chilled 1 to 4 °C" in plain
    assert "288 of 288 due" in plain and "3 not trusted" in plain  # 14:00-14:15 lost

    excursions = rows(page4, "excursions")
    assert excursions[0][:4] == ["10:05:00", "10:41:00", "36 min 00 s", "11.2 °C (highest)"]
    assert excursions[1][:3] == ["23:50:00", "not ended by the last record", "still open"]
    assert "2 time(s)" in plain

    actions = rows(page4, "actions")
    assert actions == [
        ["10:20:00", "disabled", "the cloud, user 17", "food moved out", "done"],
        ["10:30:00", "thermal_not_converging latched: outputs held off", "the agent (automatic)",
         "cooling 20 min without a fall", "done"],
        ["11:02:00", "thermal_not_converging reset by a technician",
         "Ana (locker-agent thermal reset): compressor fan freed",
         "cooling 20 min without a fall", "done"],
        ["11:10:00", "enabled", "a technician (local API)", "-", "done"],
    ]  # fmt: skip
    assert "99.0" not in plain  # the day before is not this day
    hours = rows(page4, "hours")
    ten = next(h for h in hours if h[0] == "10:00")
    assert ten[3:5] == ["3.0 °C", "11.2 °C"] and ten[6] == "OUT OF LINE"
    assert "<tr class='out'><td>10:00</td>" in page4  # marked beyond colour
    assert next(h for h in hours if h[0] == "09:00")[6] == "within line"
    assert "5 reading(s) from 00:00:00 to 00:20:00: not known right when written" in plain

    hot = pages[0]
    assert "no line (ambient)" in hot  # before 06:00 it held nothing
    assert "mode seen changed: ambient to heat" in hot and "06:00:00" in hot
    hot_html = text.split("data-key='0'>")[1].split("</section>")[0]
    assert rows(hot_html, "actions") == [
        ["05:59:00", "set to heat", "the cloud, user 17", "lunch service", "done"],
        ["06:00:00", "mode seen changed: ambient to heat", "-", "first reading in the new mode",
         "seen"],
        ["13:00:00", "set to heat", "the cloud, user 17", "food moved out", "refused"],
    ]  # fmt: skip
    assert "hot holding: at or above 63 C" in hot
    assert "None at the readings kept" in hot
    assert "written by a wall clock known synchronised" in hot


def test_the_sheet_to_stdout_for_one_cabinet_and_the_errors(locker, capsys):
    from agent.cli import main

    def run(*args):
        code = main(["thermal", "report", "--config", str(locker), *args])
        return code, *capsys.readouterr()

    code, out, _ = run("--day", DAY, "--tz", "UTC", "--key", "0")
    assert code == 0
    assert sorted(sheets(out)) == [0] and "UTC (UTC+00:00)" in out
    code, _, err = run("--day", "14/07/2026")
    assert code == 2 and "YYYY-MM-DD" in err
    code, _, err = run("--day", DAY, "--tz", "Mars/Olympus")
    assert code == 2 and "Mars/Olympus" in err
    # Review finding: a path or a file that is not a zone raised ValueError from
    # ZoneInfo, and the message blamed --day.
    for zone in ("/etc/passwd", "../etc/passwd", "zone.tab"):
        code, out, err = run("--day", DAY, "--tz", zone)
        assert code == 2 and out == "", zone
        assert "--tz" in err and repr(zone) in err and "--day" not in err, zone
    code, _, err = run("--day", "14/07/2026", "--tz", "/etc/passwd")  # --day first
    assert code == 2 and "--day" in err and "--tz" not in err
    code, _, err = run("--day", DAY, "--key", "5")
    assert code == 2 and "no thermal unit" in err
    # Finding: a day with no records was certified "the food stayed within its line".
    code, out, err = run("--day", "2026-07-01", "--tz", "UTC")
    assert code == 1 and "no records for 2026-07-01" in err
    assert "NO RECORDS" in out and "stayed within its line" not in out
    assert "known synchronised" not in out
    (Path(locker).parent / "state" / RECORDS_FILE).unlink()
    code, out, err = run("--day", DAY)
    assert code == 1 and "no temperature records" in err and out == ""


def test_text_from_the_records_is_escaped(tmp_path):
    from datetime import date
    from zoneinfo import ZoneInfo

    from agent.thermal.bands import FOOD_CODES
    from agent.thermal.dayrecord import Action, CabinetDay
    from agent.thermal.report import render

    cab = CabinetDay(1, at("00:00"), at("00:00", "2026-07-15"))
    cab.actions.append(Action(at("09:00"), "disabled", "<script>x</script>", "a & b"))
    text = render([cab], day=date(2026, 7, 14), tz=ZoneInfo("Europe/London"),
                  locker="L<1>", food_code="uk", lines=FOOD_CODES["uk"].lines,
                  bands={}, log_every_s=300, time_limit_s=7200, made_at=at("12:00"))  # fmt: skip
    assert "<script>" not in text and "&lt;script&gt;" in text and "a &amp; b" in text
    assert "No reading was kept this day." in text


def test_printed_it_is_one_page_per_cabinet(locker, tmp_path):
    """Printed by a real Chromium to A4: one page a cabinet (skipped without a browser)."""
    import os
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium to print with")
    out = tmp_path / "haccp.html"
    assert report(locker, "--day", DAY, "--tz", "Europe/London", "--out", str(out)).returncode == 0
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(out.as_uri())
        pdf = page.pdf(format="A4")
        browser.close()
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 2


def test_the_default_zone_keeps_its_rules(tmp_path, monkeypatch):
    """A summer day asked in winter gets the summer offset: the machine's zone by name,
    not today's fixed offset."""
    from agent.thermal.report import local_zone, zone_name

    monkeypatch.delenv("TZ", raising=False)
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/London")
    zone = local_zone(link)
    assert zone_name(zone, datetime(2026, 7, 14).date()) == "Europe/London (UTC+01:00)"
    assert zone_name(zone, datetime(2026, 12, 14).date()) == "Europe/London (UTC+00:00)"
    monkeypatch.setenv("TZ", "America/New_York")
    assert str(local_zone(link)) == "America/New_York"  # $TZ first, as the C library
    monkeypatch.setenv("TZ", "")
    assert local_zone(tmp_path / "nowhere") is not None  # a fixed offset at worst


def test_an_hour_without_readings_is_shown_as_a_gap():
    """Finding: a six-hour outage vanished from the hour-by-hour table."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from agent.thermal.bands import FOOD_CODES
    from agent.thermal.dayrecord import CabinetDay
    from agent.thermal.report import render

    cab = CabinetDay(1, at("00:00"), at("00:00", "2026-07-15"))
    cab.readings = [
        (at("00:10"), 3.0, "chill", "ok", None),
        (at("07:10"), 3.1, "chill", "ok", None),
    ]
    text = render([cab], day=date(2026, 7, 14), tz=ZoneInfo("Europe/London"),
                  locker="L", food_code="uk", lines=FOOD_CODES["uk"].lines,
                  bands={"chill": (1.0, 4.0)}, log_every_s=300, time_limit_s=7200,
                  made_at=at("12:00"))  # fmt: skip
    assert text.count("NO READING KEPT") == 6  # 01:00 to 06:00
    assert "No reading after 07:10:00" in text


def test_a_day_still_going_is_told_up_to_when_the_sheet_is_made():
    """Finding: made at 20:23 on the day, an excursion open since 20:22 was counted to
    midnight (3 h 37 min, past the UK's 2 h) and a whole day's readings were due."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from agent.thermal.bands import FOOD_CODES
    from agent.thermal.dayrecord import CabinetDay
    from agent.thermal.report import render

    cab = CabinetDay(1, at("00:00"), at("00:00", "2026-07-15"))
    cab.readings = [
        (at("20:00"), 3.0, "chill", "ok", None, None),
        (at("20:20"), 9.1, "chill", "ok", None, None),
    ]
    cab.excursions = [(at("20:22"), None, 9.1, "chill", None)]  # still open
    text = render([cab], day=date(2026, 7, 14), tz=ZoneInfo("Europe/London"),
                  locker="L", food_code="uk", lines=FOOD_CODES["uk"].lines,
                  bands={"chill": (1.0, 4.0)}, log_every_s=300, time_limit_s=7200,
                  made_at=at("20:32"))  # fmt: skip
    page = sheets(text)[1]
    assert "1 time(s), 10 min 00 s in all" in page
    assert "2 of 246 due" in page  # 00:00 to 20:32 at one each 300 s
    assert "00:00 to 20:32 so far" in page
    # Made the next day, the same records are told to midnight.
    text = render([cab], day=date(2026, 7, 14), tz=ZoneInfo("Europe/London"),
                  locker="L", food_code="uk", lines=FOOD_CODES["uk"].lines,
                  bands={"chill": (1.0, 4.0)}, log_every_s=300, time_limit_s=7200,
                  made_at=at("08:00", "2026-07-15"))  # fmt: skip
    page = sheets(text)[1]
    assert "1 time(s), 3 h 38 min in all" in page and "2 of 288 due" in page
    assert "00:00 to 24:00" in page
