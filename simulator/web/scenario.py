"""Scenarios: a TOML file of timed steps, played on a simulation and checked as it goes.

```toml
title = "A delivery through the rear door, a pickup through the front"
locker = "kerong"                                # the embedded locker it runs on
steps = [
  { at = 0.0, cloud = "open", key = 2, rear = true },
  { at = 0.5, person = "put_item", key = 2 },
  { expect = "feedback", key = 2, rear_status = "open" },
]
[config.locker]                                  # optional: merged into the locker's config
confirm_s = 0.5
```

A food locker's scenario may also say ``thermal_speed = 500`` (simulated seconds of
the cabinets' heat per real second) and ``start_c = { 4 = -20.0 }`` (a cabinet's
temperature at the start: it has been running).

One step a line. ``at``: seconds from the start, when the step runs (a step
never runs before the one above it; no ``at``: right after it). A step names
who acts and the verb (``cloud``, ``person``, ``fate``: see
:mod:`simulator.web.actions`) with the verb's fields, or an expectation, which
waits up to ``within`` seconds (default 10) until it holds:

- ``expect = "cabinet"``: the agent's cabinet ``key``, asked through its local
  API, has the given ``state``, ``rear_load_status``, ``enabled``, ``size``,
  ``occupied``, ``thermal_mode``, an active ``alarm`` or no active ``no_alarm``,
  a ``temperature_below`` or ``temperature_above`` (degrees C, a reading needed),
  and of its ``thermal`` object ``heating``, ``cooling`` or ``sensor``;
- ``expect = "feedback"``: the fake cloud accepted, since the scenario began, an
  entry for cabinet ``key`` with the given ``front_status`` / ``rear_status``;
- ``expect = "event"``: it accepted a body whose ``event.type`` is ``type`` (and
  whose ``event.order_id`` is ``order_id``, when given);
- ``expect = "outbox_empty"``: the agent's ``/healthz`` shows nothing pending.

A cloud step expects the agent to accept the command (``ok = false``: to refuse
it). A scenario fails at its first step that fails. Bad files are a
:class:`ScenarioError` naming the step and field.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from simulator.food import SPEED
from simulator.run import LOCKERS, Simulation
from simulator.web.actions import WHO, Actions, StepError, verbs

SCENARIO_DIR = Path(__file__).parent.parent / "scenarios"
WITHIN_S = 10.0
POLL_S = 0.05
EXPECTATIONS = ("cabinet", "feedback", "event", "outbox_empty")
CABINET_FIELDS = ("state", "rear_load_status", "enabled", "size", "occupied", "thermal_mode")
THERMAL_FIELDS = ("heating", "cooling", "sensor")
STEP_FIELDS = frozenset(
    {"at", "within", "ok", "key", "side", "rear", "delay", "size", "mode", "reason", "via"}
    | {"bus", "board", "p", "status", "delay_s", "type", "alarm", "no_alarm"}
    | {"fault", "unit", "temperature_c", "temperature_below", "temperature_above"}
    | {"code", "reader", "order_id"}
    | {"front_status", "rear_status", *CABINET_FIELDS, *THERMAL_FIELDS}
)
TOP_KEYS = frozenset({"title", "locker", "steps", "config", "thermal_speed", "start_c"})

Report = Callable[[dict[str, Any]], None]


class ScenarioError(ValueError):
    """A scenario file that cannot be played as written."""


@dataclass(slots=True)
class Scenario:
    """A loaded scenario: ``steps`` as written, each with ``who`` and ``do`` added."""

    name: str
    title: str
    locker: str
    steps: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    thermal_speed: float | None = None  # None: the simulation's default
    start_c: dict[int, float] = field(default_factory=dict)

    def adjust(self, data: dict[str, Any]) -> None:
        """Merge the scenario's ``[config]`` tables into a raw config dict."""
        _merge(data, self.config)


