"""Chaos: the food locker run for simulated days with sensor, relay, clock, loop and
power faults drawn at random, on the simulator's physics and a fake clock. After every
round: no food went past its line without an alarm, no food spent longer past its
line than the code allows without ``food_time_exceeded``, and a cabinet its sensor
reads empty pages nobody for its band while coming up to it (ADR 0021: no food, no
out-of-band alarm until it has held its line once).

The truth is the plant's own temperature, apart from anything the agent believes. A
short run is in the default suite; the long ones are ``slow`` (``make test-slow``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

import pytest

from agent.locker.commands import parse_command
from agent.locker.errors import Conflict
from agent.thermal.alarms import OUT_OF_BAND, THERMAL_ALARMS

ROUND_S = 60.0
ALARM_WITHIN_S = 15 * 60.0  # past its line this long, the agent up: an alarm is raised
TIME_SLACK_S = 20 * 60.0  # rounds, graces and delays the agent may lag the truth by
MODES = {0: "heat", 1: "chill", 2: "freeze"}


@dataclass
class Truth:
    """What the food lived through, from the physics: seconds past its line since it
    was put in, and since when it is past now."""

    out_s: float = 0.0
    past_since: float | None = None


@dataclass
class Chaos:
    rig: object
    rnd: random.Random
    truth: dict[int, Truth] = field(default_factory=lambda: {k: Truth() for k in MODES})
    due: list[tuple[float, str, int]] = field(default_factory=list)  # (when, what, key)
    up_since: float = 0.0
    stalled_until: float | None = None
    clock_at: float | None = None  # when the network time comes, after a cut
    faults: list[str] = field(default_factory=list)
    emptied: dict[int, float] = field(default_factory=dict)  # key: since when empty

    # -- the world ---------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: the plant, the clock, the agent's round (or a failing one), the
        truth, the mends that are due."""
        rig = self.rig
        rig.plant.advance(ROUND_S, rig.outputs(), rig.doors)
        rig.now += ROUND_S
        self.observe(ROUND_S)
        thermal = rig.thermal
        if self.stalled_until is not None and rig.now < self.stalled_until:
            thermal.liveness.last_round = min(thermal.liveness.last_round, rig.now)
            thermal._round_failed()  # the round raised: outputs off, logged
            thermal.watch()
        else:
            self.stalled_until = None
            thermal.step(thermal._read_all())
        if self.clock_at is not None and rig.now >= self.clock_at:
            rig.wall_offset_s, self.clock_at = 0.0, None
            thermal.clock_known(True, "chaos: the network time")
        for when, what, key in sorted(self.due):
            if when <= rig.now:
                self.due.remove((when, what, key))
                await self.mend(what, key)
        await asyncio.sleep(0)  # the agent's own tasks (a disable) run

    def observe(self, dt_s: float) -> None:
        rig = self.rig
        lines = rig.config.thermal.alarm_lines()
        for key, mode in MODES.items():
            truth = self.truth[key]
            if not lines.safe(mode, rig.temp(key)):
                truth.out_s += dt_s
                truth.past_since = truth.past_since if truth.past_since is not None else rig.now
            else:
                truth.past_since = None

    def fault(self) -> None:
        """Something goes wrong, drawn at random, and is mended later."""
        rig, rnd = self.rig, self.rnd
        kind = rnd.choice(["sensor", "sensor", "relay", "relay", "cut", "stall", "room", "food"])
        key = rnd.choice(list(MODES))
        self.faults.append(f"{rig.now:.0f} {kind} {key}")
        if kind == "sensor":
            rig.plant.sensor(key).fault = rnd.choice(["missing", "crc", "power_on", "stuck"])
            self.later(rnd.uniform(60, 3 * 3600), "sensor", key)
        elif kind == "relay":
            body = rig.plant.body(key)
            if key == 0:
                choice = rnd.choice(["heater_failed", "stuck_heater"])
            else:
                choice = rnd.choice(["cooler_failed", "stuck_cooler"])
            if choice.startswith("stuck"):
                body.stuck_on = choice.removeprefix("stuck_")  # type: ignore[assignment]
            else:
                setattr(body, choice, True)
            self.later(rnd.uniform(600, 4 * 3600), "relay", key)
        elif kind == "cut":
            self.cut(rnd.uniform(300, 6 * 3600))
        elif kind == "stall":
            self.stalled_until = rig.now + rnd.uniform(60, 2 * 3600)
        elif kind == "room":
            rig.plant.room_c = rnd.uniform(10, 35)
        else:  # a pickup, and fresh food a round or some hours later
            rig.locker.item_sensed(key, False)
            self.emptied.setdefault(key, rig.now)
            self.later(rnd.choice([ROUND_S, rnd.uniform(600, 4 * 3600)]), "food", key)

    def later(self, after_s: float, what: str, key: int) -> None:
        self.due.append((self.rig.now + after_s, what, key))

    async def mend(self, what: str, key: int) -> None:
        rig = self.rig
        if what == "sensor":
            rig.plant.sensor(key).fault = None
        elif what == "relay":
            body = rig.plant.body(key)
            body.heater_failed = body.cooler_failed = False
            body.stuck_on = None
            self.later(self.rnd.uniform(600, 2 * 3600), "technician", key)
        elif what == "technician":  # comes, resets, enables what the over-limit disabled
            rig.thermal.reset(key, "chaos: a technician")
            if not rig.locker.cabinets[key].enabled:
                with contextlib.suppress(Conflict):
                    await rig.locker.execute(key, parse_command({"command": "enable"}))
        elif what == "food":
            rig.locker.item_sensed(key, True)
            self.emptied.pop(key, None)
            self.truth[key] = Truth()

    def cut(self, seconds: float) -> None:
        """The power goes: every relay off, no last save, the cabinets drift, the truth
        counts on; the Pi comes back with its clock wrong or right, and knows it or not."""
        rig, rnd = self.rig, self.rnd
        rig.thermal.outputs.all_off()
        rig.thermal.records.close()
        for _ in range(max(1, round(seconds / ROUND_S))):
            rig.plant.advance(ROUND_S, {}, rig.doors)
            rig.now += ROUND_S
            self.observe(ROUND_S)
        cut = rnd.choice(["right", "behind", "ahead", "right-unknown"])
        offset = {
            "right": 0.0,
            "right-unknown": 0.0,
            "behind": -(seconds + rnd.uniform(0, 3600)),  # fake-hwclock's last save
            "ahead": rnd.uniform(0, 7200),
        }[cut]
        rig.synced = cut == "right" or (cut == "behind" and rnd.random() < 0.3)
        rig.thermal = rig.new_thermal(offset)
        rig.thermal.outputs.all_off()
        if cut != "right":
            self.clock_at = rig.now + rnd.uniform(0, 2 * 3600)
        self.up_since = rig.now
        self.stalled_until = None

    # -- the invariant -----------------------------------------------------------------

    def check(self) -> None:
        rig = self.rig
        limit = rig.config.thermal.time_limit_s()
        for key in MODES:
            truth, cabinet = self.truth[key], rig.locker.cabinets[key]
            if not cabinet.occupied:
                clear_s = rig.config.thermal.alarm_clear_s + 2 * ROUND_S
                rising = not rig.thermal.units[key].reached
                if rising and rig.now - self.emptied.get(key, rig.now) > clear_s:
                    assert OUT_OF_BAND not in {a for a, _ in cabinet.alarms}, (
                        f"cabinet {key} empty since {self.emptied[key]:.0f}, paged for its band"
                    )
                continue
            said = {alarm for alarm, _ in cabinet.alarms} & THERMAL_ALARMS
            if truth.past_since is not None:
                past = rig.now - max(truth.past_since, self.up_since)
                assert past < ALARM_WITHIN_S or said, (
                    f"cabinet {key} past its line {past:.0f} s, no alarm: {self.faults[-5:]}"
                )
            if truth.out_s >= limit + TIME_SLACK_S:
                assert "food_time_exceeded" in said, (
                    f"cabinet {key}: {truth.out_s:.0f} s past its line, not said:"
                    f" {self.faults[-5:]}"
                )


