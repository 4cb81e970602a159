"""The web view's browser tests' rig: a simulation and its page on a loop in a thread,
and a page in a real headless Chromium (Debian's ``chromium``, driven by Playwright
through ``executable_path``; Playwright's own browsers are never downloaded).

Importing this skips the importing test module when there is no browser, saying how
to get one. Screenshots go to ``artifacts/`` (or ``$LOCKER_ARTIFACTS``).
"""

import asyncio
import os
import shutil
import threading
from pathlib import Path

import pytest

from simulator.run import Simulation
from simulator.web.server import WebView

HOW = (
    "no headless browser for the web view's tests: install Debian's chromium"
    " (sudo apt-get install chromium) and Playwright's Python package"
    " (pip install -e '.[test]'; never `playwright install`), or set CHROMIUM=/path"
)
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason=HOW)
if CHROMIUM is None or not os.access(CHROMIUM, os.X_OK):
    pytest.skip(HOW, allow_module_level=True)

ARTIFACTS = Path(os.environ.get("LOCKER_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))
QUICK = {"confirm_s": 0.5, "jam_retry_s": 0.2}
WAIT_MS = 15_000


class Live:
    """A simulation and its web view on a loop in a thread; ``call`` runs a coroutine there."""

    def __init__(self, **options):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulation(adjust=lambda d: d["locker"].update(QUICK), **options)
        self.call(self.sim.start())
        self.view = WebView(self.sim)
        self.call(self.view.start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self):
        self.call(self.view.close())
        self.call(self.sim.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def launch(pw):
    """A headless Chromium from Playwright ``pw``."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def _page(browser, live, request, width=1500, height=900, shot=None):
    """A page on ``live``'s view, its screenshot kept at the end (``shot``: its name),
    and no script error allowed."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.set_default_timeout(WAIT_MS)
    page.goto(live.view.url)
    page.wait_for_selector("#live.ok")
    page.wait_for_function("() => state !== null")  # the first state drawn, not only the link
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"web-{shot or request.node.name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    page.close()
    assert errors == [], errors


def cab(key, **attrs):
    return f'.cab[data-key="{key}"]' + "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())


def button(page, group, label):
    return page.locator(f"{group} button", has_text=label)


def thermal(key, **attrs):
    return f"{cab(key)} .tag.thermal" + "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())
