"""``doctor`` checks each pickup-code reader: there, openable by the service user, free."""

import os
import tty

from agent.config import load_config
from agent.field.doctor import doctor
from agent.field.readers import reader_lines
from tests.conftest import write_small_config


def config_with(tmp_path, readers: str):
    path = write_small_config(tmp_path)
    path.write_text(path.read_text() + "\n" + readers)
    return load_config(path)


def lines(config, cannot=lambda path, mode: None):
    return list(reader_lines(config, cannot))


def test_a_serial_reader_that_opens_is_ok(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        config = config_with(
            tmp_path,
            f'[[readers]]\nname = "front"\ndriver = "serial"\nport = "{os.ttyname(slave)}"\n',
        )
        [(level, what, says)] = lines(config)
        assert (level, what) == ("ok", "reader front") and "opens at 9600 baud" in says
    finally:
        os.close(master)
        os.close(slave)


def test_a_missing_serial_reader_fails_and_says_where_to_look(tmp_path):
    config = config_with(
        tmp_path,
        '[[readers]]\nname = "front"\ndriver = "serial"\nport = "/dev/serial/by-id/usb-none"\n',
    )
    [(level, _, says)] = lines(config)
    assert level == "FAIL" and "readers[0].port" in says and "/dev/serial/by-id/" in says


def test_a_reader_the_service_may_not_open_names_the_group(tmp_path):
    device = tmp_path / "event7"
    device.write_bytes(b"")
    config = config_with(
        tmp_path, f'[[readers]]\nname = "usb"\ndriver = "evdev"\ndevice = "{device}"\n'
    )
    found = lines(config, cannot=lambda path, mode: "locker-agent")
    assert (
        "FAIL",
        "reader usb",
        f"locker-agent may not read {device}: sudo usermod -aG input locker-agent",
    ) in found
    # Review finding: an "ok ... readable" line followed the FAIL (doctor, as root,
    # could read it): nothing below a refusal says the reader is fine.
    assert not [line for line in found if line[0] == "ok"], found


def test_a_missing_keyboard_reader_fails(tmp_path):
    config = config_with(
        tmp_path,
        '[[readers]]\nname = "usb"\ndriver = "evdev"\ndevice = "/dev/input/by-id/usb-x-kbd"\n',
    )
    [(level, _, says)] = lines(config)
    assert level == "FAIL" and "/dev/input/by-id/" in says


def test_doctor_prints_the_reader_lines(tmp_path, monkeypatch):
    path = write_small_config(tmp_path)
    path.write_text(
        path.read_text() + '\n[[readers]]\nname = "front"\ndriver = "serial"\nport = "/nope"\n'
    )
    import agent.field.doctor as module

    monkeypatch.setattr(module, "check_cloud", lambda config: module.skip("cloud", "not asked"))
    found = [str(line) for line in doctor(path)]
    assert any(
        line.startswith("FAIL reader front: readers[0].port /nope does not exist") for line in found
    )


def test_a_serial_reader_the_service_may_not_open_is_never_also_ok(tmp_path):
    """Review finding: doctor (root) opened the port itself and printed "opens at 9600
    baud" under the FAIL saying the service may not open it."""
    import os

    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        config = config_with(
            tmp_path, f'[[readers]]\nname = "front"\ndriver = "serial"\nport = "{port}"\n'
        )
        found = lines(config, cannot=lambda path, mode: "locker-agent")
        assert [level for level, _, _ in found] == ["FAIL"], found
        assert "may not open" in found[0][2]
        assert [level for level, _, _ in lines(config)] == ["ok"]  # and readable, it is ok
    finally:
        os.close(master)
        os.close(slave)
