"""The web view's endpoints over real HTTP: what the page draws, each action by its real
path, the guards, the live websocket, scenario replays."""

import asyncio

import aiohttp
import pytest

from simulator.run import Simulation
from simulator.web.server import WebView

QUICK = {"confirm_s": 0.5, "jam_retry_s": 0.2}


@pytest.fixture
async def view():
    sim = Simulation(adjust=lambda d: d["locker"].update(QUICK))
    await sim.start()
    web = WebView(sim)
    await web.start()
    yield web
    await web.close()
    await sim.close()


@pytest.fixture
async def page(view):
    async with aiohttp.ClientSession(base_url=view.url) as session:
        yield session


async def act(page, **step):
    async with page.post("/_sim/act", json=step) as resp:
        return resp.status, await resp.json()


async def cabinet(page, key):
    async with page.get("/_sim/state") as resp:
        state = await resp.json()
    return next(c for c in state["cabinets"] if c["key"] == key)


async def until(check, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_the_page_and_its_files_are_served(page):
    async with page.get("/") as resp:
        assert resp.status == 200
        html = await resp.text()
    assert "/static/app.js" in html and "http" not in html.split("<body>")[1]  # nothing remote
    for name in ("app.js", "style.css"):
        async with page.get(f"/static/{name}") as resp:
            assert resp.status == 200


async def test_the_state_joins_the_agents_cabinets_the_hardware_and_the_cloud(page, view):
    await view.sim.cloud.wait_for(lambda b: b["event"]["type"] == "startup", timeout=5)
    async with page.get("/_sim/state") as resp:
        state = await resp.json()
    assert state["locker"] == "Simulated lobby"
    assert [c["key"] for c in state["cabinets"]] == list(range(16))
    zero = state["cabinets"][0]
    assert zero["state"] == "closed" and zero["rear_load_status"] == "closed"
    assert zero["hardware"]["front"] == {
        "open": False,
        "jammed": False,
        "wired": "rs485 board 0 ch 1",
    }
    assert zero["thermal"] is None and zero["temperature_c"] is None  # no thermal unit
    assert state["agent"]["status"] == "ok"
    assert state["cloud"]["up"] and state["cloud"]["agents"] == 1
    assert state["cloud"]["feedback"][-1]["body"]["event"]["type"] == "startup"
    assert state["buses"][0]["boards"][0] == {"board": 0, "online": True, "flapping": None}


async def test_open_as_the_cloud_goes_over_the_command_websocket(page, view):
    status, answer = await act(page, who="cloud", do="open", key=5)
    assert status == 200 and answer["ok"] and answer["cabinet"]["state"] == "open"
    assert view.sim.cloud.answers[-1] == answer  # the agent answered on the channel
    assert view.sim.boards.state(0, 6).door_open  # the board pulsed the lock


async def test_a_command_through_the_local_api_and_a_refusal_said_as_such(page):
    status, answer = await act(page, who="cloud", do="open", key=2, rear=True, via="api")
    assert status == 200 and answer["cabinet"]["rear_load_status"] == "open"
    status, answer = await act(page, who="cloud", do="set_thermal_mode", key=2, mode="freeze")
    assert status == 200 and answer["ok"] is False  # the agent's 409, passed on


async def test_a_person_and_fate_act_on_the_hardware_the_agent_reads(page, view):
    assert (await act(page, who="person", do="force", key=9)) == (200, {"ok": True})
    await until(lambda: _state_is(page, 9, "open"))
    await act(page, who="person", do="shut", key=9)
    await until(lambda: _state_is(page, 9, "closed"))

    await act(page, who="fate", do="jam", key=7)
    status, answer = await act(page, who="cloud", do="open", key=7)
    assert status == 200 and answer["ok"] is False and answer["error"]["type"] == "LOCK_JAMMED"
    assert {"type": "lock_jammed", "side": "front"} in (await cabinet(page, 7))["alarms"]
    assert (await cabinet(page, 7))["hardware"]["front"]["jammed"]

    await act(page, who="fate", do="board_offline", bus="rs485", board=1)
    await until(lambda: _rear_is(page, 0, "unknown"))
    await act(page, who="fate", do="board_online", board=1)
    await until(lambda: _rear_is(page, 0, "closed"))


async def _state_is(page, key, state):
    return (await cabinet(page, key))["state"] == state


async def _rear_is(page, key, state):
    return (await cabinet(page, key))["rear_load_status"] == state


async def test_the_cloud_goes_down_and_comes_back_on_its_address(page, view):
    url = view.sim.cloud.url
    await act(page, who="fate", do="cloud_down")
    status, answer = await act(page, who="cloud", do="open", key=5)
    assert status == 400 and "the cloud is down" in answer["error"]
    await act(page, who="fate", do="cloud_up")
    assert view.sim.cloud.url == url
    await view.sim.cloud.wait_for_agent(10)  # the agent found its way back
    await act(page, who="fate", do="cloud_errors", status=500)
    assert view.sim.cloud.failing_status == 500
    await act(page, who="fate", do="cloud_heal")
    assert view.sim.cloud.failing_status is None


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"who": "god", "do": "open"}, "who: one of cloud, person, fate"),
        ({"who": "cloud", "do": "explode", "key": 5}, "cloud can close, disable"),
        ({"who": "cloud", "do": "open"}, "key: a whole number"),
        ({"who": "person", "do": "shut", "key": 99}, "no cabinet 99"),
        ({"who": "person", "do": "shut", "key": 5, "side": "rear"}, "cabinet 5 has no rear door"),
        ({"who": "person", "do": "block", "key": 5}, "nothing on GPIO"),
        ({"who": "fate", "do": "board_offline", "board": 7}, "board 7"),
        ({"who": "fate", "do": "cloud_errors", "status": 200}, "an HTTP error"),
        ({"who": "fate", "do": "corrupt_line", "p": 2}, "a probability"),
    ],
)
async def test_a_bad_step_is_a_400_that_says_why(page, step, says):
    status, answer = await act(page, **step)
    assert status == 400
    assert says in answer["error"]