def names(directory: Path = SCENARIO_DIR) -> list[str]:
    """The scenarios shipped, by file name without ``.toml``."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def load(name: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """The scenario ``name`` (a shipped one) or at path ``name`` (ending ``.toml``).

    ScenarioError for a file that is missing, not TOML, or has a bad step."""
    path = Path(name) if name.endswith(".toml") else directory / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(names(directory))
        raise ScenarioError(f"no scenario {name!r} (there are: {known})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ScenarioError(f"{path}: {err}") from None
    locker = data.get("locker", "kerong")
    if locker not in LOCKERS:
        raise ScenarioError(f"{path}: locker: one of {', '.join(LOCKERS)}, not {locker!r}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ScenarioError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{path}: steps: a list of steps, one a line")
    steps = [_step(path, i, s) for i, s in enumerate(raw_steps, 1)]
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ScenarioError(f"{path}: config: tables of config keys")
    title = str(data.get("title", path.stem))
    speed, start_c = _thermal(path, data)
    return Scenario(path.stem, title, locker, steps, config, speed, start_c)


def _thermal(path: Path, data: dict[str, Any]) -> tuple[float | None, dict[int, float]]:
    """``thermal_speed`` and ``start_c`` as written, checked."""
    speed = data.get("thermal_speed")
    if speed is not None and (
        isinstance(speed, bool) or not isinstance(speed, int | float) or not 0 < speed <= 10_000
    ):
        raise ScenarioError(f"{path}: thermal_speed: more than 0, at most 10000, not {speed!r}")
    raw = data.get("start_c", {})
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: start_c: a table of cabinet key = degrees C")
    start_c = {}
    for key, value in raw.items():
        good = not isinstance(value, bool) and isinstance(value, int | float)
        if not key.isdigit() or not good or not -40 <= value <= 120:
            raise ScenarioError(f"{path}: start_c: {key} = {value!r}: a key = -40..120 C")
        start_c[int(key)] = float(value)
    return (None if speed is None else float(speed)), start_c


def _step(path: Path, number: int, raw: Any) -> dict[str, Any]:
    where = f"{path}: step {number}"
    if not isinstance(raw, dict):
        raise ScenarioError(f'{where}: a table like {{ at = 1.0, cloud = "open", key = 5 }}')
    kinds = [k for k in (*WHO, "expect") if k in raw]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: exactly one of cloud, person, fate or expect")
    who = kinds[0]
    verb = raw[who]
    allowed = EXPECTATIONS if who == "expect" else verbs()[who]
    if verb not in allowed:
        raise ScenarioError(f"{where}: {who} = one of {', '.join(allowed)}, not {verb!r}")
    unknown = set(raw) - STEP_FIELDS - {who}
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for name in ("at", "within"):
        value = raw.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ScenarioError(f"{where}: {name}: seconds, 0 or more, not {value!r}")
    step = {k: v for k, v in raw.items() if k != who}
    return {"who": who, "do": verb, **step, "text": describe(who, verb, step)}


def describe(who: str, verb: str, step: dict[str, Any]) -> str:
    """A step as one readable line: ``cloud open key=2 rear=true``."""
    fields = " ".join(f"{k}={_show(v)}" for k, v in step.items() if k not in ("at", "text"))
    return f"{who} {verb} {fields}".strip()


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


async def play(scenario: Scenario, sim: Simulation, report: Report | None = None) -> bool:
    """Play ``scenario`` on the started ``sim``; True when every step held.

    ``report`` gets one dict per step: ``{"t": seconds since start, "step": text,
    "ok": bool, "detail": str}``. Stops at the first step that fails."""
    actions = Actions(sim)
    start = time.monotonic()
    seen = len(sim.cloud.received)
    for step in scenario.steps:
        wait_s = start + float(step.get("at", 0)) - time.monotonic()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        try:
            ok, detail = await _run_step(step, actions, seen)
        except StepError as err:
            ok, detail = False, str(err)
        if report is not None:
            t = round(time.monotonic() - start, 2)
            report({"t": t, "step": step["text"], "ok": ok, "detail": detail})
        if not ok:
            return False
    return True


async def _run_step(step: dict[str, Any], actions: Actions, seen: int) -> tuple[bool, str]:
    if step["who"] != "expect":
        result = await actions.run(step)
        if step["who"] != "cloud":
            return True, ""
        want = bool(step.get("ok", True))
        got = bool(result.get("ok"))
        detail = "" if got else f"refused: {result.get('error')}"
        return got == want, detail or ("" if want else "accepted, refusal expected")
    check = _CHECKS[step["do"]]
    deadline = time.monotonic() + float(step.get("within", WITHIN_S))
    while True:
        held, detail = await check(step, actions.sim, seen)
        if held or time.monotonic() >= deadline:
            return held, detail
        await asyncio.sleep(POLL_S)


async def _agent_get(sim: Simulation, path: str) -> Any:
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(sim.api_url + path, headers=headers) as resp,
    ):
        return await resp.json()


async def _cabinet(step: dict[str, Any], sim: Simulation, seen: int) -> tuple[bool, str]:
    cabinet = await _agent_get(sim, f"/api/lockers/cabinets/{int(step['key'])}")
    alarms = {a["type"] for a in cabinet.get("alarms", [])}
    wrong = [
        f"{k} is {cabinet.get(k)!r}, not {step[k]!r}"
        for k in CABINET_FIELDS
        if k in step and cabinet.get(k) != step[k]
    ]
    wrong += _thermal_wrong(step, cabinet)
    if "alarm" in step and step["alarm"] not in alarms:
        wrong.append(f"alarms are {sorted(alarms)}")
    if "no_alarm" in step and step["no_alarm"] in alarms:
        wrong.append(f"{step['no_alarm']} is still active")
    return not wrong, "; ".join(wrong)


def _thermal_wrong(step: dict[str, Any], cabinet: dict[str, Any]) -> list[str]:
    """What of the step's thermal expectations the cabinet object does not meet."""
    temp, thermal = cabinet.get("temperature_c"), cabinet.get("thermal") or {}
    wrong = [
        f"thermal.{k} is {thermal.get(k)!r}, not {step[k]!r}"
        for k in THERMAL_FIELDS
        if k in step and thermal.get(k) != step[k]
    ]
    for k, below in (("temperature_below", True), ("temperature_above", False)):
        if k in step and (temp is None or (temp >= step[k] if below else temp <= step[k])):
            wrong.append(f"temperature_c is {temp}, not {'below' if below else 'above'} {step[k]}")
    return wrong


