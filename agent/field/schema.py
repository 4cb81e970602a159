"""``locker-agent config schema``: the config file's JSON Schema, for editors.

An editor that reads JSON Schema for TOML (Taplo, VS Code's Even Better TOML) then
completes the keys, shows each section's description and flags a typo or a value out
of bounds while the file is written. ``check-config`` stays the judge: the schema
cannot say everything it checks (the cross checks between entries, a board that is
not on its bus, a pin used twice, a GPIO number above ``MAX_PIN`` written as text).

It is pydantic's schema of ``Config`` (``Config.model_json_schema()``) with what the
models do not carry themselves: a pin is a BCM number or a spec like ``"^!GPIO5"``
(inputs may take ``^``, outputs only ``!``), and a secret is given either inline or
as a file (``api_key`` or ``api_key_file``, ``token`` or ``token_file``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from agent.config import Config
from drivers.gpio.config import input_pin, output_pin
from drivers.gpio.pins import MAX_PIN

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_NUMBER = {"type": "integer", "minimum": 0, "maximum": MAX_PIN}
_GPIO = "([Gg][Pp][Ii][Oo])?[0-9]{1,2}"
INPUT_PIN: dict[str, Any] = {
    "anyOf": [_NUMBER, {"type": "string", "pattern": rf"^\s*(\^!?|!\^?)?{_GPIO}\s*$"}],
    "description": 'An input pin: a BCM number, or "^" (pull-up) and "!" (active low)'
    ' before it, e.g. "^!GPIO5" (a switch to ground).',
}
OUTPUT_PIN: dict[str, Any] = {
    "anyOf": [_NUMBER, {"type": "string", "pattern": rf"^\s*!?{_GPIO}\s*$"}],
    "description": 'An output pin: a BCM number, "!" before it for active low, e.g. "!17".',
}

# (section model, secret) pairs: the secret is given inline or as ``<secret>_file``.
_SECRETS = (("CloudConfig", "api_key"), ("ApiConfig", "token"))


class _Generator(GenerateJsonSchema):
    """pydantic's generator, knowing the pin fields' validators."""

    def function_plain_schema(
        self, schema: core_schema.PlainValidatorFunctionSchema
    ) -> JsonSchemaValue:
        """A pin field's schema; any other plain validator as pydantic has it."""
        function = schema["function"]["function"]
        if function is input_pin:
            return dict(INPUT_PIN)
        if function is output_pin:
            return dict(OUTPUT_PIN)
        return super().function_plain_schema(schema)


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the config file, as a dict."""
    schema = Config.model_json_schema(schema_generator=_Generator)
    for model, secret in _SECRETS:
        section = schema["$defs"][model]
        section["required"] = [k for k in section.get("required", []) if k != secret]
        if not section["required"]:
            del section["required"]
        section["oneOf"] = [{"required": [secret]}, {"required": [f"{secret}_file"]}]
        section["properties"][secret]["description"] = (
            f"The secret itself; or give {secret}_file, a file holding only it"
            " (root:locker-agent, mode 640)."
        )
    return {
        "$schema": DIALECT,
        **schema,
        "title": "locker-agent config (/etc/locker-agent/agent.toml)",
    }


def main() -> int:
    """Print the schema to stdout as indented JSON; 0 (1 when the reader went away,
    as ``| head`` does, without a traceback)."""
    try:
        sys.stdout.write(json.dumps(config_schema(), indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 1
    return 0
