"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright
through ``executable_path``; Playwright's own browsers are never downloaded).

One simulation and one browser for the module: the simulation runs on its own event
loop in a thread, the browser in the test's. Screenshots go to ``artifacts/`` (or
``$LOCKER_ARTIFACTS``). Without a browser the module is skipped, saying how to get one.
"""

import pytest

from simulator.web.server import WebView
from tests.simulator.webpage import Live, _page, button, cab, launch, sync_api, thermal


@pytest.fixture(scope="module")
def live():
    live = Live()
    yield live
    live.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live, request):
    yield from _page(browser, live, request)


def test_open_cabinet_5_then_shut_it_as_a_person(page):
    page.click(cab(5))  # selected already; clicking it keeps it so
    page.wait_for_selector("#selected:text('5')")
    page.wait_for_selector(cab(5, front="closed"))
    button(page, "#as-cloud", "open front").click()
    page.wait_for_selector(cab(5, front="open"))
    page.wait_for_selector("#feedback li:has-text('5: front open')")
    page.wait_for_selector("#result.ok")

    button(page, "#as-person", "shut the door").click()
    page.wait_for_selector(cab(5, front="closed"))
    page.wait_for_selector("#feedback li:first-child:has-text('5: front closed')")


def test_a_jammed_lock_shows_its_alarm(page):
    page.click(cab(7))
    page.wait_for_selector("#selected:text('7')")
    button(page, "#as-fate", "jam the lock").click()
    page.wait_for_selector(f"{cab(7)} .tag.hw:text('jammed')")
    button(page, "#as-cloud", "open front").click()
    page.wait_for_selector("#result.bad:has-text('lock jammed')")
    page.wait_for_selector(f"{cab(7)} .alarms li[data-type='lock_jammed']:text('lock jammed')")
    page.wait_for_selector("#selected-alarms li:text('lock_jammed')")  # in full, in the panel
    page.wait_for_selector("#events li:has-text('lock_jammed')")


def test_the_cloud_goes_down_a_door_changes_and_the_backlog_arrives(page, live):
    page.click(cab(9))
    button(page, "#locker-fate", "take the cloud down").click()
    page.wait_for_selector("#cloud:text('cloud down')")
    button(page, "#as-person", "force it open").click()
    page.wait_for_selector(cab(9, front="open"))
    page.wait_for_selector("#outbox.warn")  # the change waits in the outbox
    assert not page.locator("#feedback li:has-text('9: front open')").count()
    button(page, "#locker-fate", "bring the cloud back").click()
    # Back: never "down" again; the agent reconnecting until its links are up (issue 20).
    page.wait_for_selector("#cloud[data-state=reconnecting], #cloud[data-state=up]")
    assert "down" not in page.text_content("#cloud")
    page.wait_for_selector("#feedback li:has-text('9: front open')")
    page.wait_for_selector("#outbox:text('outbox 0 pending')")
    page.wait_for_selector("#events li:has-text('door_forced_open')")


def test_the_page_reconnects_by_itself_when_the_simulator_restarts(page, live):
    port = int(live.view.url.rsplit(":", 1)[1].strip("/"))
    live.call(live.view.close())
    page.wait_for_selector("#live.bad")
    live.view = WebView(live.sim, port=port)
    live.call(live.view.start())
    page.wait_for_selector("#live.ok")
    live.sim.boards.force_open(0, 12)  # cabinet 11: the new server's news reaches the page
    page.wait_for_selector(cab(11, front="open"))
    assert button(page, "#as-cloud", "open front").count() == 1  # built anew, not twice


def test_a_scenario_is_replayed_from_the_page(page):
    page.click("#scenarios button[data-scenario='delivery_and_pickup']")
    page.wait_for_selector("#scenario-log li:has-text('delivery_and_pickup: passed')")
    assert page.locator("#scenario-log li.bad").count() == 0
    assert page.locator("#scenario-log li.ok").count() == 13  # 12 steps and the verdict


@pytest.fixture(scope="module")
def food_live():
    live = Live(locker="food", thermal_speed=300)
    yield live
    live.close()


@pytest.fixture
def food_page(browser, food_live, request):
    yield from _page(browser, food_live, request)


def test_a_hot_cabinet_draws_its_temperature_climbing_and_a_failed_sensor(food_page):
    page = food_page
    page.wait_for_selector(thermal(2, sensor="ok", temperature="22.0"))  # the room's, read
    assert not page.locator(f"{cab(2)} .tag.thermal.heat").count()  # ambient, grey
    page.click(cab(2))
    page.wait_for_selector("#selected:text('2')")
    page.select_option("#mode", "heat")
    button(page, "#as-cloud", "set thermal mode").click()
    page.wait_for_selector(thermal(2, heating="true") + ".heat")
    page.wait_for_function(  # the physics heats the file the agent reads: it climbs
        "() => Number(document.querySelector('.cab[data-key=\"2\"] .thermal')"
        ".dataset.temperature) > 30"
    )
    tag = page.locator(f"{cab(2)} .tag.thermal")
    assert "heat" in tag.text_content() and "heating" in tag.text_content()
    assert tag.evaluate("t => getComputedStyle(t).backgroundColor") == "rgb(255, 136, 102)"

    page.select_option("#fault", "missing")
    button(page, "#as-fate", "fail the sensor").click()
    page.wait_for_selector(thermal(2, sensor="missing", temperature="?") + ".fault")
    page.wait_for_selector(f"{cab(2)} .alarms li[data-type='temperature_sensor_failed']")
    button(page, "#as-fate", "mend the sensor").click()
    page.wait_for_selector(thermal(2, sensor="ok"))


DRAW_WITH_THERMAL = """() => {
    const s = structuredClone(state);
    s.cabinets[0].temperature_c = 4.2;
    s.cabinets[0].thermal = {mode: "chill", band_c: [1, 4], heating: false, cooling: true,
                             sensor: "ok"};
    s.cabinets[1].temperature_c = null;
    s.cabinets[1].thermal = {mode: "freeze", band_c: [-22, -18], heating: false,
                             cooling: false, sensor: "failed"};
    render(s);
    const tag = (key) => document.querySelector(`.cab[data-key="${key}"] .thermal`);
    return [tag(0).textContent, tag(1).textContent, tag(2) === null];
}"""


def test_thermal_is_drawn_when_the_cabinet_object_has_it(page):
    # Every shape DESIGN.md "Thermal" allows, drawn from a state the page was handed,
    # and nothing for a cabinet without a unit (thermal null).
    chill, freeze, none = page.evaluate(DRAW_WITH_THERMAL)
    assert chill == "chill 4.2\u00a0°C cooling"  # the number and its unit never parted
    assert freeze == "freeze ?\u00a0°C sensor failed"
    assert none


def test_a_door_not_yet_recorded_is_marked(page, live):
    """The disk refuses the change: the tile shows the door open, marked "not recorded",
    until the agent has written it (issue 23: shown as sensed, with its doubt)."""
    import sqlite3

    outbox = live.sim.agent.outbox
    make_room = outbox._make_room

    def full(*_a, **_k):
        raise sqlite3.OperationalError("database or disk is full")

    live.sim.boards.shut_door(0, 14)  # cabinet 13, shut whatever a test before did
    page.wait_for_selector(cab(13, front="closed", recorded="true"))
    outbox._make_room = full
    try:
        live.sim.boards.force_open(0, 14)
        page.wait_for_selector(cab(13, front="open", recorded="false"))
        assert page.locator(f"{cab(13)} .tag.doubt", has_text="not recorded").count() == 1
    finally:
        outbox._make_room = make_room
    page.wait_for_selector(cab(13, front="open", recorded="true"))
    assert page.locator(f"{cab(13)} .tag.doubt").count() == 0
    live.sim.boards.shut_door(0, 14)
    page.wait_for_selector(cab(13, front="closed"))


def test_an_order_made_then_its_code_scanned_in_the_box_opens_its_cabinet(page):
    """On cabinet 14, which no other test opens."""
    page.click(cab(14))
    page.wait_for_selector("#selected:text('14')")
    page.wait_for_selector(cab(14, front="closed"))
    button(page, "#as-cloud", "make an order").click()
    page.wait_for_selector("#result.ok:has-text('code ')")
    code = page.input_value("#scan-code")
    assert len(code) >= 40  # the order's open_code, put in the box
    page.fill("#scan-code", "not-the-code")
    page.click("#scan-form button")
    page.wait_for_selector("#result.ok:has-text('person scan')")
    page.fill("#scan-code", code)
    page.click("#scan-form button")
    page.wait_for_selector(cab(14, front="open"))
    page.wait_for_selector("#feedback li:has-text('code_opened')")
