"""A config dict written back as TOML: the file the simulator leaves for the technician's commands.

``locker-agent outbox``, ``thermal log`` and ``status`` take ``--config FILE``; the
simulated locker's config lives only in memory (its ports, cloud, socket and storage
are made at start), so the simulator writes it beside its storage. Tables, arrays of
tables, and inline tables and arrays inside them: the shapes a config has. ``None``
values are left out (TOML has none).
"""

from __future__ import annotations

import json
import re
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: dict[str, Any]) -> str:
    """``data`` (a config as ``tomllib`` reads it) as a TOML document; ``tomllib.loads``
    of it gives ``data`` back. ``TypeError`` for a value TOML cannot hold."""
    head: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append(f"\n[{_key(key)}]")
            tables += [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                tables.append(f"\n[[{_key(key)}]]")
                tables += [f"{_key(k)} = {_value(v)}" for k, v in entry.items() if v is not None]
        else:
            head.append(f"{_key(key)} = {_value(value)}")
    return "\n".join(head + tables).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's basic string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"TOML cannot hold {type(value).__name__}")
