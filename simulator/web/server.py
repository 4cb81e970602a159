"""The web view: one page that draws the simulated locker live and acts on it.

Served on loopback by the simulator beside the agent and the fake cloud:

| route | does |
| --- | --- |
| ``GET /`` | the page (``static/``: plain HTML, CSS and JS, nothing from the internet) |
| ``GET /_sim/state`` | everything the page draws, JSON (shape: :meth:`WebView.state`) |
| ``GET /_sim/live`` | a websocket that sends that state each time it changes |
| ``POST /_sim/act`` | one step, ``{"who", "do", ...}`` (:mod:`simulator.web.actions`) |
| ``GET /_sim/scenarios`` | the scenarios shipped: ``[{"name", "title", "locker", "own"}]`` |
| ``POST /_sim/scenarios/{name}`` | replay one on this locker; progress shows in the state |
| ``GET /_sim/temperatures/{key}`` | a thermal cabinet's chart data (:mod:`simulator.web.charts`) |

A scenario with its ``own`` thermal physics (``thermal_speed``, ``start_c``) is
played from the command line only (``simulate --scenario NAME``).

The agent's side of the picture is asked of the agent itself, through its local
API with its token (``/api/lockers/cabinets``, ``/healthz``); the hardware's and
the cloud's sides are read off the emulators and the fake cloud. As the agent's
API does, the page's endpoints serve only loopback ``Host`` names, and requests
that act (and the websocket) are refused from a foreign ``Origin`` or a
cross-site fetch, and need ``Content-Type: application/json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from simulator.run import Simulation
from simulator.web import charts
from simulator.web import scenario as scenarios
from simulator.web.actions import Actions, StepError, verbs
from simulator.web.disk import SmallDisk

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
TICK_S = 0.1  # how often the state is looked at while a page is watching
FEEDBACK_SHOWN = 40  # the newest feedback bodies the page lists
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
AGENT_TIMEOUT_S = 2.0


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Loopback Host only; acting requests and the websocket from this page only."""
    host = request.headers.get("Host", "")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if name.lower() not in LOCAL_NAMES:
        return _refuse(421, "this page is served on loopback names only")
    acts = request.method not in ("GET", "HEAD")
    if acts or request.path == "/_sim/live":
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{host}".lower():
            return _refuse(403, "actions are taken from this page only (foreign Origin)")
        if request.headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin"):
            return _refuse(403, "actions are taken from this page only (cross-site)")
    if acts and request.content_type != "application/json":
        return _refuse(415, "send the step as application/json")
    return await handler(request)


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class WebView:
    """The page and its endpoints for ``sim`` (started) on ``host``:``port`` (0: any);
    ``disk`` and ``disk_why_not`` as for :class:`Actions`."""

    def __init__(
        self,
        sim: Simulation,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        disk: SmallDisk | None = None,
        disk_why_not: str | None = None,
    ) -> None:
        self.sim = sim
        self.actions = Actions(sim, disk, disk_why_not)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._clients: set[web.WebSocketResponse] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._scenario: dict[str, Any] = {"name": None, "running": False, "ok": None, "log": []}
        self._play: asyncio.Task[None] | None = None
        self._cloud_seen: tuple[bool, float] | None = None  # (listening, since: UNIX s)
        self.url = ""

    async def start(self) -> None:
        """Listen; :attr:`url` is the page's address. OSError when the port is taken."""
        app = web.Application(middlewares=[_guard])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/_sim/state", self._state)
        app.router.add_get("/_sim/live", self._live)
        app.router.add_post("/_sim/act", self._act)
        app.router.add_get("/_sim/scenarios", self._scenarios)
        app.router.add_post("/_sim/scenarios/{name}", self._replay)
        app.router.add_get("/_sim/temperatures/{key}", self._temperatures)
        app.on_shutdown.append(self._close_clients)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/"
        timeout = aiohttp.ClientTimeout(total=AGENT_TIMEOUT_S)
        headers = {"Authorization": f"Bearer {self.sim.token}"}
        self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        log.info("web view started", url=self.url)

    async def close(self) -> None:
        """Stop serving, a replay and the ticker. Idempotent."""
        for task in (self._play, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._play = self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the state the page draws ------------------------------------------------

    async def state(self) -> dict[str, Any]:
        """``{"locker", "kind", "cabinets", "agent", "buses", "gpio", "thermal", "cloud", "disk",
        "scenario", "verbs"}``.

        ``cabinets``: the agent's cabinet objects (``unknown`` states when it does
        not answer), each with ``hardware``: the physical doors by side, the LED, the
        thermal ``modes`` it can hold and whether it has a ``rear`` door.
        ``agent``: its ``/healthz`` answer, or ``{"status": "unreachable"}``.
        ``thermal``: the food locker's room and speed (:meth:`FoodPlant.view`), or None.
        ``cloud.feedback``: the newest bodies first, ``{"received_at", "body"}``;
        ``cloud.since``: when it last went up or down (UNIX seconds, as seen here).
        """
        data = self.sim.config_data
        agent_cabinets = await self._agent_json("/api/lockers/cabinets")
        health = await self._agent_json("/healthz")
        by_key = {c["key"]: c for c in agent_cabinets} if isinstance(agent_cabinets, list) else {}
        gpio = self._gpio_views()
        cabinets = []
        for cab in data["cabinets"]:
            known = by_key.get(cab["key"]) or {
                "key": cab["key"],
                "state": "unknown",
                "size": cab.get("size"),
                "rear_load_status": "unknown" if cab.get("rear") else None,
                "alarms": [],
            }
            hardware = self._hardware(cab, gpio.get(cab["key"]))
            hardware.update(charts.abilities(self._config(), cab))
            cabinets.append({**known, "hardware": hardware})
        cloud = self.sim.cloud
        if self._cloud_seen is None or self._cloud_seen[0] != cloud.listening:
            self._cloud_seen = (cloud.listening, time.time())
        return {
            "locker": (data.get("locker") or {}).get("name") or "Simulated locker",
            "kind": self.sim.locker,
            "cabinets": cabinets,
            "agent": health if isinstance(health, dict) else {"status": "unreachable"},
            "buses": [
                {"name": name, "port": e.port, **_bus_view(e.bank.snapshot())}
                for name, e in self.sim.buses.items()
            ],
            "gpio": self.sim.touchless is not None and bool(self.sim.touchless.keys),
            "thermal": None if self.sim.food is None else self.sim.food.view(),
            "cloud": {
                "up": cloud.listening,
                "since": self._cloud_seen[1],
                "failing_status": cloud.failing_status,
                "delay_s": cloud.delay,
                "agents": cloud.agents,
                "received": len(cloud.received),
                "rejected": len(cloud.rejected),
                "feedback": cloud.received[-FEEDBACK_SHOWN:][::-1],
                "answers": cloud.answers[-10:][::-1],
            },
            "disk": {
                "small": self.actions.disk is not None,
                "full": self.actions.disk is not None and self.actions.disk.full,
                "why_not": None if self.actions.disk else self.actions.disk_why_not,
            },
            "scenario": self._scenario,
            "verbs": verbs(),
        }

    def _config(self) -> Any:
        """The validated config the agent runs on (None before it started)."""
        return None if self.sim.agent is None else self.sim.agent.config

    async def _agent_json(self, path: str) -> Any:
        if self._session is None or self.sim.agent is None:
            return None
        try:
            async with self._session.get(self.sim.api_url + path) as resp:
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def _gpio_views(self) -> dict[int, dict[str, Any]]:
        if self.sim.touchless is None:
            return {}
        return {c["key"]: c for c in self.sim.touchless.snapshot()["cabinets"]}

    def _hardware(self, cab: dict[str, Any], gpio: dict[str, Any] | None) -> dict[str, Any]:
        """The physical doors by side (``open``, ``latched``, ``jammed``, ...) and the LED."""
        view: dict[str, Any] = {"led": gpio["led"] if gpio else None, "item": None}
        for side in ("front", "rear"):
            wiring = cab.get(side)
            emulator = self.sim.buses.get(wiring["bus"]) if isinstance(wiring, dict) else None
            if emulator is not None and wiring is not None:
                ch = asdict(emulator.state(wiring["board"], wiring["channel"]))
                where = f"{wiring['bus']} board {wiring['board']} ch {wiring['channel']}"
                view[side] = {"open": ch["door_open"], "jammed": ch["jammed"], "wired": where}
                if side == "front":
                    view["item"] = ch["item"]
            elif gpio is not None and gpio.get(side):
                door = gpio[side]
                view[side] = {"open": not door["closed"], "wired": "gpio", **door}
                if gpio.get("item") is not None:
                    view["item"] = gpio["item"]
            else:
                view[side] = None
        return view

    # -- handlers ---------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(await self.state())

    async def _live(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        self._clients.add(ws)
        await ws.send_str(json.dumps(await self.state()))
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="web-view-ticker")
        try:
            async for _ in ws:  # the page sends nothing; this waits for it to go
                pass
        finally:
            self._clients.discard(ws)
        return ws

    async def _tick(self) -> None:
        """Send the state to every page whenever it changed, while pages watch."""
        last = ""
        while self._clients:
            try:
                text = json.dumps(await self.state())
            except Exception:  # a half-stopped simulation: try again next tick
                log.exception("web view state failed")
                text = last
            if text != last:
                last = text
                for ws in list(self._clients):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_str(text)
            await asyncio.sleep(TICK_S)

    async def _close_clients(self, app: web.Application) -> None:
        for ws in list(self._clients):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"simulator stopping")

    async def _act(self, request: web.Request) -> web.Response:
        try:
            step = await request.json()
        except ValueError:
            return _refuse(400, "the body is not JSON")
        if not isinstance(step, dict):
            return _refuse(400, 'a step is an object: {"who": "cloud", "do": "open", "key": 5}')
        try:
            result = await self.actions.run(step)
        except StepError as err:
            return _refuse(400, str(err))
        except (aiohttp.ClientError, TimeoutError) as err:
            return _refuse(502, f"the agent did not answer: {err or type(err).__name__}")
        log.info("web view step", step=step, ok=result.get("ok"))
        return web.json_response(result)

    async def _temperatures(self, request: web.Request) -> web.Response:
        config = self._config()
        try:
            key = int(request.match_info["key"])
            hours = float(request.query.get("hours", charts.DEFAULT_HOURS))
        except ValueError:
            return _refuse(400, "key: a whole number; hours: a number of hours")
        if not charts.HOURS[0] <= hours <= charts.HOURS[1]:
            return _refuse(400, f"hours: {charts.HOURS[0]}-{charts.HOURS[1]}")
        if config is None:
            return _refuse(503, "the agent has not started")
        assert self._session is not None
        try:
            data = await charts.chart(self._session, self.sim.api_url, config, key, hours)
        except ValueError as err:
            return _refuse(404, str(err))
        except aiohttp.ClientResponseError as err:  # e.g. 503: its records unreadable
            return _refuse(502, f"the agent refused its records: {err.status} {err.message}")
        except (aiohttp.ClientError, TimeoutError) as err:
            return _refuse(502, f"the agent did not answer: {err or type(err).__name__}")
        return web.json_response(data)

    async def _scenarios(self, request: web.Request) -> web.Response:
        listed = []
        for name in scenarios.names():
            with contextlib.suppress(scenarios.ScenarioError):
                s = scenarios.load(name)
                own = s.thermal_speed is not None or bool(s.start_c)  # command line only
                listed.append({"name": name, "title": s.title, "locker": s.locker, "own": own})
        return web.json_response(listed)

    async def _replay(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in scenarios.names():
            return _refuse(404, f"no scenario {name!r}")
        if self._play is not None and not self._play.done():
            return _refuse(409, f"scenario {self._scenario['name']} is still playing")
        try:
            scenario = scenarios.load(name)
        except scenarios.ScenarioError as err:
            return _refuse(422, str(err))
        if scenario.locker != self.sim.locker:
            playing = f"{name} plays the {scenario.locker} locker, this is {self.sim.locker}"
            return _refuse(409, playing)
        if scenario.thermal_speed is not None or scenario.start_c:
            # Its expectations are timed for its own physics: a locker running at
            # another speed would fail them, and a body set cold at once looks broken.
            why = f"{name} plays its own thermal physics: simulate --scenario {name}"
            return _refuse(409, why)
        self._scenario = {"name": name, "running": True, "ok": None, "log": []}
        self._play = asyncio.create_task(self._run_scenario(scenario), name=f"scenario-{name}")
        return web.json_response({"ok": True, "name": name, "steps": len(scenario.steps)})

    async def _run_scenario(self, scenario: scenarios.Scenario) -> None:
        # NOTE: played on the running locker as it is: its [config] timings, thermal
        # speed and start temperatures do not apply.
        state = self._scenario
        try:
            state["ok"] = await scenarios.play(scenario, self.sim, state["log"].append)
        except Exception as err:  # shown on the page, never lost in a task
            log.exception("scenario failed", name=scenario.name)
            state["log"].append({"t": None, "step": "-", "ok": False, "detail": repr(err)})
            state["ok"] = False
        finally:
            state["running"] = False


def _bus_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A bus's fault switches and boards, without the 16 channels of each."""
    boards = [{k: v for k, v in b.items() if k != "channels"} for b in snapshot["boards"]]
    return {"corrupt": snapshot["corrupt"], "boards": boards}
