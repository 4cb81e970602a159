"""A touchless locker on GPIO, played from outside through gpiozero's mock pins.

What it plays, per cabinet of the config whose parts are wired to GPIO (the
physics of each part is in :mod:`simulator.doors`):

- a motorised front door with closed and open end switches and a light beam:
  it moves while exactly one of its motor outputs is energised, and something
  in the doorway physically stops it closing;
- a latch door (a rear-load door, usually): a pulse of its lock relay releases
  the latch and the door springs open, unless the latch is jammed;
- an item sensor, and an RGB indicator read back from its three output pins.

The agent is not told any of this: it creates its gpiozero devices on the same
``MockFactory`` in its own ``start()``, drives the outputs and reads the inputs,
exactly as on a Raspberry Pi. This class steps the doors every 10 ms (relay
pulses are counted on the pin, so none is missed) and sets each input to what
its switch, beam or sensor sees; :mod:`simulator.mock_pins` turns that into line
levels and gives the factory with every BCM GPIO 0-53 (:func:`mock_factory`).

Start it *before* the agent, on a factory nothing has used yet: ``start()``
claims the configured pin numbers and sets every input to the level of a quiet
locker (doors shut, beams clear, no items), so the agent's first read is
consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from agent.config import Config, GpioDoorWiring
from simulator.doors import RGB, Cabinet, Door, Motor, Side
from simulator.mock_pins import WorldPins, mock_factory

if TYPE_CHECKING:
    from gpiozero.pins.mock import MockFactory

log = structlog.get_logger(__name__)

ChangeCallback = Callable[[int], None]

TICK_S = 0.01  # how often the outputs are looked at and the doors moved
MAX_STEP_S = 0.05  # the most a door moves in one step, in seconds of travel
FORCED_POSITION = 0.2  # how far a forced door opens: off the closed switch, not to the end


class TouchlessLocker:
    """The GPIO side of ``config``'s cabinets, on the mock pins of ``factory``.

    Person actions (``push_open``, ``shut_front``, ``shut_rear``,
    ``block_beam``, ``set_item``) and faults (``motor_broken``, ``jam_latch``)
    act at once; motors move the doors from the loop task. ``on_change(key)``
    is called whenever anything a web view shows of that cabinet changes;
    ``auto_shut_rear_after_s`` (None: never) has a simulated staff member shut a
    rear door that long after it opened. Raises ValueError for ``travel_s`` <= 0,
    a config with nothing on GPIO (thermal relays alone leave it no cabinet to
    play, which is fine) or a pin the factory lacks, TypeError when
    ``factory`` is not a ``MockFactory``.
    """

    __slots__ = (
        "_auto_shut",
        "_cabinets",
        "_last_tick",
        "_levels_set",
        "_loop",
        "_pins",
        "_task",
        "_views",
        "auto_shut_rear_after_s",
        "config",
        "factory",
        "on_change",
        "travel_s",
    )

    def __init__(self, config: Config, factory: MockFactory, *, travel_s: float = 1.5) -> None:
        if travel_s <= 0:
            raise ValueError(f"travel_s must be > 0, not {travel_s}")
        self._pins = WorldPins(factory)
        self.config = config
        self.factory = factory
        self.travel_s = travel_s
        self.auto_shut_rear_after_s: float | None = None
        self.on_change: ChangeCallback | None = None
        self._cabinets = self._build()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_tick = 0.0
        self._views: dict[int, dict[str, Any]] = {}
        self._levels_set = False  # the inputs have been driven (start() ran once)
        self._auto_shut: dict[int, asyncio.TimerHandle] = {}  # rear doors, by cabinet key

    @classmethod
    def from_config(
        cls, config: Config, factory: MockFactory | None = None, *, travel_s: float = 1.5
    ) -> TouchlessLocker:
        """The locker on ``factory``, or on a fresh :func:`mock_factory` (see ``.factory``)."""
        return cls(config, factory if factory is not None else mock_factory(), travel_s=travel_s)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Set a quiet locker's input levels, start watching. Before the agent; idempotent."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        for cabinet in self._cabinets.values():
            for door in cabinet.doors.values():
                door.pulses_seen = door.lock.edges if door.lock is not None else 0
                door.update_inputs()
            if cabinet.item is not None:
                cabinet.item.set(cabinet.item_present)
        self._levels_set = True
        self._views = {key: cab.view() for key, cab in self._cabinets.items()}
        self._last_tick = self._loop.time()
        self._task = self._loop.create_task(self._run(), name="touchless-locker")
        log.info(
            "touchless locker started",
            cabinets=list(self._cabinets),
            pins=self._pins.claimed,
            travel_s=self.travel_s,
        )

    async def close(self) -> None:
        """Stop watching; the inputs keep their last levels. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for handle in self._auto_shut.values():
            handle.cancel()
        self._auto_shut.clear()
        log.info("touchless locker closed")

    @property
    def keys(self) -> list[int]:
        """The cabinets this simulator plays."""
        return list(self._cabinets)

    # -- people and faults (ValueError for a cabinet or part that is not there) --

    def push_open(self, key: int) -> None:
        """Someone forces the front door: it leaves its closed switch, not fully open."""
        door = self._door(key, "front")
        if door.position < FORCED_POSITION:
            log.info("simulated person forces door", key=key, side="front")
            door.position = FORCED_POSITION
            self._touched(door)

    def shut_front(self, key: int) -> None:
        """Someone pushes the front door shut."""
        self._shut(self._door(key, "front"))

    def shut_rear(self, key: int) -> None:
        """Staff shut the rear door; the latch catches it."""
        self._shut(self._door(key, "rear"))

    def block_beam(self, key: int, on: bool = True) -> None:
        """Something in the front doorway (a hand, a bag): a closing door stops."""
        door = self._door(key, "front")
        if door.beam is None:
            raise ValueError(f"cabinet {key} front door has no light beam")
        if door.blocked != on:
            log.info("simulated beam", key=key, blocked=on)
            door.blocked = on
            self._touched(door)

    def set_item(self, key: int, present: bool) -> None:
        """An item is put in (True) or taken out (False)."""
        cabinet = self._cabinet(key)
        if cabinet.item is None:
            raise ValueError(f"cabinet {key} has no item sensor")
        if cabinet.item_present != present:
            cabinet.item_present = present
            cabinet.item.set(present)
            self._notify(key)

    def motor_broken(self, key: int, on: bool = True, *, side: Side = "front") -> None:
        """The door motor runs but the door does not move: no end switch is ever reached."""
        door = self._door(key, side)
        if not door.motorised:
            raise ValueError(f"cabinet {key} {side} door has no motor")
        door.motor_broken = on
        log.info("simulated motor fault", key=key, side=side, broken=on)
        self._notify(key)

    def jam_latch(self, key: int, on: bool = True, *, side: Side = "rear") -> None:
        """The latch does not let go: a lock pulse leaves the door shut."""
        door = self._door(key, side)
        if door.lock is None:
            raise ValueError(f"cabinet {key} {side} door has no lock relay")
        door.jammed = on
        log.info("simulated latch jam", key=key, side=side, jammed=on)
        self._notify(key)

    # -- observation (ValueError for a cabinet or part that is not there) --------

    def position(self, key: int, side: Side = "front") -> float:
        """0.0 shut .. 1.0 fully open."""
        return self._door(key, side).position

    def rear_open(self, key: int) -> bool:
        """Whether the rear door is off its closed switch."""
        return not self._door(key, "rear").shut

    def motor(self, key: int, side: Side = "front") -> Motor | None:
        """What the motor outputs do now: "opening", "closing", "fault" (both) or None."""
        return self._door(key, side).motor()

    def lock_pulses(self, key: int, side: Side = "rear") -> int:
        """How many lock pulses the door's relay has had (0 without a relay)."""
        door = self._door(key, side)
        # Also the pulses the loop has not stepped over yet (without taking them).
        return door.pulses + door.pending_pulses()

    def led(self, key: int) -> RGB:
        """The indicator's colour now, (r, g, b) each 0-1, polarity applied."""
        color = self._cabinet(key).color()
        if color is None:
            raise ValueError(f"cabinet {key} has no indicator")
        return color

    def snapshot(self) -> dict[str, Any]:
        """Every simulated cabinet, JSON-able, for the web view."""
        return {
            "travel_s": self.travel_s,
            "auto_shut_rear_after_s": self.auto_shut_rear_after_s,
            "running": self._task is not None,
            "cabinets": [cab.view() for cab in self._cabinets.values()],
        }

    # -- internals -------------------------------------------------------------

    def _build(self) -> dict[int, Cabinet]:
        """The cabinets the config puts on GPIO, their pins claimed on the factory."""
        pins, cabinets = self._pins, {}
        for cab in self.config.cabinets:
            cabinet = Cabinet(cab.key)
            for side in ("front", "rear"):
                wiring = getattr(cab, side)
                if not isinstance(wiring, GpioDoorWiring):
                    continue
                door = Door(cab.key, side, pins.input(wiring.switch))
                if wiring.open_switch is not None:
                    door.open_switch = pins.input(wiring.open_switch)
                if wiring.beam is not None:
                    door.beam = pins.input(wiring.beam)
                if wiring.lock is not None:
                    door.lock = pins.output(wiring.lock)
                if wiring.motor_open is not None and wiring.motor_close is not None:
                    door.motor_open = pins.output(wiring.motor_open)
                    door.motor_close = pins.output(wiring.motor_close)
                cabinet.doors[side] = door
            if cab.item is not None:
                cabinet.item = pins.input(cab.item.pin)
            if (ind := cab.indicator) is not None:
                cabinet.led = (pins.output(ind.red), pins.output(ind.green), pins.output(ind.blue))
            if cabinet.doors or cabinet.item is not None or cabinet.led is not None:
                cabinets[cab.key] = cabinet
        thermal = any(c.thermal is not None and c.thermal.bus for c in self.config.cabinets)
        if not cabinets and not thermal:  # a GPIO bus of thermal relays alone has no doors
            raise ValueError("no cabinet of this config has anything on GPIO")
        return cabinets

    def _cabinet(self, key: int) -> Cabinet:
        try:
            return self._cabinets[key]
        except KeyError:
            raise ValueError(f"cabinet {key} is not simulated here") from None

    def _door(self, key: int, side: Side) -> Door:
        door = self._cabinet(key).doors.get(side)
        if door is None:
            raise ValueError(f"cabinet {key} has no {side} door on GPIO")
        return door

    def _shut(self, door: Door) -> None:
        if door.position > 0.0:
            log.info("simulated person shuts door", key=door.key, side=door.side)
            door.position = 0.0
            self._touched(door)

    def _touched(self, door: Door) -> None:
        """A door's physical state changed: inputs, auto-shut, observers."""
        if self._levels_set:
            door.update_inputs()
        self._schedule_auto_shut(door)
        self._notify(door.key)

    def _schedule_auto_shut(self, door: Door) -> None:
        """A simulated staff member shuts an open rear door after ``auto_shut_rear_after_s``."""
        if door.side != "rear":
            return
        if door.shut:
            handle = self._auto_shut.pop(door.key, None)
            if handle is not None:
                handle.cancel()
            return
        delay_s, loop = self.auto_shut_rear_after_s, self._loop
        running = loop is not None and self._task is not None
        if door.key not in self._auto_shut and delay_s is not None and running:
            self._auto_shut[door.key] = loop.call_later(delay_s, self._auto_shut_now, door)

    def _auto_shut_now(self, door: Door) -> None:
        self._auto_shut.pop(door.key, None)
        self._shut(door)

    def _notify(self, key: int) -> None:
        view = self._cabinets[key].view()
        if self._views.get(key) == view:
            return
        self._views[key] = view
        if self.on_change is not None:
            try:
                self.on_change(key)
            except Exception:
                # An observer's bug must not stop the doors.
                log.exception("on_change observer failed", key=key)

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(TICK_S)
            now = self._loop.time()
            # A stalled loop (a busy test machine) slows the doors down instead of
            # making them jump past a switch or a beam in one step.
            dt_s, self._last_tick = min(now - self._last_tick, MAX_STEP_S), now
            try:
                self._step(dt_s)
            except Exception:
                log.exception("touchless locker step failed")

    def _step(self, dt_s: float) -> None:
        for key, cabinet in self._cabinets.items():
            for door in cabinet.doors.values():
                before = door.position
                if door.take_pulses() and not door.motorised:
                    door.release()
                if door.motorised:
                    door.move(dt_s, self.travel_s)
                if door.position != before:
                    door.update_inputs()
                    self._schedule_auto_shut(door)
            self._notify(key)
