"""Times in and out of the records: UNIX seconds as ISO 8601 UTC, and the ``since`` a
person writes (``2026-11-29T10:00:00Z``) as UNIX seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(t: float) -> str:
    """UNIX seconds as ISO 8601 UTC with a ``Z``, to the second."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(text: str) -> float:
    """An ISO 8601 time (``2026-11-29T10:00:00Z``; no zone means UTC) as UNIX seconds.
    Raises ``ValueError`` naming the expected form."""
    hint = "since: an ISO 8601 time such as 2026-11-29T10:00:00Z"
    if " " in text.strip():  # a "+01:00" sent unencoded in a URL arrives as a space
        hint += " (in a URL, write + as %2B, or use Z)"
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(hint) from None
