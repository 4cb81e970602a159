"""Mock pins for every BCM GPIO the pin grammar takes, for dry builds and ``pin_factory = "mock"``.

gpiozero's ``MockFactory`` plays a Raspberry Pi 3B: GPIO 0-27 on its 40-pin header,
GPIO2/3 with their soldered pull-ups. The pin grammar takes 0 to ``MAX_PIN`` (a
compute module exposes more than the header), so a mock of the header alone would
refuse pins the config accepts. ``mock_factory()`` keeps the header as it is (fixed
pulls included) and adds the GPIOs it lacks on a second header, ``EXTRA``.

What a real board lacks is only known on that board: a pin the header does not
have fails there at ``run``, with gpiozero's message.
"""

from __future__ import annotations

from typing import Any

from gpiozero.compat import frozendict
from gpiozero.pins import HeaderInfo, PinInfo
from gpiozero.pins.mock import MockFactory, MockPWMPin

from drivers.gpio.pins import MAX_PIN


class AllPinsMockFactory(MockFactory):
    """gpiozero's ``MockFactory`` whose board has every BCM GPIO 0 to ``MAX_PIN``.

    Takes ``MockFactory``'s arguments (``revision``, ``pin_class``). The header of
    the revision is kept with its fixed pulls; the missing GPIOs are on header
    ``EXTRA``, without pulls.
    """

    _widened = False

    def _get_board_info(self) -> Any:
        info = super()._get_board_info()
        if self._widened:
            return info
        present = {
            name
            for header in info.headers.values()
            for pin in header.pins.values()
            for name in pin.names
            if isinstance(name, int)
        }
        missing = [n for n in range(MAX_PIN + 1) if n not in present]
        if missing:
            pins = {
                row: PinInfo(
                    number=row,
                    name=f"GPIO{n}",
                    names=frozenset({n, str(n), f"GPIO{n}", f"BCM{n}", f"EXTRA:{row}"}),
                    pull="",
                    row=row,
                    col=1,
                    interfaces=frozenset({"gpio"}),
                )
                for row, n in enumerate(missing, start=1)
            }
            headers = dict(info.headers)
            headers["EXTRA"] = HeaderInfo(
                name="EXTRA", rows=len(pins), columns=1, pins=frozendict(pins)
            )
            info = info._replace(headers=frozendict(headers))
            self._info = info
        self._widened = True
        return info


def mock_factory() -> MockFactory:
    """A fresh mock pin factory with PWM pins (dim indicator colours) and every BCM GPIO
    0 to ``MAX_PIN``. Close it (``factory.close()``) when done."""
    return AllPinsMockFactory(pin_class=MockPWMPin)
