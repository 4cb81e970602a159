"""A cabinet: its doors, its settings, its active alarms, and how the cloud sees it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.config import Side
from agent.locker.door import Door

ThermalMode = Literal["ambient", "heat", "freeze", "chill"]


@dataclass(slots=True, eq=False)
class Cabinet:
    """One compartment, by the cloud's cabinet ``key``.

    ``alarms`` holds ``(alarm, side)`` pairs the cloud has been told of (the journal
    adds and removes them once the event is queued). ``lock`` keeps two commands on
    one cabinet from interleaving.
    """

    key: int
    size: str
    front: Door = field(default_factory=Door)
    rear: Door | None = None
    enabled: bool = True
    occupied: bool = False  # the last reading: thermal control counts on it
    occupied_known: bool = True  # False while the board with its item sensor is silent
    occupied_sensed: bool = False  # an item sensor has answered since start
    thermal_mode: ThermalMode = "ambient"
    # The modes its hardware can give: "ambient" (all off) always; heat, chill and
    # freeze only with a thermal unit (DESIGN.md, "Thermal").
    thermal_modes: frozenset[str] = frozenset({"ambient"})
    thermal_set: int = (
        0  # set_thermal_mode commands carried out (a new mode re-arms the controller)
    )
    alarms: set[tuple[str, Side | None]] = field(default_factory=set)
    # What the thermal control shows (DESIGN.md, "Thermal"): the trusted temperature
    # (one decimal) and the unit's state; both None without a thermal unit.
    temperature_c: float | None = None
    thermal: dict[str, Any] | None = None  # heating, cooling, sensor: the last round's
    thermal_bands: dict[str, list[float]] | None = None  # band_c by mode (config)
    # Safety shut-offs latched by thermal control (ADR 0011), alarm -> why: only a
    # technician's reset clears them, never a command.
    thermal_latches: dict[str, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def door(self, side: Side) -> Door | None:
        """The front or rear door; None when the cabinet has no rear door."""
        return self.front if side == "front" else self.rear

    def doors(self) -> list[tuple[Side, Door]]:
        """Every door the cabinet has, front first."""
        return [("front", self.front)] + ([("rear", self.rear)] if self.rear else [])

    def thermal_refusal(self, command: str) -> str | None:
        """Why a latched thermal unit refuses ``command`` (None: it does not):
        ``set_thermal_mode`` while any latch holds; ``enable`` and ``open`` while over
        the limit (the cabinet's disable may not have reached the disk)."""
        latches = self.thermal_latches
        if not latches or command not in ("set_thermal_mode", "enable", "open"):
            return None
        if command != "set_thermal_mode" and "temperature_over_limit" not in latches:
            return None
        named = "; ".join(f"{alarm} ({why})" for alarm, why in sorted(latches.items()))
        return (
            f"cabinet {self.key}'s thermal unit is latched off: {named}; a technician"
            f" resets it: POST /api/lockers/cabinets/{self.key}/thermal/reset or"
            f" locker-agent thermal reset {self.key}"
        )

    def settings(self) -> dict[str, Any]:
        """What commands change and the state store keeps."""
        return {"enabled": self.enabled, "size": self.size, "thermal_mode": self.thermal_mode}

    def as_cloud(self) -> dict[str, Any]:
        """The cloud's cabinet object (GET /api/lockers/locations shape), as sensed now.

        Plus ``unknown`` door states, ``recorded`` (False while a door's change waits
        for the disk: shown, not yet in the outbox) and the active ``alarms``.
        """
        return {
            "key": self.key,
            "state": self.front.seen.value,
            "enabled": self.enabled,
            "size": self.size,
            "occupied": int(self.occupied) if self.occupied_known else None,
            "thermal_mode": self.thermal_mode,
            "rear_load_status": self.rear.seen.value if self.rear else None,
            "recorded": all(door.recorded for _, door in self.doors()),
            "temperature_c": self.temperature_c,
            "thermal": self._thermal(),
            "alarms": [{"type": a, "side": s} for a, s in sorted(self.alarms, key=_by_name)],
        }

    def _thermal(self) -> dict[str, Any] | None:
        """The unit's state: its mode and band as set now (a command's answer shows its
        own effect), the outputs and sensor as the last control round left them."""
        if self.thermal_bands is None:
            return None
        mode = self.thermal_mode
        last = self.thermal or {"heating": False, "cooling": False, "sensor": "missing"}
        return {"mode": mode, "band_c": self.thermal_bands.get(mode)} | last

    def feedback(self) -> dict[str, Any] | None:
        """This cabinet's entry in a feedback body, or None when no door of it is known.

        A door shows its status; a door whose board is silent repeats what the cloud
        was last told (no news, and never a guess, ADR 0006); a door never known
        (its board silent since start) is ``null``, as the spec allows beside a
        known door (ADR 0019). The cloud refuses an entry with no status at all."""
        entry: dict[str, Any] = {"key": self.key}
        for side, door in self.doors():
            entry[f"{side}_status"] = door.status or door.reported
        return entry if any(v is not None for k, v in entry.items() if k != "key") else None


def _by_name(alarm: tuple[str, str | None]) -> tuple[str, str]:
    return alarm[0], alarm[1] or ""
