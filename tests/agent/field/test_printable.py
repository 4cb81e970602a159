"""Text from elsewhere is printed with every control character escaped."""

import pytest

from agent.field.printable import printable


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