async def _feedback(step: dict[str, Any], sim: Simulation, seen: int) -> tuple[bool, str]:
    want = {k: step[k] for k in ("front_status", "rear_status") if k in step}
    entries = [
        c
        for record in sim.cloud.received[seen:]
        for c in record["body"]["cabinets"]
        if c.get("key") == step.get("key")
    ]
    held = any(all(c.get(k) == v for k, v in want.items()) for c in entries)
    return held, "" if held else f"cabinet {step.get('key')} entries received: {entries[-3:]}"


async def _event(step: dict[str, Any], sim: Simulation, seen: int) -> tuple[bool, str]:
    events = [r["body"].get("event") or {} for r in sim.cloud.received[seen:]]
    types = [e.get("type") for e in events]
    held = any(
        e.get("type") == step.get("type")
        and ("order_id" not in step or e.get("order_id") == step["order_id"])
        for e in events
    )
    return held, "" if held else f"events received: {types[-5:]}"


async def _outbox_empty(step: dict[str, Any], sim: Simulation, seen: int) -> tuple[bool, str]:
    health = await _agent_get(sim, "/healthz")
    pending = health.get("outbox", {}).get("pending")
    return pending == 0, f"outbox pending: {pending}"


_CHECKS = {
    "cabinet": _cabinet,
    "feedback": _feedback,
    "event": _event,
    "outbox_empty": _outbox_empty,
}


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


async def run_scenario(name: str, report: Report | None = None) -> bool:
    """Start the scenario's locker (its ``[config]`` merged), play it, stop; True if it held.

    ScenarioError for a bad file; the agent's ConfigError for a bad ``[config]``."""
    scenario = load(name)
    sim = Simulation(
        locker=scenario.locker,  # type: ignore[arg-type]
        adjust=scenario.adjust,
        thermal_speed=scenario.thermal_speed or SPEED,
        thermal_start_c=scenario.start_c,
    )
    try:
        await sim.start()
        return await play(scenario, sim, report)
    finally:
        await sim.close()
