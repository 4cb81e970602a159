"""Placeholders left from an example or from install.sh: a problem everywhere, each named once.

check-config exits 78 naming each key (and the file of a secret kept in one), run refuses
to start, doctor says FAIL: all three from ``agent/field/verdict.py``.
"""

import tomllib
from pathlib import Path

from agent import cli
from agent.config import parse_config
from agent.config.placeholders import placeholders
from tests.conftest import PLACEHOLDER_KEY, run_agent

GOOD = """
[cloud]
url = "https://cloud.lockers.test"
api_key_file = "api.key"

[api]
token_file = "api.token"

[storage]
dir = "STORAGE"

[[buses]]
name = "rs485"
port = "/dev/ttyUSB0"
boards = [0]

[[cabinets]]
key = 0
front = { bus = "rs485", board = 0, channel = 1 }
"""


def setup(folder: Path, *, key: str = "k-9f3Qx1", text: str = GOOD) -> Path:
    (folder / "api.key").write_text(key + "\n")
    (folder / "api.token").write_text("t-7Hq2Lw\n")
    path = folder / "agent.toml"
    path.write_text(text.replace("STORAGE", str(folder / "var")))
    for name in ("agent.toml", "api.key", "api.token"):
        (folder / name).chmod(0o640)
    return path


def test_a_good_config_has_none(tmp_path):
    path = setup(tmp_path)
    assert placeholders(parse_config(tomllib.loads(path.read_text()), tmp_path)) == []


def test_each_is_named_with_its_key_and_file(tmp_path):
    text = GOOD.replace("cloud.lockers.test", "REPLACE-WITH-THE-CLOUD-HOST").replace(
        "/dev/ttyUSB0", "/dev/serial/by-id/REPLACE-WITH-THE-RS485-ADAPTER"
    )
    path = setup(tmp_path, key=PLACEHOLDER_KEY, text=text)
    found = placeholders(parse_config(tomllib.loads(path.read_text()), tmp_path))
    assert [line.split(":")[0] for line in found] == [
        "cloud.url",
        "cloud.api_key_file",
        "buses[0].port",
    ]
    assert f"{tmp_path / 'api.key'} still holds the placeholder install.sh wrote" in found[1]
    assert "ls -l /dev/serial/by-id/" in found[2]
    assert all(PLACEHOLDER_KEY not in line for line in found)  # never the secret itself


def test_an_inline_placeholder_secret_points_at_the_file(tmp_path):
    text = GOOD.replace('api_key_file = "api.key"', 'api_key = "REPLACE-WITH-KEY"')
    path = setup(tmp_path, text=text)
    [line] = placeholders(parse_config(tomllib.loads(path.read_text()), tmp_path))
    assert line.startswith("cloud.api_key: still the example's placeholder")
    assert 'api_key_file = "api.key"' in line


def test_check_config_exits_78_one_line_each(tmp_path):
    path = setup(tmp_path, key=PLACEHOLDER_KEY)
    done = run_agent("check-config", path)
    assert done.returncode == 78
    assert done.stderr.splitlines() == [
        f"{path}: cloud.api_key_file: {tmp_path / 'api.key'} still holds the placeholder"
        " install.sh wrote: put the real value in it, alone (the locker's api-key, from the"
        " cloud's locker page)"
    ]
    assert done.stdout == ""


def test_run_refuses_what_check_config_refuses_before_anything_opens(tmp_path, capsys):
    path = setup(tmp_path, key=PLACEHOLDER_KEY)
    assert cli.main(["run", "--config", str(path)]) == 78
    assert "cloud.api_key_file" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()  # no store was opened


def test_check_config_doctor_and_run_agree_line_for_line(tmp_path, capsys):
    """The same problems, from one function: check-config's lines, run's, and doctor's
    FAIL lines under config."""
    from agent.field.doctor import doctor

    text = GOOD.replace("cloud.lockers.test", "REPLACE-WITH-THE-CLOUD-HOST").replace(
        "/dev/ttyUSB0", "/dev/serial/by-id/usb-REPLACE-if00"
    )
    path = setup(tmp_path, key=PLACEHOLDER_KEY, text=text)
    assert cli.main(["check-config", str(path)]) == 78
    checked = capsys.readouterr().err.splitlines()
    assert cli.main(["run", "--config", str(path)]) == 78
    refused = capsys.readouterr().err.splitlines()
    headline, *lines = doctor(path)  # "PATH is not valid here: 3 problems, each below: ..."
    assert headline.level == "FAIL" and headline.says.startswith(f"{path} is not valid here: 3")
    failed = []
    for line in lines:
        if line.what != "config":
            break
        if line.level == "FAIL":
            failed.append(f"{path}: {line.says}")
    assert len(checked) == 3
    assert checked == refused == failed


def test_a_file_that_does_not_load_names_its_placeholders_too(tmp_path, capsys):
    """Finding (a new user's trial): an example copied without its secret files named
    only the files; its placeholders came in a second round, once those existed. Now
    one round, an entry wrong for another reason (its baud) with them."""
    text = GOOD.replace("https://cloud.lockers.test", "https://REPLACE-WITH-THE-CLOUD-HOST")
    text = text.replace('"/dev/ttyUSB0"', '"/dev/serial/by-id/usb-REPLACE-if00"')
    text = text.replace("boards = [0]", "boards = [0]\nbaud = 7")  # wrong, beside the port
    path = tmp_path / "agent.toml"
    path.write_text(text.replace("STORAGE", str(tmp_path / "state")))
    assert cli.main(["check-config", str(path)]) == 78
    keys = [line.split(": ")[1] for line in capsys.readouterr().err.splitlines()]
    assert sorted(keys) == sorted(
        ["cloud.api_key_file", "api.token_file", "buses[0].baud", "cloud.url", "buses[0].port"]
    )


def test_ordinary_words_in_a_name_are_not_placeholders(tmp_path):
    """Review finding: the mark was matched ignoring case anywhere, so a locker named
    "Your-Shop Replacement Parts" refused to start (run 78, reload refused)."""
    text = '[locker]\nname = "Your-Shop Replacement Parts, replace-with-care"\n' + GOOD
    path = setup(tmp_path, text=text)
    assert placeholders(parse_config(tomllib.loads(path.read_text()), tmp_path)) == []
    text = text.replace("/dev/ttyUSB0", "/dev/serial/by-id/usb-REPLACE_with_the_scanner-if00")
    path = setup(tmp_path, text=text)
    [line] = placeholders(parse_config(tomllib.loads(path.read_text()), tmp_path))
    assert line.startswith("buses[0].port: still the example's placeholder")
