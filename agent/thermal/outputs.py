"""The thermal outputs on the drivers: each cabinet's heater and cooler, the shared
compressors, the heaters' cutoff contactor. GPIO switches first
(``drivers.gpio.Switch``: on by a lease the control loop renews, so a hung loop
never leaves a heater on, and the cutoff opens by itself when the loop stops).

Safety kept here, whatever the controller asks: a cabinet's heater and cooler are
never on together (the one going off is switched first), and every output is off
(the cutoff open) when built, at ``all_off()`` and when its bus closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from drivers.gpio.errors import BusClosed, PinRefused

if TYPE_CHECKING:  # gpiozero loads only with a GPIO bus
    from drivers.gpio import GpioBus, Switch

log = structlog.get_logger(__name__)


class ThermalOutputs:
    """The switches of every thermal unit and compressor of a config (``Config``)."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.heaters: dict[int, Switch] = {}
        self.coolers: dict[int, Switch] = {}
        self.compressors: dict[str, Switch] = {}
        self.cutoff: Switch | None = None  # closed: the heaters have power

    def build(self, gpio: Mapping[str, GpioBus], problems: list[str]) -> None:
        """Claim every thermal pin on its GPIO bus; a pin a bus refuses is a problem
        line naming the config key (``cabinets[2].thermal.heater: ...``)."""
        for i, cabinet in enumerate(self._config.cabinets):
            unit = cabinet.thermal
            if unit is None or unit.bus is None:
                continue
            for name, into in (("heater", self.heaters), ("cooler", self.coolers)):
                pin = getattr(unit, name)
                if pin is not None:
                    where = f"cabinets[{i}].thermal.{name}"
                    if (switch := _switch(gpio, unit.bus, pin, where, problems)) is not None:
                        into[cabinet.key] = switch
        for i, comp in enumerate(self._config.thermal.compressors):
            where = f"thermal.compressors[{i}].pin"
            if (switch := _switch(gpio, comp.bus, comp.pin, where, problems)) is not None:
                self.compressors[comp.name] = switch
        cut = self._config.thermal.cutoff
        if cut is not None:
            self.cutoff = _switch(gpio, cut.bus, cut.pin, "thermal.cutoff.pin", problems)

    def set(self, key: int, *, heat: bool, cool: bool, lease_s: float) -> None:
        """Cabinet ``key``'s heater and cooler: what goes off first, then what goes on
        (never both on: ``ValueError`` if asked)."""
        if heat and cool:
            raise ValueError(f"cabinet {key}: heater and cooler asked on together")
        heater, cooler = self.heaters.get(key), self.coolers.get(key)
        for switch, on in ((heater, heat), (cooler, cool)):
            if switch is not None and not on:
                switch.off()
        for switch, on in ((heater, heat), (cooler, cool)):
            if switch is not None and on:
                _on(switch, lease_s)

    def compressor(self, name: str, on: bool, lease_s: float) -> None:
        """A shared compressor on (for ``lease_s`` more seconds) or off."""
        switch = self.compressors.get(name)
        if switch is None:
            return
        if on:
            _on(switch, lease_s)
        else:
            switch.off()

    def supply(self, closed: bool, lease_s: float) -> None:
        """The heaters' cutoff: closed (for ``lease_s`` more seconds) or open now."""
        if self.cutoff is None:
            return
        if closed:
            _on(self.cutoff, lease_s)
        else:
            self.cutoff.off()

    @property
    def supplied(self) -> bool | None:
        """Whether the heaters' cutoff is closed now; None when none is fitted."""
        return None if self.cutoff is None else self.cutoff.is_on

    def heating(self, key: int) -> bool:
        """Whether the cabinet's heater is energised now."""
        switch = self.heaters.get(key)
        return switch is not None and switch.is_on

    def cooler_on(self, key: int) -> bool:
        """Whether the cabinet's own cooler (or valve) is energised now."""
        switch = self.coolers.get(key)
        return switch is not None and switch.is_on

    def compressor_on(self, name: str) -> bool:
        """Whether a shared compressor is energised now."""
        switch = self.compressors.get(name)
        return switch is not None and switch.is_on

    def all_off(self) -> None:
        """Every thermal output off, the cutoff first; one failing does not keep the
        others on."""
        cutoff = [self.cutoff] if self.cutoff is not None else []
        every = [*self.heaters.values(), *self.coolers.values(), *self.compressors.values()]
        for switch in [*cutoff, *every]:
            try:
                switch.off()
            except Exception:
                log.exception("thermal.off_failed", output=switch.name)


def _switch(
    gpio: Mapping[str, GpioBus], bus: str, pin: Any, where: str, problems: list[str]
) -> Switch | None:
    if bus not in gpio:
        return None  # not a GPIO bus: the config's cross checks say so
    try:
        return gpio[bus].switch(pin)
    except PinRefused as e:
        problems.append(f"{where}: {e}")
        return None


def _on(switch: Switch, lease_s: float) -> None:
    with contextlib.suppress(BusClosed):  # stopping: off is where it stays
        switch.on(lease_s)
