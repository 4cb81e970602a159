"""Cabinet commands, and the one table that turns domain errors into answers.

``parse_command`` reads the body of the cloud's "Update the state of a locker
cabinet"; the local API and the cloud's command channel both parse through it,
and both answer errors through ``error_body``: the Lok error ``type`` vocabulary
with the HTTP status it goes with (``../shared/DESIGN.md``, "Local HTTP API").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from agent.locker.cabinet import ThermalMode
from agent.locker.errors import (
    Busy,
    Conflict,
    Invalid,
    Jammed,
    LockerError,
    NotFound,
    Obstructed,
    Unavailable,
)

CommandName = Literal["open", "close", "enable", "disable", "resize", "set_thermal_mode"]

# Domain error -> (HTTP status, Lok error type). The only place they meet.
ERRORS: dict[type[LockerError], tuple[int, str]] = {
    Invalid: (422, "INVALID_REQUEST"),
    NotFound: (404, "NOT_FOUND"),
    Conflict: (409, "CONFLICT"),
    Unavailable: (503, "UNAVAILABLE"),
    Busy: (429, "BUSY"),
    # The agent did its part and the lock or the door refused: a conflict with the
    # cabinet's state, not a gateway's timeout (504 sent technicians to the network).
    Jammed: (409, "LOCK_JAMMED"),
    Obstructed: (409, "DOOR_OBSTRUCTED"),
}


def problem(
    status: int, type_: str, message: str, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """A body in the JSON error model: ``status_code``, ``type``, ``message``, ``errors``."""
    body: dict[str, Any] = {"status_code": status, "type": type_, "message": message}
    if errors:
        body["errors"] = errors
    return body


def error_body(err: LockerError) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON error body) for a domain error."""
    status, type_ = ERRORS.get(type(err), (500, "INTERNAL_ERROR"))
    return status, problem(status, type_, err.message, err.errors)


class CabinetCommand(BaseModel):
    """One cabinet command; ``delay`` in seconds (0-3600), ``size`` the cloud's size name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: CommandName
    rearload: bool = False
    delay: int | None = Field(default=None, ge=0, le=3600)
    size: str | None = Field(default=None, min_length=1, max_length=64)
    thermal_mode: ThermalMode | None = None
    acted_by: int | None = None
    order_id: (
        Annotated[str, Field(max_length=100)]
        | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
        | None
    ) = Field(default=None, union_mode="left_to_right")
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _needs(self) -> CabinetCommand:
        if self.command == "resize" and not self.size:
            raise PydanticCustomError("missing", "required when command is resize")
        if self.command == "set_thermal_mode" and not self.thermal_mode:
            raise PydanticCustomError("missing", "required when command is set_thermal_mode")
        return self


class OpenAll(BaseModel):
    """The body of ``POST /api/lockers/open-all`` (technicians)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    rearload: bool = False
    reason: str | None = Field(default=None, max_length=500)


M = TypeVar("M", bound=BaseModel)
_NEEDED_FIELD = {"resize": "size", "set_thermal_mode": "thermal_mode"}


def parse_command(data: Any) -> CabinetCommand:
    """Validate a command body; raises ``Invalid`` naming every field that is wrong."""
    return _parse(CabinetCommand, data)


def parse_open_all(data: Any) -> OpenAll:
    """Validate an open-all body; raises ``Invalid``."""
    return _parse(OpenAll, data)


def _parse(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            if not loc:  # a model-level rule: name the field the command needs
                loc = _NEEDED_FIELD.get(str(data.get("command")), "body")
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            errors.setdefault(loc, []).append(msg)
        first = next(iter(errors.items()))
        raise Invalid(f"{first[0]}: {first[1][0]}", errors) from None
