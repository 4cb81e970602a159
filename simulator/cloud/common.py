"""What the feedback endpoint and the command channel both do with what a client sent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


def json_or_text(text: str) -> Any:
    """``text`` parsed as JSON, or as it is when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def matches(predicate: Predicate, candidate: dict[str, Any]) -> bool:
    """Whether ``predicate`` holds; one that trips on a shape it did not expect does not."""
    with contextlib.suppress(KeyError, TypeError, IndexError, AttributeError):
        return bool(predicate(candidate))
    return False
