"""DS18B20 on the kernel's 1-wire files: parsing real kernel text, reading files in a
temp directory, the SensorId config type, and the trust rules on a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from drivers.w1 import (
    POWER_ON_C,
    SensorFault,
    SensorId,
    SensorTrust,
    Verdict,
    parse_w1_slave,
    read_ds18b20,
)

SENSOR = "28-00000a1b2c3d"
# Real kernel output (w1_therm), 23.125 C and the power-up value.
GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
NEGATIVE = "ec ff 4b 46 7f ff 04 10 f4 : crc=f4 YES\nec ff 4b 46 7f ff 04 10 f4 t=-1250\n"
CRC_NO = "72 01 4b 46 7f ff 0e 10 00 : crc=00 NO\n72 01 4b 46 7f ff 0e 10 00 t=23125\n"
ALL_ZERO = "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"


def fault_of(text: str) -> SensorFault:
    with pytest.raises(SensorFault) as caught:
        parse_w1_slave(text)
    return caught.value


# -- parse_w1_slave -----------------------------------------------------------


def test_parse_real_kernel_samples():
    assert parse_w1_slave(GOOD) == 23.125
    assert parse_w1_slave(POWER_ON) == POWER_ON_C  # a value: trust judges it
    assert parse_w1_slave(NEGATIVE) == -1.25
    assert parse_w1_slave(GOOD.rstrip("\n")) == 23.125  # no final newline


def test_parse_no_is_a_crc_fault():
    fault = fault_of(CRC_NO)
    assert fault.reason == "crc"
    assert "NO" in str(fault)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        GOOD.splitlines()[0] + "\n",  # one line only
        GOOD + GOOD,  # four lines
        "hello\nworld\n",
        GOOD.replace("t=23125", "t="),
        GOOD.replace("t=23125", "t=23.125"),
        GOOD.replace(" t=23125", ""),
        GOOD.replace("crc=57 YES", "crc=57 MAYBE"),
        GOOD.replace("t=23125", "t=130000"),  # beyond the DS18B20's 125 C
        GOOD.replace("t=23125", "t=-60000"),  # below its -55 C
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n99 01 4b 46 7f ff 0e 10 57 t=23125\n",
        ALL_ZERO,  # a sensor lost in mid-read: CRC 00 is "good"
    ],
)
def test_parse_garbled(text):
    assert fault_of(text).reason == "garbled"


def test_sensor_fault_refuses_unknown_reasons():
    with pytest.raises(ValueError, match="one of"):
        SensorFault("on fire")
    assert SensorFault("crc").detail == ""
    assert str(SensorFault("unreadable", "EIO")) == "unreadable: EIO"


# -- read_ds18b20 --------------------------------------------------------------


def put(w1_dir, text, sensor=SENSOR):
    (w1_dir / sensor).mkdir(parents=True, exist_ok=True)
    (w1_dir / sensor / "w1_slave").write_text(text)


def test_read_file(tmp_path):
    put(tmp_path, GOOD)
    assert read_ds18b20(tmp_path, SENSOR) == 23.125
    put(tmp_path, NEGATIVE)
    assert read_ds18b20(tmp_path, SENSOR) == -1.25


def test_read_missing(tmp_path):
    with pytest.raises(SensorFault) as caught:
        read_ds18b20(tmp_path, SENSOR)  # no directory
    assert caught.value.reason == "missing"
    (tmp_path / SENSOR).mkdir()
    with pytest.raises(SensorFault) as caught:
        read_ds18b20(tmp_path, SENSOR)  # directory, no file
    assert caught.value.reason == "missing"
    with pytest.raises(SensorFault) as caught:
        read_ds18b20(tmp_path / "nowhere", SENSOR)  # no w1_dir at all
    assert caught.value.reason == "missing"


def test_read_unreadable(tmp_path):
    (tmp_path / SENSOR / "w1_slave").mkdir(parents=True)  # EISDIR: an OSError, not missing
    with pytest.raises(SensorFault) as caught:
        read_ds18b20(tmp_path, SENSOR)
    assert caught.value.reason == "unreadable"


@pytest.mark.parametrize("data", [b"\xff\xfe\n\x00\n", GOOD.encode() * 40, CRC_NO.encode()])
def test_read_bad_bytes(tmp_path, data):
    (tmp_path / SENSOR).mkdir()
    (tmp_path / SENSOR / "w1_slave").write_bytes(data)
    with pytest.raises(SensorFault) as caught:
        read_ds18b20(tmp_path, SENSOR)
    assert caught.value.reason == ("crc" if data == CRC_NO.encode() else "garbled")


def test_read_refuses_a_name_that_is_not_a_sensor(tmp_path):
    put(tmp_path, GOOD, sensor="28-00000a1b2c3d")
    with pytest.raises(ValueError, match="28-"):
        read_ds18b20(tmp_path / "x", "../28-00000a1b2c3d")


# -- SensorId -------------------------------------------------------------------

SENSOR_ID = TypeAdapter(SensorId)


def test_sensor_id_valid():
    assert SENSOR_ID.validate_python("28-00000a1b2c3d") == "28-00000a1b2c3d"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("28-00000A1B2C3D", "lowercase, as the kernel lists it: '28-00000a1b2c3d'"),
        ("10-00000a1b2c3d", "family 10 is not a DS18B20"),
        ("28-0000", "12 lowercase hex digits"),
        ("", "12 lowercase hex digits"),
        ("28-00000a1b2c3d/../x", "12 lowercase hex digits"),
    ],
)
def test_sensor_id_invalid_says_why(value, message):
    with pytest.raises(ValidationError) as caught:
        SENSOR_ID.validate_python(value)
    assert message in str(caught.value)


# -- SensorTrust ------------------------------------------------------------------


class Feed:
    """A SensorTrust fed on a fake clock: one read every `every_s` seconds."""

    def __init__(self, trust: SensorTrust | None = None, every_s: float = 2.0) -> None:
        self.trust = trust or SensorTrust()
        self.every_s = every_s
        self.now_s = 0.0

    def __call__(
        self, reading, *, running: bool = False, held: bool = False, dt_s: float | None = None
    ) -> Verdict:
        self.now_s += self.every_s if dt_s is None else dt_s
        return self.trust.judge(self.now_s, reading, unit_running=running, held=held)


def test_before_any_read_missing_then_first_read_trusted():
    feed = Feed()
    assert feed.trust.status == "missing"
    assert feed.trust.last is None
    assert feed(4.0) == Verdict("ok", 4.0, None)
    assert feed.trust.status == "ok"


def test_faults_missing_and_failed():
    feed = Feed()
    feed(4.0)
    assert feed(SensorFault("missing", "/x")) == Verdict("missing", None, "sensor missing")
    assert feed(SensorFault("crc")) == Verdict("failed", None, "crc error")
    assert feed(SensorFault("garbled", "x")).reason == "garbled reply"
    verdict = feed(SensorFault("unreadable", "EIO"))
    assert verdict.status == "failed"
    assert "unreadable" in verdict.reason
    assert "EIO" in verdict.reason


def test_power_on_value_first_read_is_failed():
    feed = Feed()
    assert feed(POWER_ON_C) == Verdict("failed", None, "power-on value 85.0 C")


def test_power_on_value_far_from_the_last_value_is_failed_and_not_a_reference():
    feed = Feed()
    feed(60.0)
    assert feed(85.0).reason == "power-on value 85.0 C"
    # 85 was not taken as the reference: 60.1 right after is no "jump".
    assert feed(60.1).reason == "recovering: 1 of 3 good reads"


def test_85_near_the_last_value_is_a_reading():
    feed = Feed()
    for value in (80.0, 82.0, 84.0):
        assert feed(value).status == "ok"
    assert feed(85.0) == Verdict("ok", 85.0, None)


def test_stuck_while_running_for_stuck_s():
    feed = Feed(SensorTrust(stuck_s=900.0), every_s=60.0)
    feed(-20.0, running=True)
    for _ in range(14):  # 840 s unchanged
        assert feed(-20.0, running=True).status == "ok"
    verdict = feed(-20.0, running=True)  # 900 s
    assert verdict == Verdict("failed", None, "stuck at -20.000 C for 900 s of its unit's work")


def test_unchanged_while_idle_is_not_stuck_and_only_running_time_counts():
    feed = Feed(SensorTrust(stuck_s=900.0), every_s=60.0)
    for _ in range(100):  # 100 min idle at one value: a quiet cabinet
        assert feed(4.0).status == "ok"
    for _ in range(10):  # then 600 s running, 600 s idle, 240 s running: 840 s running
        assert feed(4.0, running=True).status == "ok"
    for _ in range(10):
        assert feed(4.0).status == "ok"
    for _ in range(4):
        assert feed(4.0, running=True).status == "ok"
    assert feed(4.0, running=True).reason.startswith("stuck at 4.000 C for 900 s")


def test_stuck_stays_failed_after_the_unit_stops_until_the_value_changes():
    feed = Feed(SensorTrust(stuck_s=100.0, recover_reads=3), every_s=50.0)
    feed(4.0, running=True)
    feed(4.0, running=True)
    assert feed(4.0, running=True).reason.startswith("stuck")
    for _ in range(5):  # the controller turned the unit off: still the same raw value
        verdict = feed(4.0)
        assert verdict.status == "failed"
        assert verdict.reason.startswith("stuck")
    assert feed(4.0625).reason == "recovering: 1 of 3 good reads"
    assert feed(4.125).reason == "recovering: 2 of 3 good reads"
    assert feed(4.1875) == Verdict("ok", 4.1875, None)


def test_the_same_value_on_both_sides_of_lost_reads_counts_as_unchanged():
    """A stuck sensor on a lossy line (every other read lost) is still found stuck:
    the value on both sides of the gap is the same, so it was unchanged all along."""
    feed = Feed(SensorTrust(stuck_s=150.0, recover_reads=1, fail_after=2), every_s=30.0)
    feed(4.0, running=True)
    for _ in range(2):
        assert feed(SensorFault("crc"), running=True).status == "ok"  # held
        assert feed(4.0, running=True).status == "ok"
    assert feed(SensorFault("crc"), running=True).status == "ok"
    assert feed(4.0, running=True).reason.startswith("stuck at 4.000 C for 180 s")


def test_idle_in_a_held_mode_counts_a_sixth_toward_stuck():
    feed = Feed(SensorTrust(stuck_s=600.0), every_s=60.0)
    for _ in range(36):  # 36 min idle at one value in a held mode: 350 s of work
        assert feed(4.0, held=True).status == "ok"
    for _ in range(26):  # 26 min more: 610 s
        verdict = feed(4.0, held=True)
    assert verdict.status == "failed"


def test_a_lost_sensor_is_graced_by_time_and_reads_and_losses_are_counted():
    feed = Feed(SensorTrust(fail_after=2, grace_s=25.0), every_s=10.0)
    assert feed(SensorFault("crc")) == Verdict("missing", None, "no reading yet")
    assert feed(4.0).status == "ok"  # a first lost read is not a failure
    assert feed(SensorFault("crc")).temperature_c == 4.0  # 10 s without: held
    assert feed(SensorFault("crc")).temperature_c == 4.0  # 20 s, two reads: held
    assert feed(SensorFault("crc")).status == "failed"  # 30 s and three reads: failed
    assert 0.1 < feed.trust.loss < 0.3


def test_one_slow_lost_read_is_not_a_failure():
    """16 sensors read one by one take 12 s a round: one lost read is 12 s without a
    reading, past a 10 s grace, and still only one read."""
    feed = Feed(SensorTrust(fail_after=2, grace_s=10.0), every_s=12.0)
    feed(4.0)
    assert feed(SensorFault("crc")).status == "ok"
    assert feed(4.0).status == "ok"
    feed(SensorFault("crc"))
    assert feed(SensorFault("crc")).status == "failed"


def test_a_glitch_beyond_the_physics_is_held_and_a_new_level_taken_when_it_holds():
    feed = Feed(SensorTrust(grace_s=30.0, fail_after=3, drift_c_per_s=20 / 3600), every_s=2.0)
    feed(4.0)
    for _ in range(10):  # idle and shut, every other read 3 C low (Tasmota #9640)
        assert feed(1.0).temperature_c in (4.0, 4.0625)  # held: never a failure
        assert feed(4.0625) == Verdict("ok", 4.0625, None)
    assert feed.trust.glitches > 0.2
    assert feed(3.0).temperature_c == 4.0625  # 1 C in 2 s, idle and shut: a glitch
    assert feed(3.0, running=True).temperature_c == 3.0  # a cooler running: physics
    feed(4.0, running=True)
    feed(4.0)
    for _ in range(2):  # a step that holds (a sensor moved): taken after three reads
        assert feed(9.0).temperature_c == 4.0
    assert feed(9.0) == Verdict("ok", 9.0, None)


def test_jump_faster_than_the_rate_is_failed():
    feed = Feed(SensorTrust(max_rate_c_per_s=1.0))
    feed(22.0)
    assert feed(53.0) == Verdict("failed", None, "jumped 31.0 C in 2 s")
    assert feed(22.0).reason == "jumped 31.0 C in 2 s"  # the glitch gone: a jump back


def test_change_within_the_rate_is_fine():
    feed = Feed(SensorTrust(max_rate_c_per_s=1.0), every_s=10.0)
    feed(22.0)
    assert feed(31.0) == Verdict("ok", 31.0, None)  # 0.9 C/s
    assert feed(20.0, dt_s=1.0).status == "failed"


def test_a_clock_that_does_not_move():
    feed = Feed()
    feed(22.0)
    assert feed(22.0, dt_s=0.0).status == "ok"
    assert feed(22.0625, dt_s=0.0).status == "ok"  # a flicker of one step
    assert feed(30.0, dt_s=0.0) == Verdict("failed", None, "jumped 7.9 C in 0 s")
    assert feed(30.0, dt_s=-5.0).reason == "recovering: 1 of 3 good reads"  # clock went back


def test_recovery_needs_consecutive_good_reads():
    feed = Feed(SensorTrust(recover_reads=3))
    feed(4.0)
    feed(SensorFault("crc"))
    assert feed(4.0) == Verdict("failed", None, "recovering: 1 of 3 good reads")
    assert feed(4.0) == Verdict("failed", None, "recovering: 2 of 3 good reads")
    assert feed(SensorFault("crc")).reason == "crc error"  # the count starts again
    assert feed(4.0).reason == "recovering: 1 of 3 good reads"
    assert feed(4.0).reason == "recovering: 2 of 3 good reads"
    assert feed(4.0) == Verdict("ok", 4.0, None)


def test_recovery_from_missing_stays_missing():
    feed = Feed(SensorTrust(recover_reads=2))
    feed(4.0)
    feed(SensorFault("missing"))
    assert feed(4.0) == Verdict("missing", None, "recovering: 1 of 2 good reads")
    assert feed(4.0).status == "ok"


def test_recovery_reads_must_be_plausible_together():
    feed = Feed(SensorTrust(recover_reads=3))
    feed(4.0)
    feed(SensorFault("crc"))
    assert feed(4.0).reason == "recovering: 1 of 3 good reads"
    assert feed(40.0).reason.startswith("jumped")
    assert feed(40.0).reason == "recovering: 1 of 3 good reads"


def test_first_read_faulty_then_recovery_required():
    feed = Feed(SensorTrust(recover_reads=3))
    assert feed(SensorFault("missing")).status == "missing"
    assert feed(4.0).status == "missing"
    assert feed(4.0).status == "missing"
    assert feed(4.0).status == "ok"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 126.0, -56.0])
def test_impossible_values_are_failed(value):
    feed = Feed()
    verdict = feed(value)
    assert verdict.status == "failed"
    assert "not a DS18B20 reading" in verdict.reason


def test_settings_bounded():
    for kwargs in ({"recover_reads": 0}, {"stuck_s": 0.0}, {"max_rate_c_per_s": -1.0}):
        with pytest.raises(ValueError):
            SensorTrust(**kwargs)


faults = st.sampled_from(["missing", "crc", "garbled", "unreadable"]).map(SensorFault)
readings = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-60, max_value=130),
    st.sampled_from([POWER_ON_C, 4.0, 4.0625, -18.0]),
    faults,
)
steps = st.tuples(st.floats(min_value=-10, max_value=2000), readings, st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(steps, max_size=40),
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=1.0, max_value=5000.0),
)
def test_never_a_temperature_while_not_ok(sequence, recover_reads, stuck_s):
    trust = SensorTrust(recover_reads=recover_reads, stuck_s=stuck_s)
    now_s = 0.0
    bad_since_ok = False
    good_run = 0
    for dt_s, reading, running in sequence:
        now_s += dt_s  # sometimes backwards or standing still
        verdict = trust.judge(now_s, reading, unit_running=running)
        assert verdict.status == trust.status
        assert (verdict.temperature_c is None) == (verdict.status != "ok")
        assert (verdict.reason is None) == (verdict.status == "ok")
        if isinstance(reading, SensorFault):
            assert verdict.status == ("missing" if reading.reason == "missing" else "failed")
        if verdict.status == "ok":
            assert verdict.temperature_c == reading
            assert math.isfinite(verdict.temperature_c)
            # recovery: at least recover_reads good reads in a row after a bad one
            assert not bad_since_ok or good_run + 1 >= recover_reads
            bad_since_ok, good_run = False, 0
        elif verdict.reason.startswith("recovering"):
            good_run += 1
        else:
            bad_since_ok, good_run = True, 0
