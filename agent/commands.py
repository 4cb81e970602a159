"""Cabinet commands: the body of the cloud's "Update the state of a locker cabinet"."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from agent.cabinet import ThermalMode

CommandName = Literal["open", "close", "enable", "disable", "resize", "set_thermal_mode"]


class CabinetCommand(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: CommandName
    rearload: bool = False
    delay: int | None = Field(default=None, ge=0, le=3600)
    size: str | None = Field(default=None, min_length=1, max_length=64)
    thermal_mode: ThermalMode | None = None
    acted_by: int | None = None
    order_id: str | int | None = Field(default=None, union_mode="left_to_right")
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _needs(self) -> CabinetCommand:
        if self.command == "resize" and not self.size:
            raise PydanticCustomError("missing", "required when command is resize")
        if self.command == "set_thermal_mode" and not self.thermal_mode:
            raise PydanticCustomError("missing", "required when command is set_thermal_mode")
        return self


_NEEDED_FIELD = {"resize": "size", "set_thermal_mode": "thermal_mode"}


class CommandError(Exception):
    """A command that cannot be carried out, in the JSON error model of the local API."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.errors = errors or {}

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status_code": self.status,
            "type": self.type,
            "message": self.message,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def parse_command(data: Any) -> CabinetCommand:
    """Validate a command body; any problem becomes a 422 CommandError naming the fields."""
    if not isinstance(data, dict):
        raise CommandError(422, "INVALID_REQUEST", "the body must be a JSON object")
    try:
        return CabinetCommand.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            if not loc:  # a model-level rule: name the field the command needs
                loc = _NEEDED_FIELD.get(str(data.get("command")), "body")
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            errors.setdefault(loc, []).append(msg)
        first = next(iter(errors.items()))
        raise CommandError(422, "INVALID_REQUEST", f"{first[0]}: {first[1][0]}", errors) from None
