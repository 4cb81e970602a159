"""Text from elsewhere (the agent's answers, a process's command line) made safe to print.

A cabinet's size, a reason or a message may have come from the network; a process
names itself. Printed raw, an ESC sequence in one of them rewrites the technician's
terminal (its title, its colours, what the line above said) and a newline forges a
line of output. ``printable`` escapes every character Python does not call printable
(C0 and C1 controls, DEL, format characters such as bidi overrides, line and
paragraph separators, unassigned code points) as ``\\x1b``, ``\\u202e``, ...
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
