"""The chaos soak (bench/soak.py), briefly: the agent process against every fault at once.

Never dead, never lying, never twice: with a fixed seed, about twenty seconds of
chaos (kills included) and a settle, every check of the soak passes. The memory
check needs a long-lived process and is left to the bench.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

SOAK_PATH = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def load_soak():
    """bench/soak.py as a module (bench/ is not a package)."""
    name = "locker_agent_bench_soak"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SOAK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def soak_passes(chaos_s: float, seed: int, kill_every_s: tuple[float, float]) -> None:
    """Run one soak and assert every check passed (memory aside) and kills happened."""
    soak = load_soak()
    lines: list[str] = []
    options = soak.Options(
        chaos_s=chaos_s,
        seed=seed,
        settle_s=60.0,
        kill_every_s=kill_every_s,
        kill_until=0.8,
        parking=False,  # a Retry-After the agent honours for 300 s: the bench's job
        out=lines.append,
    )
    report = await soak.run_soak(options)
    report.print(lines.append)
    text = "\n".join(lines)
    print(text)
    assert report.failed == [], text
    assert not [c for c in report.checks if c.verdict == "SKIP" and "memory" not in c.name]
    assert soak.Soak  # the figures were printed above; the kills did happen:
    assert "kills, restarts" in report.figures
    assert report.figures["kills, restarts"].split(",")[0] != "0", text


@pytest.mark.timeout(150)
async def test_soak_briefly():
    await soak_passes(chaos_s=12.0, seed=3, kill_every_s=(3.0, 6.0))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [11, 12])
async def test_soak_longer(seed):
    await soak_passes(chaos_s=180.0, seed=seed, kill_every_s=(8.0, 30.0))


# --- the verdicts themselves, on made-up histories (no process, no time) ---------


def test_sequences_collapse_and_subsequence():
    soak = load_soak()
    assert soak.collapse(["closed", "closed", "open", "open", "closed"]) == [
        "closed",
        "open",
        "closed",
    ]
    assert soak.is_subsequence(["open", "closed"], ["closed", "open", "open", "closed"])
    assert not soak.is_subsequence(["closed", "open", "closed"], ["closed", "open"])
    assert not soak.is_subsequence(["open", "closed", "open"], ["open", "closed"])  # a lie


def command(soak, *attempts, answered=None, via="cloud"):
    """A command for door 0/front with these attempts; ``answered``: the index of
    its first definitive answer."""
    cmd = soak.Command("c-1", via, soak.DOORS[0])
    cmd.attempts = [soak.Attempt(*a) for a in attempts]
    if answered is not None:
        cmd.answered = cmd.attempts[answered]
    return cmd


def judge(soak, *commands, unattributed=(), unsaved=()):
    """judge_pulses on made-up commands; every pulse counted once."""
    pulses = sum(a.pulses for c in commands for a in c.attempts) + len(unattributed)
    check, figures = soak.judge_pulses(commands, unattributed, pulses, set(unsaved), Counter())
    return check, figures


@pytest.mark.parametrize(
    ("attempts", "answered", "unsaved", "verdict", "known"),
    [
        # (generation, after_answer, answer, body, pulses)
        ([(1, False, "ok", {"s": 1}, 1)], 0, (), "PASS", None),
        ([(1, False, "ok", {"s": 1}, 2)], 0, (), "PASS", None),  # the one retry
        ([(1, False, "error:LOCK_JAMMED", None, 2)], 0, (), "PASS", None),
        ([(1, False, "ok", {"s": 1}, 3)], 0, (), "FAIL", None),
        # no answer (my timeout), sent again in the same process: joins the running one
        ([(1, False, "none", None, 1), (1, False, "ok", {"s": 1}, 1)], 1, (), "PASS", None),
        # pulsed, then UNAVAILABLE (not remembered), then acted again: twice
        (
            [(1, False, "error:UNAVAILABLE", None, 1), (1, False, "ok", {"s": 1}, 1)],
            1,
            (),
            "FAIL",
            None,
        ),
        # killed after the pulse, before an answer: the known open point
        ([(1, False, "none", None, 1), (2, False, "ok", {"s": 1}, 1)], 1, (), "PASS", "kill"),
        # sent again after its answer: the same answer, no pulse
        ([(1, False, "ok", {"s": 1}, 1), (1, True, "ok", {"s": 1}, 0)], 0, (), "PASS", None),
        # ... a pulse in the same process is a duplicate
        ([(1, False, "ok", {"s": 1}, 1), (1, True, "ok", {"s": 1}, 1)], 0, (), "FAIL", None),
        # ... after a restart, with the result saved: a duplicate too
        ([(1, False, "ok", {"s": 1}, 1), (2, True, "ok", {"s": 2}, 1)], 0, (), "FAIL", None),
        # ... after a restart, the result never saved (disk full): counted apart
        (
            [(1, False, "ok", {"s": 1}, 1), (2, True, "ok", {"s": 2}, 0)],
            0,
            ("cloud:'c-1'",),
            "PASS",
            "unsaved",
        ),
    ],
)
def test_judge_pulses(attempts, answered, unsaved, verdict, known):
    soak = load_soak()
    check, figures = judge(soak, command(soak, *attempts, answered=answered), unsaved=unsaved)
    assert check.verdict == verdict, check.detail
    kill, unsaved_count = [int(p.split()[-1]) for p in figures["known open point"].split(";")]
    assert (kill, unsaved_count) == ((known == "kill") * 1, (known == "unsaved") * 1)


def test_an_unasked_pulse_and_an_unanswered_command_fail():
    soak = load_soak()
    check, _ = judge(soak, unattributed=[(1, 0, 6)])
    assert check.verdict == "FAIL" and "unasked pulse: board 0 channel 6" in check.detail
    check, _ = judge(soak, command(soak, (1, False, "none", None, 0)))
    assert check.verdict == "FAIL" and "never got a definitive answer" in check.detail
