"""The local API's answers, as models: the cabinet object, errors, health, open-all."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.locker.cabinet import ThermalMode

DoorStateName = Literal["closed", "opening", "open", "closing", "unknown"]


class Alarm(BaseModel):
    """An alarm the cloud has been told of and not yet of its end."""

    type: str
    side: Literal["front", "rear"] | None  # None: the whole cabinet (thermal alarms)


class ThermalView(BaseModel):
    """A thermal unit (DESIGN.md, "Thermal"); ``band_c``: ``[low, high]``, None in ambient;
    ``heating``, ``cooling`` and ``sensor`` None while the control loop is stalled (unknown)."""

    mode: ThermalMode
    band_c: list[float] | None
    heating: bool | None
    cooling: bool | None
    sensor: Literal["ok", "failed", "missing"] | None


class CabinetView(BaseModel):
    """The cloud's cabinet object as sensed: ``unknown`` doors, ``recorded``, thermal, alarms."""

    model_config = ConfigDict(extra="allow")

    key: int
    state: DoorStateName
    enabled: bool
    size: str
    occupied: int | None = Field(ge=0, le=1)  # None: its item sensor's board is silent
    thermal_mode: ThermalMode
    rear_load_status: DoorStateName | None
    recorded: bool  # False: a door's change is shown as sensed, not yet in the outbox
    temperature_c: float | None = None  # one decimal; None: no sensor, or not trusted
    thermal: ThermalView | None = None  # None: no thermal unit
    alarms: list[Alarm]


class ErrorBody(BaseModel):
    """Every error: the Lok ``type`` vocabulary; ``errors`` names wrong fields (422)."""

    status_code: int = Field(ge=400, le=599)
    type: str
    message: str
    errors: dict[str, list[str]] = Field(default_factory=dict)


class Health(BaseModel):
    """``/healthz``: ``reasons`` empty when ``ok``; figures (outbox, notices) may follow."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded"]
    reasons: list[str]
    version: str | None = None
    alarms: list[dict[str, Any]] | None = None  # {"key", "type", "side"}: active alarms


class OpenAllResult(BaseModel):
    """One cabinet's outcome in ``POST /api/lockers/open-all``: its object when it
    opened, its error otherwise."""

    key: int
    ok: bool
    cabinet: CabinetView | None = None
    error: ErrorBody | None = None
