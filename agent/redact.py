"""Masking secrets in log lines: keys that name one, and values that look like one.

Used by ``agent.log`` on every line of the process (structlog's and stdlib's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "***"

# Keys that carry a secret, compared lower-case; also any key ending in these.
_SECRET_KEYS = frozenset(
    {"api_key", "api-key", "apikey", "token", "secret_token", "authorization", "password"}
)
_SECRET_SUFFIXES = ("_token", "-token", "api_key", "api-key", "apikey", "secret", "password")

# Values that look like a secret, anywhere in a string. The value stops at
# whitespace, a quote, or a separator of query strings and reprs.
_VALUE = r"[^\s\"'&,;<>]+"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Authorization: Basic abc", "authorization=Bearer abc": the scheme and the credential
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?:\w+\s+)?" + _VALUE), r"\1" + MASK),
    (re.compile(r"(?i)(\bbearer\s+)" + _VALUE), r"\1" + MASK),
    # secret_token=..., token: ..., "api_key": "...", x-api-key=..., password=...
    (
        re.compile(
            r"(?i)(\b(?:[\w-]*[_-])?(?:token|api[_-]?key|apikey|password|passwd|secret)"
            r"[\"']?\s*[:=]\s*[\"']?)" + _VALUE
        ),
        r"\1" + MASK,
    ),
)


def mask(text: str) -> str:
    """``text`` with every value that looks like a secret replaced by ``***``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _is_secret_key(key: str) -> bool:
    low = key.lower()
    return low in _SECRET_KEYS or low.endswith(_SECRET_SUFFIXES)


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with secrets masked: strings through ``mask``,
    containers walked (4 levels deep), anything else through its ``repr``."""
    if isinstance(value, str):
        return mask(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < 4:
        if isinstance(value, Mapping):
            return {
                str(k): MASK if _is_secret_key(str(k)) else _clean(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [_clean(v, depth + 1) for v in value]
    return mask(repr(value))


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secret keys and secret-looking values in every field of a line."""
    for key, value in event.items():
        if key.startswith("_"):  # ProcessorFormatter's own (_record, _from_structlog)
            continue
        event[key] = MASK if _is_secret_key(key) else _clean(value)
    return event
