"""The food's time out of temperature, each round and across a restart: what the
service (``service.py``) asks of a unit's food clock.

- At start (``restore``): each unit's food clock as kept before the agent stopped,
  with what the outage must still be reckoned from (``outage.Downtime``: when it was
  saved, whether the food was out of temperature then, the temperature then), and
  the safety shut-offs that were latched (they hold across a restart: only a
  technician's reset clears them).
- Each round (``count``): time out of temperature counts while the cabinet is
  occupied (its item sensor, emptied once it has read empty for
  ``unit.EMPTY_AFTER_S``; or ``assume_occupied``: then a pickup, the front door
  opened, empties it) and its mode held, and while its temperature is past the line
  or unknown (a failed sensor proves nothing). Time the agent was down counts too,
  as far as evidence that survives the outage tells (``outage.Outage.settle``),
  judged at the first reading after start (not ``NOT_YET``); a cabinet emptied
  before that is settled takes what the outage cost away with its food.

Seconds are monotonic (``now``) unless named wall; nothing here raises but what the
records raise (``RecordsError`` at ``restore``, swallowed: the first write says it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import structlog

from agent.locker.door import DoorState
from agent.thermal.bands import Lines
from agent.thermal.latch import Latch
from agent.thermal.logbook import Logbook
from agent.thermal.outage import Downtime, Outage
from agent.thermal.records import Records, RecordsError
from agent.thermal.unit import Unit
from drivers.w1.trust import NOT_YET

log = structlog.get_logger(__name__)


def restore(units: Mapping[int, Unit], logbook: Logbook, records: Records) -> None:
    """Each unit's food clock, outage evidence and latches as kept before a restart;
    cabinets no longer thermal are passed over."""
    for key, (out_s, saved_at, unsafe, temp) in logbook.saved_clocks().items():
        if key in units:
            units[key].food.out_s = out_s
            units[key].down = Downtime(saved_at, unsafe, temp)
    with contextlib.suppress(RecordsError):  # unreadable: said by the first write
        for key, kept in records.latches().items():
            if key in units:
                units[key].restore([Latch(*latch) for latch in kept])


def count(now: float, unit: Unit, lines: Lines, outage: Outage, *, assume_occupied: bool) -> bool:
    """One round of ``unit``'s food clock at ``now``; whether its food's time ran out
    in this round (logged: the caller decides what else it means)."""
    was = unit.food.exceeded
    cabinet = unit.cabinet
    occupied = not unit.reads_empty  # one round read empty is not the food taken out
    if assume_occupied:  # no item sensors: a pickup empties the cabinet
        front_open = cabinet.front.seen != DoorState.CLOSED
        occupied = not (front_open and not unit.front_open)
        unit.front_open = front_open
    unsafe = unit.unsafe(lines)
    down = unit.down
    if down is not None and not occupied and down.found_unsafe is not None:
        unit.down = None  # emptied since: what the outage cost went with the food
    elif down is not None and unit.verdict.reason != NOT_YET:
        first = down.found_unsafe is None
        unit.food.out_s, settled = outage.settle(
            cabinet.key,
            down,
            found_unsafe=unsafe,
            found_c=unit.verdict.temperature_c,
            occupied=occupied,
            out_s=unit.food.out_s,
            limit_s=unit.food.limit_s,
        )
        if first and unsafe and unit.verdict.temperature_c is not None:
            unit.outage_start = down.saved_at  # its excursion began in the outage
        if settled:
            unit.down = None
    unit.food.step(now, occupied=occupied, unsafe=unsafe)
    if unit.food.exceeded and not was:
        log.error("thermal.food_time_exceeded", key=cabinet.key, out_s=unit.food.out_s)
        return True
    return False
