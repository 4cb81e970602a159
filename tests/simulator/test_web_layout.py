"""The page for an operator (issue 20), in a real headless Chromium: it fits a phone
(360 px), a laptop (800 px) and a wall screen (1920 px) with nothing wider than the
window and no tile with a scrollbar, the feeds never crushed; its selectors follow the
selected cabinet's hardware; marks say in words what colour alone would not (a board
not answering, the cloud back while the agent reconnects); each thermal cabinet has a
chart drawn by the vendored uPlot with its band, alarm line and excursions. Screenshots
at each width land in ``artifacts/`` (``web-width-360.png``, ...): look at them."""

import pytest

from tests.simulator.webpage import ARTIFACTS, Live, _page, button, cab, launch, sync_api

WIDTHS = (360, 800, 1920)

# Every element wider than the window or poking out of its right edge (inside a box
# that scrolls on purpose, the feeds' lists, does not count), and every tile, group,
# chart or tag whose content overflows it (an inner scrollbar or clipped text).
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const scrolls = (e) => e.closest("#feeds ol");
    const wide = [...document.querySelectorAll("body *")].filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && !scrolls(e) && (r.right > width + 1 || r.width > width + 1);
    }).map((e) => `${e.tagName}#${e.id}.${e.className} ${e.getBoundingClientRect().right}`);
    const boxes = ".cab, .group, .chart, .tag, .alarms li, header, #result, .badge";
    const over = [...document.querySelectorAll(boxes)].filter((e) =>
        e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1
    ).map((e) => `${e.className} ${e.dataset.key ?? ""}: ${e.scrollWidth}x${e.scrollHeight}`
        + ` in ${e.clientWidth}x${e.clientHeight}`);
    const wideOf = (sel) => document.querySelector(sel).getBoundingClientRect().width;
    return {page: document.documentElement.scrollWidth, width, wide, over,
            feeds: wideOf("#feeds"), actions: wideOf("#actions")};
}"""


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def food():
    """A food locker whose cabinet 5, with food in it, is set to chill at 22 C (out of its
    line at once: an alarm and an excursion) and cabinet 1 to heat."""
    live = Live(locker="food", thermal_speed=300)
    live.call(live.view.actions.run({"who": "person", "do": "put_item", "key": 5}))
    live.call(
        live.view.actions.run({"who": "cloud", "do": "set_thermal_mode", "key": 5, "mode": "chill"})
    )
    live.call(
        live.view.actions.run({"who": "cloud", "do": "set_thermal_mode", "key": 1, "mode": "heat"})
    )
    yield live
    live.close()


@pytest.fixture(scope="module")
def kerong():
    live = Live()
    yield live
    live.close()


@pytest.fixture
def food_page(browser, food, request):
    width = getattr(request, "param", 1500)
    shot = f"width-{width}" if hasattr(request, "param") else None
    yield from _page(browser, food, request, width=width, shot=shot)


@pytest.fixture
def kerong_page(browser, kerong, request):
    yield from _page(browser, kerong, request)


@pytest.mark.parametrize("food_page", WIDTHS, indirect=True, ids=[f"{w}px" for w in WIDTHS])
def test_the_page_fits_every_width(food_page):
    page = food_page
    width = page.viewport_size["width"]
    page.wait_for_selector(f"{cab(5)} .alarms li[data-type='temperature_out_of_band']")
    page.wait_for_selector(".chart[data-key='5'][data-band='1,4'] canvas")
    page.wait_for_timeout(1200)  # the charts settle at this width
    found = page.evaluate(OVERFLOW)
    assert found["page"] <= found["width"], found
    assert found["wide"] == [], found["wide"]
    assert found["over"] == [], found["over"]
    # The feeds take the row they are given: never a sliver beside the wall.
    assert found["feeds"] >= min(300, width - 32), found
    assert found["actions"] >= min(280, width - 32), found  # nor the actions
    # The alarm breaks at word boundaries, its full name on the tile's title.
    alarm = page.locator(f"{cab(5)} .alarms li").first
    assert alarm.text_content() == "out of band"
    assert alarm.get_attribute("title") == "temperature_out_of_band"
    # One zone, named, and the feeds and the result line in it.
    zone = page.text_content("#tz")
    assert zone.startswith("times in ") and "UTC" in zone
    shown = page.text_content("#feedback li time")
    assert len(shown) == 8 and shown.count(":") == 2  # HH:MM:SS, the page's zone


def test_the_selectors_follow_the_cabinets_hardware(food_page):
    page = food_page
    page.click(cab(5))  # cold only, on the shared compressor
    page.wait_for_selector("#selected:text('5')")
    options = page.eval_on_selector_all("#mode option", "os => os.map(o => o.value)")
    assert options == ["ambient", "chill", "freeze"]  # no heat on a cold-only cabinet
    assert page.eval_on_selector("#mode", "s => s.value") == "chill"  # what it holds now
    assert button(page, "#as-fate", "fail the heater").is_hidden()
    assert button(page, "#as-fate", "fail the compressor").is_visible()
    assert button(page, "#as-cloud", "open rear").is_hidden()  # no rear door
    assert page.eval_on_selector_all("#side option", "os => os.map(o => o.value)") == ["front"]
    assert "front door only" in page.text_content("#selected-about")
    page.click(cab(1))  # hot only
    page.wait_for_selector("#selected:text('1')")
    options = page.eval_on_selector_all("#mode option", "os => os.map(o => o.value)")
    assert options == ["ambient", "heat"]
    assert page.eval_on_selector("#mode", "s => s.value") == "heat"
    assert button(page, "#as-fate", "fail the heater").is_visible()
    assert button(page, "#as-fate", "fail the compressor").is_hidden()
    # Scenarios greyed out say why, in words on the page.
    why = page.locator("#scenarios .why[data-why='jammed_lock']")
    assert "simulate --locker kerong" in why.text_content()
    assert page.locator("#scenarios button[data-scenario='jammed_lock']").is_disabled()


def test_the_chart_draws_the_band_the_line_and_the_excursion(food_page, food):
    page = food_page
    chart = page.locator(".chart[data-key='5']")
    page.wait_for_selector(
        ".chart[data-key='5'][data-band='1,4'][data-line='8'][data-excursions='1']"
    )
    page.wait_for_function("() => document.querySelector(\".chart[data-key='5']\").dataset.bandPx")
    # The band's pixels are painted in its colour (a green wash) in the plot's middle.
    pixel = page.evaluate("""() => {
        const u = window.charts[5];
        const [top, bottom] = document.querySelector(".chart[data-key='5']").dataset.bandPx
            .split(",").map(Number);
        const x = Math.round(u.bbox.left + u.bbox.width * 0.02);
        return [...u.ctx.getImageData(x, Math.round((top + bottom) / 2), 1, 1).data];
    }""")
    r, g, b, alpha = pixel
    assert alpha > 0 and g > r and g > b, pixel  # greenish: the band, not white
    assert "chill: band 1 to 4 °C, alarm line 8 °C" in chart.text_content()
    assert page.locator(".chart[data-key='0']").get_attribute("data-band") == ""  # ambient
    assert page.locator(".chart").count() == 8  # every thermal cabinet has one
    # Served from the package, not from the internet.
    scripts = page.eval_on_selector_all("script[src]", "ss => ss.map(s => s.src)")
    assert all(src.startswith(food.view.url) for src in scripts), scripts
    assert any("uplot" in src for src in scripts)


def test_a_silent_board_and_the_cloud_coming_back_say_so(kerong_page):
    page = kerong_page
    button(page, "#locker-fate", "take the cloud down").click()
    page.wait_for_selector("#cloud[data-state=down]")
    page.wait_for_selector("#cloud:has-text('cloud down for')")
    button(page, "#locker-fate", "bring the cloud back").click()
    # The first state drawn with the cloud back says so (it said "down" 10-45 s, while
    # the agent reconnected): waited for by the state, not by time (a loaded host).
    page.wait_for_function("() => state.cloud.up", timeout=60_000)
    assert page.get_attribute("#cloud", "data-state") in ("reconnecting", "up")
    assert "down" not in page.text_content("#cloud")
    page.wait_for_selector("#cloud[data-state=up]", timeout=60_000)

    page.locator("#locker-fate button[data-do=board_offline][data-board='1']").click()
    page.wait_for_selector(f"{cab(0)} .tag.silent[data-silent='rear']")
    assert page.locator(f"{cab(0)} .tag.silent").text_content() == "? rear no answer"
    assert page.locator(f"{cab(5)} .tag.silent").count() == 0  # board 0 answers
    for width in (360, 800):  # a wall of 16 on a phone and a laptop: the marks fit, the
        page.set_viewport_size({"width": width, "height": 900})  # actions keep their room
        page.wait_for_timeout(300)
        found = page.evaluate(OVERFLOW)
        assert (found["wide"], found["over"]) == ([], []), found
        assert found["actions"] >= min(280, width - 32), found
        path = ARTIFACTS / f"web-width-{width}-kerong-silent-board.png"
        page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 900})
    page.locator("#locker-fate button[data-do=board_online][data-board='1']").click()
    page.wait_for_selector(f"{cab(0)}[data-rear='closed']")
    assert page.locator(f"{cab(0)} .tag.silent").count() == 0


DRAW_MOVING = """() => {
    const s = structuredClone(state);
    s.cabinets[0].state = "opening";
    s.cabinets[1].state = "closing";
    render(s);
    const bar = (key) => document.querySelector(`.cab[data-key="${key}"] .door`);
    const words = (key) => document.querySelector(`.cab[data-key="${key}"] .state`).textContent;
    const paint = (key) => getComputedStyle(bar(key)).backgroundImage;
    return [paint(0), paint(1), words(0), words(1)];
}"""


def test_opening_and_closing_differ_and_say_so_and_sizes_follow(kerong_page):
    page = kerong_page
    opening, closing, said_opening, said_closing = page.evaluate(DRAW_MOVING)
    assert opening != closing  # two colours, not one
    assert (said_opening, said_closing) == ("opening", "closing")  # and in words
    page.click(cab(4))
    page.wait_for_selector("#selected:text('4')")
    assert page.eval_on_selector("#size", "s => s.value") == "large"  # its size, chosen
    assert button(page, "#as-cloud", "set thermal mode").is_hidden()  # no thermal unit
    assert page.locator("#mode").is_hidden()
    page.click(cab(0))
    page.wait_for_selector("#selected:text('0')")
    assert page.eval_on_selector("#size", "s => s.value") == "mini"
    assert button(page, "#as-cloud", "open rear").is_visible()  # it has a rear door
    sides = page.eval_on_selector_all("#side option", "os => os.map(o => o.value)")
    assert sides == ["front", "rear"]


# A phone as most operators hold one: 360 CSS px wide, 740 high once the browser's bars
# are off (a 360 x 800 Android). What they need first is on the first screen: the
# alarms, then the wall with its temperatures; the chart of the cabinet they tapped (an
# alarm or a tile) starts on that screen, right under the wall, and is whole after one
# short swipe (half a screen); the actions follow the charts, the raw feeds come last.
PHONE = {"width": 360, "height": 740}
TOPS = """() => {
    const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                           return [r.top + scrollY, r.bottom + scrollY]; };
    const charts = [...document.querySelectorAll(".chart")].map((c) => {
        const r = c.getBoundingClientRect();
        return {key: Number(c.dataset.key), top: r.top + scrollY, bottom: r.bottom + scrollY,
                left: r.left};
    }).sort((a, b) => a.top - b.top || a.left - b.left);  // as they are read
    return {alarms: box("#alarm-summary"), wall: box("#wall"), actions: box("#actions"),
            feeds: box("#feeds"), charts};
}"""


def test_on_a_phone_the_alarms_the_wall_and_the_tapped_cabinets_chart_come_first(
    browser, food, request
):
    sensor_6 = {"who": "fate", "key": 6, "side": "front"}
    food.call(food.view.actions.run({**sensor_6, "do": "fail_sensor", "fault": "missing"}))
    pages = _page(browser, food, request, shot="phone-360x740", **PHONE)
    page = next(pages)
    try:
        screen = PHONE["height"]
        alarm = page.locator("#alarm-summary button[data-key='6']")
        alarm.wait_for()
        assert alarm.text_content() == "cabinet 6: sensor failed"
        assert alarm.get_attribute("title") == "temperature_sensor_failed"
        page.wait_for_selector(".chart[data-key='6'].alarm")
        found = page.evaluate(TOPS)
        assert found["alarms"][1] <= found["wall"][0], found  # the alarms above the wall
        assert found["wall"][1] <= screen, found  # the whole wall on the first screen
        first = found["charts"][0]
        assert first["key"] == 5, found  # the selected cabinet's chart (5 at the start)
        assert first["top"] < screen, found  # it starts on the first screen
        read = [c["key"] for c in found["charts"]]
        assert read.index(6) < min(read.index(k) for k in (0, 2, 3)), read  # alarm first
        assert found["charts"][-1]["bottom"] <= found["actions"][0] <= found["feeds"][0], found

        alarm.click()  # the operator taps the alarm: cabinet 6 selected, its chart first
        page.wait_for_selector("#selected:text('6')")
        page.wait_for_selector(".chart[data-key='6'].selected")
        page.wait_for_timeout(300)
        found = page.evaluate(TOPS)
        first = found["charts"][0]
        assert first["key"] == 6, found
        assert first["top"] < screen and first["bottom"] <= 1.5 * screen, found
        assert "sensor failed" in page.text_content(".chart[data-key='6'] h3 .alarm-mark")
        page.screenshot(path=str(ARTIFACTS / "web-phone-360x740-first-screen.png"))
        page.click(cab(2))  # a quiet cabinet tapped on the wall: its chart under the wall
        page.wait_for_selector(".chart[data-key='2'].selected")
        page.wait_for_timeout(300)
        assert page.evaluate(TOPS)["charts"][0]["key"] == 2
    finally:
        food.call(food.view.actions.run({**sensor_6, "do": "mend_sensor"}))
        for _ in pages:  # the full page's screenshot, and no script error
            pass


def test_on_a_wide_screen_the_charts_in_alarm_come_first(food_page, food):
    page = food_page
    sensor_6 = {"who": "fate", "key": 6, "side": "front"}
    food.call(food.view.actions.run({**sensor_6, "do": "fail_sensor", "fault": "missing"}))
    try:
        page.wait_for_selector(".chart[data-key='6'].alarm")
        page.wait_for_timeout(300)
        read = [c["key"] for c in page.evaluate(TOPS)["charts"]]
        assert read.index(6) < min(read.index(k) for k in (0, 2, 3, 4, 7)), read
        # The charts sit under the wall, beside the actions: not after them.
        found = page.evaluate(TOPS)
        assert found["charts"][0]["top"] < found["actions"][1], found
    finally:
        food.call(food.view.actions.run({**sensor_6, "do": "mend_sensor"}))
