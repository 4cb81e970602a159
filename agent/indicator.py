"""What a cabinet's RGB indicator shows, with the meanings SYNQ lockers use.

Patterns (the GPIO driver renders them): ``ready`` multi-colour cycling,
``about_to_open`` blue, ``open`` green (open or opening), ``closing`` flashing
yellow then red, ``cloud_unreachable`` flashing red, ``no_internet`` dull red,
``disabled`` for a disabled cabinet. A door in motion outranks the link state:
the customer in front of the door needs to know what the door does.
"""

from __future__ import annotations

from typing import Literal

from agent.cabinet import Cabinet, DoorState

Link = Literal["ok", "cloud_unreachable", "no_internet"]


def pattern_for(cabinet: Cabinet, link: Link) -> str:
    if not cabinet.enabled:
        return "disabled"
    door = cabinet.front
    if door.announcing:
        return "about_to_open"
    state = door.state
    if state in (DoorState.OPENING, DoorState.OPEN):
        return "open"
    if state == DoorState.CLOSING:
        return "closing"
    if link != "ok":
        return link
    return "ready"
