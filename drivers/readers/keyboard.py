"""A scanner that types as a USB keyboard, read through evdev and grabbed exclusively.

Grabbed (``EVIOCGRAB``): its keys reach nothing else, so a code never lands in a
console login. Needs the optional ``evdev`` module (``locker-agent[scanner]``); without
it the reader stays down and says why.
"""

from __future__ import annotations

import contextlib
from typing import Any

from drivers.readers.base import OnCode, Reader
from drivers.readers.keys import KeyDecoder

EV_KEY = 1


class KeyboardReader(Reader):
    """Reads codes from the input ``device`` (a path). Other arguments: see ``Reader``."""

    kind = "evdev"

    def __init__(self, name: str, device: str, on_code: OnCode, **kw: Any) -> None:
        super().__init__(name, device, on_code, **kw)
        self.keys = KeyDecoder()

    @property
    def dropped(self) -> dict[str, int]:
        """Lines thrown away by why (``too_long``, ``garbled``, ``rate``)."""
        return {**self.keys.dropped, "rate": self.limited}

    async def _session(self) -> None:
        try:
            import evdev  # optional: only a keyboard reader needs it
        except ImportError:
            raise RuntimeError(
                "the evdev module is missing: install locker-agent[scanner]"
            ) from None
        self.keys.reset()
        device = evdev.InputDevice(self.where)
        try:
            device.grab()  # exclusive: its keys reach nothing else
            self._up()
            async for event in device.async_read_loop():
                if event.type == EV_KEY and (code := self.keys.feed(event.code, event.value)):
                    self._code(code)
        finally:
            with contextlib.suppress(OSError):
                device.ungrab()
            device.close()
