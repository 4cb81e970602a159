"""A started simulation (agent + board emulator + fake cloud) and an API client for it.

A test module may define ``sim_options`` (a dict of Simulation keyword arguments)
to adjust the simulated locker, e.g. shorter timings.
"""

import aiohttp
import pytest

from simulator.run import Simulation


@pytest.fixture
async def sim(request):
    sim = Simulation(**getattr(request.module, "sim_options", {}))
    await sim.start()
    yield sim
    await sim.close()


@pytest.fixture
async def http(sim):
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with aiohttp.ClientSession(base_url=sim.api_url, headers=headers) as session:
        yield session


def pytest_terminal_summary(terminalreporter):
    """Say once, at the end, why the web view's browser tests were skipped and how to
    get a browser (``-q`` shows only a count of skips)."""
    for report in terminalreporter.stats.get("skipped", []):
        if "test_web_browser" in report.nodeid and isinstance(report.longrepr, tuple):
            terminalreporter.write_line(f"web view tests skipped: {report.longrepr[2]}")
            return
