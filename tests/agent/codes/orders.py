"""The cloud's ``codes`` entries as the pickup-code tests provision them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

NOW = 1_800_000_000.0  # the tests' wall clock, UNIX seconds


def put(
    code: str, key: int = 1, order: int = 46188, expires: float = NOW + 3600, **kw: Any
) -> dict[str, Any]:
    """A ``put`` entry for ``code`` (hashed) on cabinet ``key``, expiring at ``expires``."""
    at = datetime.fromtimestamp(expires, UTC).isoformat()
    sha = hashlib.sha256(code.encode()).hexdigest()
    return {"key": key, "order_id": order, "sha256": sha, "expires_at": at, **kw}