async def test_actions_are_refused_from_other_pages_and_hosts(page, view):
    step = {"who": "person", "do": "force", "key": 9}
    refusals = [
        ({"Origin": "http://evil.example"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Host": "evil.example"}, 421),
    ]
    for headers, status in refusals:
        async with page.post("/_sim/act", json=step, headers=headers) as resp:
            assert resp.status == status, headers
    async with page.post("/_sim/act", data="who=person", headers={}) as resp:
        assert resp.status == 415  # a plain HTML form
    own = {"Origin": view.url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    async with page.post("/_sim/act", json={**step, "key": 8}, headers=own) as resp:
        assert resp.status == 200
    assert not view.sim.boards.state(0, 10).door_open  # cabinet 9 untouched throughout


async def test_the_websocket_sends_each_change(page, view):
    async with page.ws_connect("/_sim/live") as ws:
        first = await ws.receive_json(timeout=5)
        assert next(c for c in first["cabinets"] if c["key"] == 4)["state"] == "closed"
        view.sim.boards.force_open(0, 5)
        async with asyncio.timeout(5):
            while True:
                state = await ws.receive_json()
                if next(c for c in state["cabinets"] if c["key"] == 4)["state"] == "open":
                    break
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await page.ws_connect("/_sim/live", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403


async def test_scenarios_are_listed_and_replayed_on_the_running_locker(page, view):
    async with page.get("/_sim/scenarios") as resp:
        listed = {s["name"]: s for s in await resp.json()}
    assert listed["jammed_lock"]["locker"] == "kerong"
    async with page.post("/_sim/scenarios/nope", json={}) as resp:
        assert resp.status == 404
    async with page.post("/_sim/scenarios/delivery_and_pickup", json={}) as resp:
        assert resp.status == 200
    async with page.post("/_sim/scenarios/jammed_lock", json={}) as resp:
        assert resp.status == 409  # one at a time
    async with page.get("/_sim/state") as resp:
        scenario = (await resp.json())["scenario"]
    assert scenario["name"] == "delivery_and_pickup" and scenario["running"]
    # Played to its end by the browser's test; closing the view stops it here.


async def test_the_state_says_what_each_cabinets_hardware_can_do_and_when_the_cloud_moved(
    page, view
):
    async with page.get("/_sim/state") as resp:
        state = await resp.json()
    by_key = {c["key"]: c["hardware"] for c in state["cabinets"]}
    assert by_key[0]["rear"] is True and by_key[5]["rear"] is False  # rear doors on 0-3
    assert by_key[5]["modes"] == []  # no thermal unit
    first = state["cloud"]["since"]
    await act(page, who="fate", do="cloud_down")
    async with page.get("/_sim/state") as resp:
        cloud = (await resp.json())["cloud"]
    assert not cloud["up"] and cloud["since"] >= first
    await act(page, who="fate", do="cloud_up")


async def test_a_cabinet_without_a_thermal_unit_has_no_chart(page):
    async with page.get("/_sim/temperatures/5") as resp:
        assert resp.status == 404
        assert "no thermal unit" in (await resp.json())["error"]
    for bad in (
        "/_sim/temperatures/x",
        "/_sim/temperatures/5?hours=0",
        "/_sim/temperatures/5?hours=a",
    ):
        async with page.get(bad) as resp:
            assert resp.status == 400, bad


async def test_a_thermal_cabinets_chart_has_its_records_band_and_line():
    sim = Simulation(locker="food", thermal_speed=300)
    await sim.start()
    web = WebView(sim)
    await web.start()
    try:
        async with aiohttp.ClientSession(base_url=web.url) as session:
            # Food in it: an empty cabinet's pull-down is no excursion (ADR 0021).
            assert (await act(session, who="person", do="put_item", key=5))[0] == 200
            assert (await act(session, who="cloud", do="set_thermal_mode", key=5, mode="chill"))[
                0
            ] == 200
            async with session.get("/_sim/state") as resp:
                hardware = {c["key"]: c["hardware"] for c in (await resp.json())["cabinets"]}
            assert hardware[5]["modes"] == ["ambient", "chill", "freeze"]  # cold only
            assert hardware[1]["modes"] == ["ambient", "heat"]  # hot only

            async def chart():
                async with session.get("/_sim/temperatures/5?hours=1") as resp:
                    assert resp.status == 200
                    return await resp.json()

            data = await chart()
            async with asyncio.timeout(20):
                while not (data["excursions"] and data["mode"] == "chill"):  # logged each 10 s
                    await asyncio.sleep(0.5)
                    data = await chart()
    finally:
        await web.close()
        await sim.close()
    assert data["key"] == 5
    assert data["lines"] == {"heat": 63.0, "chill": 8.0, "freeze": -15.0}  # the UK code
    assert data["bands"]["chill"] == [1.0, 4.0]
    t, temperature_c, mode = data["readings"][-1]
    assert t > data["since"] and mode == "chill" and isinstance(temperature_c, float)
    start, _end, _peak, mode = data["excursions"][0]
    assert start >= data["since"] - 60 and mode == "chill"  # set to chill at 22 C: out at once
