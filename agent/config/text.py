"""Text a person reads that came from elsewhere: which characters cannot be shown as
they are, once, for what the config refuses and what the CLI prints.

A cabinet's size, a reason or a message may have come from the network; a process
names itself; a path in the config ends up in messages and logs. Printed raw, an ESC
sequence in one of them rewrites the technician's terminal (its title, its colours,
what the line above said) and a newline forges a line of output. A character is
shown as it is when Python calls it printable; any other (C0 and C1 controls, DEL,
format characters such as bidi overrides, line and paragraph separators, unassigned
code points) is escaped by ``printable`` (``\\x1b``, ``\\u202e``, ...) and refused in a
config value by ``plain`` (``agent/config/schema.py``).
"""

from __future__ import annotations

from typing import Any


def printable(value: Any) -> str:
    """``value`` as text (``str(value)`` unless it is one) with every non-printable
    character escaped; the space stays."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def plain(value: Any) -> Any:
    """``value`` unchanged when it is not a string or every character is printable; else
    ``ValueError`` naming the first other one, escaped (a pydantic ``before`` validator)."""
    if isinstance(value, str) and not value.isprintable():
        first = next(c for c in value if not c.isprintable())
        raise ValueError(f"must not contain control characters (found {_escape(first)})")
    return value
