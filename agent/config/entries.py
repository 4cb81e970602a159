"""``[[buses]]`` and ``[[cabinets]]`` entries, each validated on its own with its model.

A problem in one entry then never hides a problem in another, and the cross checks
(``checks.py``) get what is valid of every entry: the whole model when the entry is
valid, else each field that is valid on its own, validated by the very type its
model declares (the field types carry their validators, see ``drivers/config.py``).
No second set of rules or bounds exists for the cross checks.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from agent.config.messages import _Problem, _problems_of
from agent.config.schema import (
    AnyBus,
    CabinetConfig,
    GpioBusConfig,
    GpioDoorWiring,
    GpioInputWiring,
    IndicatorWiring,
    KerongBusConfig,
    KerongDoorWiring,
    _bus_tag,
    _door_tag,
)
from agent.thermal.config import ThermalWiring


@dataclass(frozen=True, slots=True)
class Part:
    """What is valid of one table: its ``kind`` and every field valid on its own.

    ``kind`` is the driver (``"kerong-cu16"``, ``"gpio"``) of a bus or a door, None
    when a bus's ``driver`` key is invalid, and the model's name for other tables.
    ``fields`` maps a field name to its validated value (a sub-table as a ``Part``);
    an invalid field is absent, an omitted optional one has its default.
    """

    kind: str | None
    fields: Mapping[str, Any]

    def get(self, name: str) -> Any:
        """The validated value of ``name``, None when absent or invalid."""
        return self.fields.get(name)


@dataclass(slots=True)
class Entry:
    """One ``[[buses]]`` or ``[[cabinets]]`` entry, as written and as far as it is valid.

    ``raw`` as written; ``model`` when valid as a whole; ``part`` what is valid of it
    (None when it is not a table); ``problems``.
    """

    index: int
    raw: Any
    model: BaseModel | None
    part: Part | None
    problems: list[_Problem] = field(default_factory=list)


_BUS_MODELS: dict[str, type[BaseModel]] = {"kerong-cu16": KerongBusConfig, "gpio": GpioBusConfig}
_DOOR_MODELS: dict[str, type[BaseModel]] = {
    "kerong-cu16": KerongDoorWiring,
    "gpio": GpioDoorWiring,
}
# The sub-tables of a cabinet: a door's model depends on what it holds.
_CABINET_TABLES = ("front", "rear", "item", "indicator", "thermal")


def _table_model(name: str, raw: Mapping[str, Any]) -> tuple[str, type[BaseModel]]:
    """The kind and model of a cabinet's sub-table ``name`` as written."""
    if name in ("front", "rear"):
        kind = _door_tag(raw)
        return kind, _DOOR_MODELS[kind]
    model = {"item": GpioInputWiring, "thermal": ThermalWiring}.get(name, IndicatorWiring)
    return model.__name__, model


_ANY_BUS: TypeAdapter[Any] = TypeAdapter(AnyBus)


def validate_buses(raw: Any) -> list[Entry]:
    """Each entry of ``buses`` (when it is an array) validated on its own."""
    entries = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        entry = Entry(i, item, None, None)
        try:
            entry.model = _ANY_BUS.validate_python(item)
        except ValidationError as e:
            entry.problems = _problems_of(e, ("buses", i))
            if isinstance(item, dict):
                model = _BUS_MODELS[_bus_tag(item)]
                fields = _valid_fields(model, item)
                entry.part = Part(fields.get("driver"), fields)
        else:
            entry.part = _part_of(entry.model)
        entries.append(entry)
    return entries


def validate_cabinets(raw: Any) -> list[Entry]:
    """Each entry of ``cabinets`` (when it is an array) validated on its own."""
    entries = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        entry = Entry(i, item, None, None)
        try:
            entry.model = CabinetConfig.model_validate(item)
        except ValidationError as e:
            entry.problems = _problems_of(e, ("cabinets", i))
            if isinstance(item, dict):
                fields = _valid_fields(CabinetConfig, item)
                for name in _CABINET_TABLES:
                    value = fields.get(name)
                    if isinstance(value, BaseModel):
                        fields[name] = _part_of(value)
                    elif isinstance(item.get(name), dict):
                        # Invalid as a whole: keep what is valid of it.
                        kind, model = _table_model(name, item[name])
                        fields[name] = Part(kind, _valid_fields(model, item[name]))
                entry.part = Part("cabinet", fields)
        else:
            entry.part = _part_of(entry.model)
        entries.append(entry)
    return entries


def _part_of(model: BaseModel) -> Part:
    """A valid model as a Part (sub-models as Parts too)."""
    fields = {
        name: _part_of(value) if isinstance(value, BaseModel) else value for name, value in model
    }
    return Part(_kind_of(model), fields)


def _kind_of(model: BaseModel) -> str:
    if isinstance(model, KerongBusConfig | GpioBusConfig):
        return model.driver
    if isinstance(model, GpioDoorWiring):
        return "gpio"
    if isinstance(model, KerongDoorWiring):
        return "kerong-cu16"
    if isinstance(model, CabinetConfig):
        return "cabinet"
    return type(model).__name__


def _valid_fields(model: type[BaseModel], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``raw`` that are valid on their own, as ``model`` reads them, and
    the defaults of optional fields left out."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in raw:
            if not info.is_required():
                fields[name] = info.get_default(call_default_factory=True)
            continue
        with contextlib.suppress(ValidationError):
            fields[name] = _field_adapter(model, name).validate_python(raw[name])
    return fields


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """Validates one field of ``model`` exactly as the model does (type, bounds,
    validators), strictly, as the models are."""
    info = model.model_fields[name]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    try:
        return TypeAdapter(annotation, config=ConfigDict(strict=True))
    except PydanticUserError:  # a model or a dataclass: it brings its own config
        return TypeAdapter(annotation)
