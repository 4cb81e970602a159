"""What one message on the command channel becomes: a refusal answered at once, or
an admitted command running on the locker (``{"id", "key", ...command}``, the body
of "Update the state of a locker cabinet" plus an id and the cabinet key), or pickup
codes put and dropped (``{"id", "type": "codes", "put", "drop"}``), answered at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from agent.locker.commands import error_body, parse_command
from agent.locker.errors import Invalid, LockerError
from agent.locker.idempotency import MAX_ID_LENGTH
from agent.locker.locker import Locker

Provision = Callable[[dict[str, Any]], dict[str, Any]]


def admit(
    locker: Locker, text: str | None, codes: Provision | None = None
) -> dict[str, Any] | tuple[Any, asyncio.Task[Any]]:
    """One message (None: a binary one) parsed and admitted: an answer now (a refusal,
    or a ``codes`` message done by ``codes``), or ``(id, the running command)``;
    ``Locker.submit`` bounds how many run."""
    if text is None:
        return failure(None, Invalid("binary messages are not accepted: send JSON text"))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return failure(None, Invalid("the message is not JSON"))
    if not isinstance(data, dict):
        return failure(None, Invalid("the message must be a JSON object"))

    if "type" in data:
        return _codes(data, codes)
    raw_id = data.pop("id", None)
    raw_key = data.pop("key", None)
    errors: dict[str, list[str]] = {}
    command_id = raw_id if _is_id(raw_id) else None
    if raw_id is None:
        errors["id"] = ["required"]
    elif command_id is None:
        errors["id"] = [f"must be an integer or a string of 1-{MAX_ID_LENGTH} characters"]
    if raw_key is None:
        errors["key"] = ["required"]
    elif not _is_int(raw_key):
        errors["key"] = ["must be an integer"]
    if errors:
        first = next(iter(errors.items()))
        err = Invalid(f"{first[0]}: {first[1][0]}", errors)
        # Echo an id the cloud can match, even one we refuse to act on.
        echo = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
        return failure(echo, err)

    try:
        cmd = parse_command(data)
        # Own namespace: a cloud id never collides with a local Idempotency-Key.
        return command_id, locker.submit(raw_key, cmd, f"cloud:{command_id!r}")
    except LockerError as err:
        return failure(command_id, err)


def _codes(data: dict[str, Any], codes: Provision | None) -> dict[str, Any]:
    """A ``codes`` message: put and drop now (one SQLite write, bounded by the message's
    own limits and the store's), answered ``{"id", "ok": true, "held", "put", "dropped"}``."""
    raw_id = data.pop("id", None)
    kind = data.pop("type")
    command_id = raw_id if _is_id(raw_id) else None
    echo = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    if command_id is None:
        why = "required" if raw_id is None else "must be an integer or a short string"
        return failure(echo, Invalid(f"id: {why}", {"id": [why]}))
    if kind != "codes":
        return failure(command_id, Invalid("type: must be codes", {"type": ["must be codes"]}))
    if codes is None:
        return failure(command_id, Invalid("this agent takes no pickup codes"))
    try:
        return {"id": command_id, "ok": True, **codes(data)}
    except LockerError as err:
        return failure(command_id, err)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH) or _is_int(value)


def failure(command_id: str | int | None, err: LockerError) -> dict[str, Any]:
    """The answer to a command that failed: ``{"id", "ok": false, "error"}``."""
    return {"id": command_id, "ok": False, "error": error_body(err)[1]}
