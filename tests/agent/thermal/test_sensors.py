"""What doctor says of the thermal sensors, on the kernel's files as the simulator writes them."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.thermal.sensors import sensor_lines
from simulator.thermal import SensorFile

A, B, C = "28-0000000000a1", "28-0000000000b2", "28-0000000000c3"


def config(tmp_path: Path, sensors: list[str]):
    return parse_config(
        {
            "cloud": {"url": "https://c.example.com", "api_key": "k"},
            "api": {"token": "t"},
            "thermal": {"w1_dir": str(tmp_path / "w1")},
            "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
            "cabinets": [
                {
                    "key": i,
                    "front": {"bus": "gpio", "switch": 4 + i, "lock": 10 + i},
                    "thermal": {"sensor": sensor, "bus": "gpio", "heater": 20 + i},
                }
                for i, sensor in enumerate(sensors)
            ],
        },
        tmp_path,
    )


def test_each_sensor_is_found_or_named_with_what_to_do(tmp_path):
    assert list(sensor_lines(config(tmp_path, [A]))) == [
        ("FAIL", f"no {tmp_path / 'w1'}: the 1-wire bus is off; add dtoverlay=w1-gpio to"
                 " /boot/firmware/config.txt and reboot"),
    ]  # fmt: skip
    (tmp_path / "w1").mkdir()
    [(level, says)] = list(sensor_lines(config(tmp_path, [A, B])))
    assert level == "FAIL" and "lists no DS18B20" in says  # one line, not one per sensor
    SensorFile(tmp_path / "w1", A).write(4.25)
    bad = SensorFile(tmp_path / "w1", B)
    bad.fault = "crc"
    bad.write(4.0)
    lines = list(sensor_lines(config(tmp_path, [A, B, C])))
    assert ("ok", "1 of 3 sensors answer (4.2 C to 4.2 C)") in lines
    assert any(level == "FAIL" and "cabinet 1" in says and "CRC" in says for level, says in lines)
    [missing] = [says for level, says in lines if "cabinet 2" in says]
    assert A in missing and "not listed by the kernel" in missing


def test_no_thermal_unit_says_nothing(tmp_path):
    data = config(tmp_path, [A]).model_dump()
    assert data["cabinets"][0]["thermal"] is not None  # the helper above has one
    plain = parse_config(
        {
            "cloud": {"url": "https://c.example.com", "api_key": "k"},
            "api": {"token": "t"},
            "buses": [{"name": "gpio", "driver": "gpio", "pin_factory": "mock"}],
            "cabinets": [{"key": 0, "front": {"bus": "gpio", "switch": 4, "lock": 5}}],
        },
        tmp_path,
    )
    assert list(sensor_lines(plain)) == []


def test_doctor_says_which_of_the_two_the_bulk_conversion_lacks(tmp_path):
    """The kernel's therm_bulk_read is root's 0644 in a /sys the unit makes read-only:
    the udev rule gives it to the group, the unit's ReadWritePaths= lets it be written."""
    SensorFile(tmp_path / "w1", A).write(4.0)
    master = tmp_path / "w1" / "w1_bus_master1"
    master.mkdir()
    (master / "therm_bulk_read").write_text("0\n")
    cfg = config(tmp_path, [A])

    def lines(cannot, paths):
        found = sensor_lines(cfg, lambda path, want: cannot, lambda: paths)
        return [(level, says) for level, says in found if "bulk" in says]

    [(level, says)] = lines("locker-agent", [])
    assert level == "warn" and "udev rule" in says and f"ReadWritePaths=-{master}" in says
    [(level, says)] = lines(None, [f"-{master}"])
    assert (level, says) == ("ok", "bulk conversion on w1_bus_master1: the service may start it")
    [(level, says)] = lines("locker-agent", [f"-{master}"])
    assert "udev rule" in says and "ReadWritePaths" not in says
    [(level, _)] = lines(None, None)
    assert level == "skip"  # systemctl cannot tell
    (master / "therm_bulk_read").unlink()
    [(level, says)] = lines(None, [])
    assert level == "warn" and "no therm_bulk_read" in says
