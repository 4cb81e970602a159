"""The ``codes`` message of the command channel: codes put (as SHA-256 hashes) and dropped.

``{"id": ..., "type": "codes", "put": [{"key": 5, "rearload": false, "order_id":
46188, "sha256": "<hex>", "expires_at": "2026-12-06T10:00:00Z"}], "drop": ["<hex>"]}``
(``../shared/DESIGN.md``, "Pickup codes"). Bounded: ``MAX_PUT`` codes and ``MAX_DROP``
hashes a message; the store's own bound is ``HeldCodes.max_codes``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from agent.locker.errors import Invalid

MAX_PUT = 1000  # codes in one message
MAX_DROP = 1000  # hashes in one message
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


class CodePut(BaseModel):
    """One code: its cabinet ``key`` (the rear door when ``rearload``), the ``order_id``,
    the hex ``sha256`` of the order's ``open_code`` and when it stops opening."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
    rearload: Annotated[bool, Field(strict=True)] = False
    order_id: (
        Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
        | Annotated[str, Field(min_length=1, max_length=100)]
    ) = Field(union_mode="left_to_right")
    sha256: Sha256
    expires_at: AwareDatetime


class CodesMessage(BaseModel):
    """The body of a ``codes`` message, beside its ``id`` and ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    put: list[CodePut] = Field(default_factory=list, max_length=MAX_PUT)
    drop: list[Sha256] = Field(default_factory=list, max_length=MAX_DROP)


def parse_codes(data: Any) -> CodesMessage:
    """Validate a codes message (``id`` and ``type`` already taken out); raises ``Invalid``
    naming every field that is wrong (``put.3.sha256``)."""
    if not isinstance(data, dict):
        raise Invalid("the message must be a JSON object")
    try:
        return CodesMessage.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "body"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            errors.setdefault(loc, []).append(msg)
        first = next(iter(errors.items()))
        raise Invalid(f"{first[0]}: {first[1][0]}", errors) from None


def unix(at: datetime) -> float:
    """An aware datetime as unix seconds."""
    return at.timestamp()
