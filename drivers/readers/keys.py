"""Key events of a scanner that types (Linux key codes) to codes, on a US layout.

Pure: ``feed(code, value)`` with the kernel's ``EV_KEY`` events (``value`` 1 down, 0
up, 2 autorepeat, ignored). Shift (either) and Caps Lock are followed; Enter (or the
keypad's) ends a code. A line with a key that types nothing known is garbled; one
longer than ``max_line`` is too long: both are dropped whole. Key codes from
``linux/input-event-codes.h``; scanners are set to a US layout by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.readers.lines import MAX_LINE

KEY_ENTER = 28
KEY_KPENTER = 96
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_CAPSLOCK = 58
SHIFTS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
IGNORED = frozenset({29, 97, 56, 100, 125, 126})  # Ctrl, Alt, Meta: a scanner's prefix keys


def _row(first: int, plain: str, shifted: str) -> dict[int, tuple[str, str]]:
    return {first + i: (p, s) for i, (p, s) in enumerate(zip(plain, shifted, strict=True))}


KEYMAP: dict[int, tuple[str, str]] = {
    **_row(2, "1234567890-=", "!@#$%^&*()_+"),
    **_row(16, "qwertyuiop[]", "QWERTYUIOP{}"),
    **_row(30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    **_row(43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    55: ("*", "*"),
    57: (" ", " "),
    **_row(71, "789-456+1230.", "789-456+1230."),
    98: ("/", "/"),
}
"""Key code -> (plain, shifted) character."""


@dataclass(slots=True)
class KeyDecoder:
    """Key events in, codes out; ``dropped`` counts lines thrown away, by why."""

    max_line: int = MAX_LINE
    dropped: dict[str, int] = field(default_factory=lambda: {"too_long": 0, "garbled": 0})
    _chars: list[str] = field(default_factory=list)
    _shift: set[int] = field(default_factory=set)
    _caps: bool = False
    _bad: str | None = None

    def feed(self, code: int, value: int) -> str | None:
        """One key event; a whole code when it ended one, else None."""
        if code in SHIFTS:
            if value == 1:
                self._shift.add(code)
            elif value == 0:
                self._shift.discard(code)
            return None
        if value != 1:
            return None
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        if code in (KEY_ENTER, KEY_KPENTER):
            return self._end()
        if code in IGNORED or self._bad is not None:
            return None
        found = KEYMAP.get(code)
        if found is None:
            self._bad = "garbled"
        elif len(self._chars) >= self.max_line:
            self._bad = "too_long"
            self._chars.clear()
        else:
            plain, shifted = found
            upper = bool(self._shift) != (self._caps and plain.isalpha())
            self._chars.append(shifted if upper else plain)
        return None

    def reset(self) -> None:
        """Forget a partial code and the modifiers, Caps Lock too (the device was
        reopened: a stray Caps Lock must not turn every later code wrong)."""
        self._chars.clear()
        self._shift.clear()
        self._caps = False
        self._bad = None

    def _end(self) -> str | None:
        text, bad = "".join(self._chars).strip(), self._bad
        self._chars.clear()
        self._bad = None
        if bad is not None:
            self.dropped[bad] += 1
            return None
        return text or None
