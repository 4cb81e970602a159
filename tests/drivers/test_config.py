"""What the drivers' config sections share: the strict base model and the name rules;
and the rule that drivers/ imports nothing of agent/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from drivers.config import NAME_MAX, Name, NameRef, StrictModel, check_name


@pytest.mark.parametrize("name", ["rs485", "gpio-2", "psu_24V.main", "a", "x" * NAME_MAX])
def test_names_that_are_plain_words(name: str) -> None:
    assert TypeAdapter(Name).validate_python(name) == name


@pytest.mark.parametrize("name", ["", "rs 485", "bus/1", "x" * (NAME_MAX + 1), "ünï"])
def test_names_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Name).validate_python(name)


def test_a_reference_is_only_bounded() -> None:
    # Which names exist is the cross check's affair: it lists them.
    assert TypeAdapter(NameRef).validate_python("rs 485") == "rs 485"
    with pytest.raises(ValueError, match="letters, digits"):
        check_name("rs 485")


class _Section(StrictModel):
    count: int = 1


def test_the_base_model_is_strict_closed_and_frozen() -> None:
    with pytest.raises(ValidationError):
        _Section.model_validate({"count": "1"})  # TOML is typed: no "1" -> 1
    with pytest.raises(ValidationError):
        _Section.model_validate({"count": True})
    with pytest.raises(ValidationError, match="extra"):
        _Section.model_validate({"cuont": 1})
    section = _Section()
    with pytest.raises(ValidationError):
        section.count = 2  # type: ignore[misc]
    with pytest.raises(ValidationError) as caught:
        _Section.model_validate({"count": "secret-value"})
    assert "secret-value" not in str(caught.value)


def test_drivers_import_nothing_of_the_agent() -> None:
    drivers = Path(__file__).resolve().parents[2] / "drivers"
    for path in drivers.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] in ("agent", "simulator")], path
