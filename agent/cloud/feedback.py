"""The v2 feedback body of ``POST /api/lockers/cabinet/status``, as the spec shapes it."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from agent import __version__

DoorStatus = Literal["open", "closed"]


class CabinetStatus(BaseModel):
    """One ``cabinets`` entry: the cabinet ``key`` and at least one door status.

    A status given as None is a door not known (the spec's ``nullable``) and is sent
    as ``null``; one left out is not part of this body. Both unknown is refused, as
    the cloud refuses it ("either this or rear_status is required")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: int
    front_status: DoorStatus | None = None
    rear_status: DoorStatus | None = None

    @model_validator(mode="after")
    def _one_status(self) -> CabinetStatus:
        if self.front_status is None and self.rear_status is None:
            raise ValueError("front_status or rear_status is required")
        return self


class LockerInfo(BaseModel):
    """``locker_info``: this controller's address and the agent's version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ip: str
    firmware: str


class Event(BaseModel):
    """``event``: what happened (``door_changed``, an alarm, ...) and, for some, where.

    The spec leaves ``event`` open beyond ``type``: board and bus events name their
    ``bus`` and ``board`` (or the bus's ``boards``); ``code_opened`` its ``order_id``,
    ``side`` and (after a power cut) ``confirmed``; ``reader_locked_out`` its ``reader``
    and ``locked_s``; a cabinet's alarm whose cabinet has no door known (so no entry in
    ``cabinets``) its ``key``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    bus: str | None = None
    board: int | None = None
    key: int | None = None
    boards: list[int] | None = None
    order_id: int | str | None = None
    side: str | None = None
    confirmed: bool | None = None
    reader: str | None = None
    locked_s: int | None = None


class FeedbackBody(BaseModel):
    """The whole POST body, as ``spec/synq-lockers-api.yaml`` shapes it.

    ``cabinets`` may be empty (the spec sets no minimum): a locker with no door known
    still tells its start, its heartbeat and its bus and board events (ADR 0019)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cabinets: list[CabinetStatus]
    locker_info: LockerInfo | None = None
    event: Event | None = None


def build_body(
    cabinets: Iterable[dict[str, Any]],
    event: str,
    info: LockerInfo,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate and serialise one POST body: a status left out of an entry stays out,
    one given as None (a door not known) is sent as ``null``.

    ``detail``: the event's fields beyond its type. Raises pydantic's ValidationError.
    """
    body = FeedbackBody(
        cabinets=[CabinetStatus.model_validate(c) for c in cabinets],
        locker_info=info,
        event=Event(type=event, **(detail or {})),
    )
    out = body.model_dump(exclude_none=True)
    out["cabinets"] = [c.model_dump(exclude_unset=True) for c in body.cabinets]
    return out


def local_ip() -> str:
    """The address this controller uses on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks a route
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def locker_info() -> LockerInfo:
    """This controller's ``locker_info`` now (the address may change with DHCP)."""
    return LockerInfo(ip=local_ip(), firmware=__version__)
