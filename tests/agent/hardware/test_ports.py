"""A port's open error in a technician's words (agent/hardware/ports.py), from the
errors pyserial really raises."""

import errno

import pytest
import serial

from agent.hardware.ports import HELD, NO_SUCH_FILE, PERMISSION, not_open, reason


def test_the_errors_pyserial_raises_opening_a_device(tmp_path):
    with pytest.raises(serial.SerialException) as missing:
        serial.Serial(str(tmp_path / "ttyUSB9"))
    assert reason(missing.value) == NO_SUCH_FILE
    with pytest.raises(serial.SerialException) as gateway:
        serial.serial_for_url("socket://127.0.0.1:9", timeout=1)  # errno only in its text
    assert reason(gateway.value) == "the gateway refuses the connection"


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.EACCES, PERMISSION),
        (errno.EAGAIN, HELD),
        (errno.EBUSY, HELD),
        (errno.ENOENT, NO_SUCH_FILE),
    ],
)
def test_by_errno(code, said):
    assert reason(serial.SerialException(code, "could not open port")) == said


def test_the_exclusive_lock_and_the_unknown():
    assert reason(serial.SerialException("Could not exclusively lock port /dev/x: ...")) == HELD
    assert reason(None) == "not open yet"
    assert reason(ValueError("odd")) == "odd"


def test_one_line_with_the_path_the_reason_and_what_to_do():
    line = not_open("rs485", "/dev/ttyUSB0", serial.SerialException(errno.EACCES, "x"))
    assert line == (
        "bus rs485: port /dev/ttyUSB0 not open: permission denied: the service user must be"
        " in the group dialout (sudo usermod -aG dialout locker-agent)"
    )