async def play(rig_class, tmp_path, seed: int, days: float) -> Chaos:
    """``days`` of the food locker at ``seed``: a fault every few hours on average."""
    rig = rig_class(
        tmp_path,
        MODES,
        22.0,
        compressor_min_off_s=180,
        compressor_min_on_s=60,
        cutoff={"bus": "gpio", "pin": 26},
        log_every_s=300,
    )
    await rig.start()
    try:
        for key in MODES:
            rig.locker.item_sensed(key, True)
        chaos = Chaos(rig, random.Random(seed), up_since=rig.now)
        end = rig.now + days * 86400
        while rig.now < end:
            if chaos.rnd.random() < ROUND_S / (3 * 3600):
                chaos.fault()
            await chaos.tick()
            chaos.check()
        return chaos
    finally:
        await rig.close()


async def test_a_day_of_chaos_leaves_no_food_past_its_line_unsaid(rig_class, tmp_path):
    chaos = await play(rig_class, tmp_path, seed=18, days=1)
    assert len(chaos.faults) >= 3  # the day had its faults


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
async def test_weeks_of_chaos_leave_no_food_past_its_line_unsaid(rig_class, tmp_path, seed):
    chaos = await play(rig_class, tmp_path, seed=seed, days=7)
    assert len(chaos.faults) >= 20
