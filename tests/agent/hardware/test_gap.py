"""The pulse gap: a lock is pulsed at most once per ``min_pulse_gap_s``, whoever asks.

On a fake clock for the rule itself; then through the real path: the fake cloud's
command channel, the agent, the Kerong driver and the board emulator on a pty,
with every pulse the board acted on timed as it happened.
"""

import asyncio
import itertools
import json
import time

import pytest

from agent.hardware.gap import PulseGap
from agent.locker.errors import Busy
from simulator.run import Simulation


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


async def _nothing():
    pass


async def test_a_lock_waits_its_turn_and_another_lock_does_not(monkeypatch):
    clock, slept = Clock(), []
    real_sleep = asyncio.sleep

    async def sleep(s):
        slept.append(s)
        clock.now += s
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    gap = PulseGap(2.0, wait_s=5.0, clock=clock)
    await gap.pulse(3, "front", _nothing)
    await gap.pulse(4, "front", _nothing)  # another lock: at once
    await gap.pulse(3, "rear", _nothing)  # another lock of the same cabinet: at once
    assert slept == []
    clock.now += 0.5
    await gap.pulse(3, "front", _nothing)
    assert slept == [1.5]


async def test_the_gap_runs_from_the_end_of_a_pulse(monkeypatch):
    """A pulse that waited for a power slot ends late: the next one counts from there."""
    clock, slept = Clock(), []
    real_sleep = asyncio.sleep

    async def sleep(s):
        slept.append(s)
        clock.now += s
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    gap = PulseGap(2.0, wait_s=5.0, clock=clock)

    async def slow_pulse():
        clock.now += 4.0  # a power slot, then the pulse

    await gap.pulse(3, "front", slow_pulse)
    clock.now += 1.0
    await gap.pulse(3, "front", _nothing)
    assert slept == [pytest.approx(1.0)]  # 2 s after the end, not after the start


async def test_beyond_the_wait_it_is_busy_and_says_when():
    clock = Clock()
    gap = PulseGap(30.0, wait_s=5.0, clock=clock)
    await gap.pulse(3, "front", _nothing)
    clock.now += 1.0
    with pytest.raises(Busy) as refused:
        await gap.pulse(3, "front", _nothing)
    assert refused.value.retry_after_s == pytest.approx(29.0)
    assert "cabinet 3 front lock" in refused.value.message


async def test_a_failed_pulse_still_counts():
    clock = Clock()
    gap = PulseGap(30.0, wait_s=5.0, clock=clock)

    async def fails():
        raise OSError("the port went away half way")

    with pytest.raises(OSError):
        await gap.pulse(3, "front", fails)
    with pytest.raises(Busy):
        await gap.pulse(3, "front", _nothing)


async def test_a_new_gap_takes_effect_at_the_next_pulse():
    clock = Clock()
    gap = PulseGap(2.0, wait_s=5.0, clock=clock)
    gap.gap_s = 30.0  # a reload
    await gap.pulse(1, "front", _nothing)
    clock.now += 2.0
    with pytest.raises(Busy):
        await gap.pulse(1, "front", _nothing)


async def test_a_gap_raised_by_a_reload_covers_the_lock_pulsed_just_before():
    clock = Clock()
    gap = PulseGap(0.5, wait_s=5.0, clock=clock)
    await gap.pulse(5, "front", _nothing)
    gap.gap_s = 30.0  # a technician found the solenoid running hot: SIGHUP
    clock.now += 0.6  # past the old gap, well inside the new one
    with pytest.raises(Busy) as refused:
        await gap.pulse(5, "front", _nothing)
    assert refused.value.retry_after_s == pytest.approx(29.4)


async def test_a_gap_lowered_by_a_reload_frees_the_lock_sooner():
    clock = Clock()
    gap = PulseGap(30.0, wait_s=5.0, clock=clock)
    await gap.pulse(5, "front", _nothing)
    gap.gap_s = 1.0
    clock.now += 1.0
    await gap.pulse(5, "front", _nothing)  # its turn: neither waits nor Busy


GAP_S = 1.5  # longer than the board's 0.5 s pulse: without the gap, pulses come 0.5 s apart


def _gap(data):
    data["cabinets"] = data["cabinets"][:4]  # open-all staggers its pulses: keep it short
    data["locker"]["min_pulse_gap_s"] = GAP_S


@pytest.fixture
async def timed_sim():
    """The simulated locker with a 1.5 s pulse gap; ``pulses`` times every pulse the
    board acted on (monotonic seconds), by (board, channel)."""
    sim = Simulation(adjust=_gap)
    await sim.start()
    sim.pulses = {}
    sim.boards.bank.on_pulse = lambda board, channel: sim.pulses.setdefault(
        (board, channel), []
    ).append(time.monotonic())
    yield sim
    await sim.close()


async def _answers(sim, count, timeout=15.0):
    async with asyncio.timeout(timeout):
        while len(sim.cloud.answers) < count:
            await asyncio.sleep(0.02)
    return sim.cloud.answers[:count]


async def test_a_flood_of_opens_over_the_channel_pulses_once_per_gap(timed_sim):
    """Finding: 100 opens of one cabinet whose door stands open, over the cloud's
    channel in 10 s, put 24 pulses on the wire (100 % duty), and more came after the
    cloud stopped. Now: one pulse per gap, none after the flood but the one whose
    turn was already taken, and every command answered (done or BUSY)."""
    sim = timed_sim
    sim.boards.force_open(0, 4)  # cabinet 3: its door stands open (no confirmation wait)
    await sim.cloud.wait_for(lambda c: c == {"key": 3, "front_status": "open"}, timeout=5)
    sent_at = []
    for i in range(100):
        await sim.cloud.send_raw(json.dumps({"id": f"flood-{i}", "key": 3, "command": "open"}))
        sent_at.append(time.monotonic())
        await asyncio.sleep(0.02)
    answers = await _answers(sim, 100)
    await asyncio.sleep(1.0)  # anything still queued would pulse now
    pulses = sim.pulses[(0, 4)]
    assert len(pulses) >= 2
    gaps = [b - a for a, b in itertools.pairwise(pulses)]
    assert min(gaps) >= GAP_S - 0.05, gaps  # the wire's jitter, not the agent's
    assert len(pulses) <= (sent_at[-1] - sent_at[0]) / GAP_S + 2
    assert sum(p > sent_at[-1] for p in pulses) <= 1
    assert {a["ok"] for a in answers} <= {True, False}
    refused = [a["error"] for a in answers if not a["ok"]]
    assert refused and {e["type"] for e in refused} == {"BUSY"}
    assert all(e["status_code"] == 429 for e in refused)


async def test_every_path_shares_one_gap(timed_sim):
    """The local API, the cloud's channel and open-all on one lock: a gap apart."""
    sim = timed_sim
    sim.boards.force_open(0, 2)  # cabinet 1 stands open: opens do not wait to confirm
    headers = {"Authorization": f"Bearer {sim.token}"}
    import aiohttp

    async with aiohttp.ClientSession(base_url=sim.api_url, headers=headers) as http:

        async def api_open():
            async with http.put("/api/lockers/cabinets/1", json={"command": "open"}) as resp:
                return resp.status

        async def open_all():
            async with http.post("/api/lockers/open-all", json={}) as resp:
                return resp.status

        for path in (api_open, lambda: sim.cloud.send_command({"key": 1, "command": "open"})):
            await path()
        await open_all()
        await api_open()
    pulses = sim.pulses[(0, 2)]
    assert len(pulses) == 4
    gaps = [b - a for a, b in itertools.pairwise(pulses)]
    assert min(gaps) >= GAP_S - 0.05, gaps
