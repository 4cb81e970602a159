"""What every driver's config section shares: the strict base model and the name rules.

Each driver owns the models of its own sections, next to the code that uses them
(``drivers/kerong/config.py``, ``drivers/gpio/config.py``), as Klipper's modules read
their own sections and zigpy-znp keeps its schema in ``config.py``. The agent composes
them into its ``Config``; nothing here knows about the agent.

The models are pydantic v2 and follow Klipper's typed getters: every value is typed
(TOML is typed, so ``"1"`` for an integer is a mistake, not a conversion) and bounded,
and an unknown key is an error. Field types carry their own validators (``Annotated``
with ``AfterValidator``), so one field can be validated on its own, with exactly the
rules its model applies: the agent's cross checks use the valid fields of an entry
that is invalid as a whole.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_MAX = 64
# Serial speeds a driver's config takes (bit/s): the standard rates USB adapters,
# lock boards and scanners use.
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]
"""Longest bus or supply name, in characters."""


_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


class StrictModel(BaseModel):
    """Base of every config model: unknown keys refused, frozen, strictly typed.

    ``hide_input_in_errors``: a ``ValidationError`` logged by someone else must not
    carry the value (it may be a secret).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)


def check_name(value: str) -> str:
    """A bus or supply name: letters, digits, ``-``, ``_`` and ``.`` only.

    Returns the name unchanged; raises ``ValueError`` (the config line's message)
    otherwise. The length (1 to ``NAME_MAX``) is checked by the field types below.
    """
    if not _NAME_RE.fullmatch(value):
        raise ValueError("use only letters, digits, '-', '_' and '.'")
    return value


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(check_name)]
"""A name a bus or a supply is declared with (``[[buses]] name``, ``supply``)."""


NameRef = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
"""A reference to a declared bus (a door's ``bus``): checked against the declared names
by the agent's cross checks, which say which names exist."""
