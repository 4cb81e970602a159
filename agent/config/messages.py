"""Pydantic errors as ``key.path[index]: message`` lines a technician can act on.

A problem is a key path and a message. The message says what would be right: the
nearest valid key for a typo, the bounds of a number, the TOML type expected. The
value given is shown only where it cannot be a secret.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from agent.config.schema import _TAGS, Config

_Loc = tuple[str | int, ...]


_Problem = tuple[_Loc, str]


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _kind(value: Any) -> str:
    """A value's type in TOML words (never the value: it might be a secret)."""
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case dict():
            return "a table"
        case _:
            return type(value).__name__


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> X; ``Annotated[X, ...]`` stays (its metadata has bounds)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _walk(loc: Sequence[str | int]) -> tuple[Any, list[Any]]:
    """The type at ``loc`` inside Config and its bound metadata (best effort)."""
    tp: Any = Config
    metadata: list[Any] = []
    for part in loc:
        tp = _unwrap(tp)
        if get_origin(tp) is Annotated:
            tp = _unwrap(get_args(tp)[0])
        if part in _TAGS and get_origin(tp) in (Union, types.UnionType):
            tp = _tagged_member(tp, str(part))
            continue
        if isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                return None, []
            tp, metadata = field.annotation, list(field.metadata)
        elif isinstance(part, int) and get_origin(tp) is list:
            tp, metadata = get_args(tp)[0], []
        else:
            return None, []
    tp = _unwrap(tp)
    if get_origin(tp) is Annotated:
        for extra in get_args(tp)[1:]:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
        tp = _unwrap(get_args(tp)[0])
    return tp, metadata


def _tagged_member(union: Any, tag: str) -> Any:
    for member in get_args(union):
        if get_origin(member) is Annotated and any(
            isinstance(m, Tag) and m.tag == tag for m in get_args(member)[1:]
        ):
            return get_args(member)[0]
    return None


def _bounds(loc: Sequence[str | int]) -> tuple[Any, Any]:
    low = high = None
    for item in _walk(loc)[1]:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return low, high


def _is_secret(loc: Sequence[str | int]) -> bool:
    return any(part in ("api_key", "token", "api_key_file", "token_file") for part in loc)


def _message(error: Mapping[str, Any]) -> str:
    """A human line for one pydantic error; the input is shown only when harmless."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
    value = error.get("input")
    secret = _is_secret(loc)
    got = "" if secret else f" (got {value!r})"

    if kind == "extra_forbidden":
        message = "unknown key"
        if close := _close_key(loc):
            message += f" (did you mean '{close}'?"
            if error.get("_instead_of_missing") and not secret:
                message += f" it is required: {close} = {_toml(value)}"
            message += ")"
        return message
    if kind == "missing":
        field_type, _ = _walk(loc)
        if isinstance(field_type, type) and issubclass(field_type, BaseModel):
            return "missing (a required table)"
        if get_origin(field_type) is list:
            (item,) = get_args(field_type)[:1] or (None,)
            if isinstance(item, type) and issubclass(item, BaseModel):
                return f"missing: add at least one [[{loc[-1]}]] table"
            return f"missing: a list, e.g. {loc[-1]} = [0, 1]"
        return "missing (required)"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(loc)
        if low is not None and high is not None:
            return f"must be between {low} and {high}{got}"
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">"}
        return f"must be {word.get(kind, '<')} {bound}{got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}{got}"
    if kind in ("too_short", "string_too_short"):
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"too short: at least {ctx.get('min_length')}"
    if kind in ("too_long", "string_too_long"):
        return f"too long: at most {ctx.get('max_length')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    expected = {
        "int_type": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "string_type": "a string",
        "bool_type": "true or false",
        "list_type": "an array",
        "model_type": "a table",
        "model_attributes_type": "a table",
        "dict_type": "a table",
        "path_type": "a path (a string)",
    }.get(kind)
    if expected is not None:
        return f"must be {expected} (got {_kind(value)})"
    if secret:
        return "invalid"
    return str(error["msg"])


def _close_key(loc: Sequence[str | int]) -> str | None:
    """The known key an unknown key at ``loc`` is most likely a typo of; None."""
    parent, _ = _walk(loc[:-1])
    if isinstance(parent, type) and issubclass(parent, BaseModel) and isinstance(loc[-1], str):
        close = difflib.get_close_matches(loc[-1], list(parent.model_fields), n=1)
        return close[0] if close else None
    return None


def _toml(value: Any) -> str:
    """``value`` as it would be written in the file (short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ ... }"
    return repr(value)


def _problems_of(error: ValidationError, prefix: _Loc = ()) -> list[_Problem]:
    """One problem per error; ``prefix`` is where the validated value sits in the file
    (``("buses", 2)`` for an entry validated on its own). A required key missing beside
    an unknown key that is its typo (``board`` for ``boards``) is one line: the typo's."""
    errors = [{**e, "loc": (*prefix, *e["loc"])} for e in error.errors()]
    typos = {}
    for e in errors:
        if e["type"] == "extra_forbidden" and (close := _close_key(e["loc"])):
            typos[(*e["loc"][:-1], close)] = e
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    problems: list[_Problem] = []
    for e in errors:
        if e["type"] == "missing" and tuple(e["loc"]) in typos:
            continue  # the typo's line says it
        if e["type"] == "extra_forbidden":
            close = _close_key(e["loc"])
            if close and (*e["loc"][:-1], close) in missing:
                e = {**e, "_instead_of_missing": True}
        # Discriminated unions put their tag in the location (the message needs it to
        # find the model); the file has no such key, so the reported path leaves it out.
        problems.append((tuple(p for p in e["loc"] if p not in _TAGS), _message(e)))
    return problems
