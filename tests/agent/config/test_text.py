"""Text from elsewhere: printed with every character that cannot be shown escaped, and
refused in a config value by the same rule (one mechanism, agent/config/text.py)."""

import pytest

from agent.config import parse_config
from agent.config.text import plain, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("closed", "closed"),
        ("mini size", "mini size"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("a\nb\r\tc", "a\\x0ab\\x0d\\x09c"),
        ("\x7f\x9b31m", "\\x7f\\x9b31m"),  # DEL, and the 8-bit CSI
        ("abc\u202edef", "abc\\u202edef"),  # a bidi override turns the line around
        ("x\u2028y", "x\\u2028y"),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603"),  # letters and symbols stay
        (42, "42"),
        (None, "None"),
    ],
)
def test_printable(raw, shown):
    assert printable(raw) == shown


CASES = ["closed", "caf\u00e9", "\x1b[2J", "a\nb", "\x7f", "\x9b31m", "abc\u202edef", "x\u2028y"]


@pytest.mark.parametrize("text", CASES)
def test_the_config_refuses_exactly_what_the_cli_escapes(text):
    if printable(text) == text:
        assert plain(text) == text
    else:
        with pytest.raises(ValueError, match="must not contain control characters"):
            plain(text)


@pytest.mark.parametrize("text", ["\x9b31m", "abc\u202edef", "x\u2028y"])
@pytest.mark.parametrize(("section", "key"), [("storage", "dir"), ("api", "socket")])
def test_a_path_the_terminal_would_show_otherwise_is_refused(tmp_path, section, key, text):
    """The 8-bit CSI, a bidi override, a line separator: the old check (C0 and DEL only)
    let them into a path that messages and logs print."""
    from agent.config import ConfigError

    data = {
        "cloud": {"url": "https://cloud.lockers.test", "api_key": "k"},
        "api": {"token": "t"},
        "storage": {"dir": str(tmp_path)},
        "buses": [{"name": "rs485", "port": "/dev/ttyUSB0", "boards": [0]}],
        "cabinets": [{"key": 0, "front": {"bus": "rs485", "board": 0, "channel": 1}}],
    }
    data[section][key] = f"{tmp_path}/{text}"
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{section}.{key}: must not contain control characters (found \\")
