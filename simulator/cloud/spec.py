"""Feedback bodies checked against the cloud's own OpenAPI document, errors as its 422.

The spec is a copy of the one the real cloud publishes (``simulator/spec/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

FEEDBACK_PATH = "/api/lockers/cabinet/status"
SPEC_PATH = Path(__file__).parent.parent / "spec" / "synq-lockers-api.yaml"


def _allow_null_in_enums(schema: Any) -> Any:
    """Add None to the enum of every ``nullable`` schema.

    OAS 3.0.3 says ``nullable`` does not extend an ``enum``, so the validator
    rejects ``"front_status": null``; the spec marks the field nullable on
    purpose ("either this or rear_status") and the real cloud accepts null.
    """
    if isinstance(schema, dict):
        schema = {k: _allow_null_in_enums(v) for k, v in schema.items()}
        if schema.get("nullable") is True and "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    elif isinstance(schema, list):
        schema = [_allow_null_in_enums(v) for v in schema]
    return schema


def load_feedback_schema(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The requestBody schema of POST /api/lockers/cabinet/status from the spec."""
    # The C loader when libyaml is there: ten times faster on this 1000-line file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    post = spec["paths"][FEEDBACK_PATH]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    return _allow_null_in_enums(schema)


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


class FeedbackValidator:
    """Checks a feedback body; returns Laravel-style ``{field: [messages]}``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = OAS30Validator(schema)

    def errors(self, body: Any) -> dict[str, list[str]]:
        """The body's problems by dotted field (``cabinets.0.key``); empty when valid."""
        errors: dict[str, list[str]] = {}

        def add(field: str, message: str) -> None:
            messages = errors.setdefault(field or "body", [])
            if message not in messages:
                messages.append(message)

        for error in self._validator.iter_errors(body):
            where = list(error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, dict):
                for name in error.validator_value:
                    if name not in error.instance:
                        field = _dotted([*where, name])
                        add(field, f"The {field} field is required.")
            else:
                add(_dotted(where), error.message)

        # The spec's prose rule: each cabinet carries a front or a rear status
        # (null counts as absent, as for Laravel's required_without).
        cabinets = body.get("cabinets") if isinstance(body, dict) else None
        if isinstance(cabinets, list):
            for i, cabinet in enumerate(cabinets):
                if not isinstance(cabinet, dict):
                    continue
                if cabinet.get("front_status") is None and cabinet.get("rear_status") is None:
                    add(
                        f"cabinets.{i}.front_status",
                        f"The cabinets.{i}.front_status field is required when "
                        f"cabinets.{i}.rear_status is not present.",
                    )
        return errors


def unprocessable(errors: dict[str, list[str]]) -> dict[str, Any]:
    """The cloud's 422 body for ``errors``: the first message (and how many more), and all."""
    first = next(iter(errors.values()))[0]
    extra = sum(len(m) for m in errors.values()) - 1
    message = first if extra == 0 else f"{first} (and {extra} more errors)"
    return {"message": message, "errors": errors}
