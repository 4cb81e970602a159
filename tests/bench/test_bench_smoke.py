"""Every speed bench, run briefly as the command line runs it, so none rots.

The figures are measurements, not assertions: these tests only check that each
script runs to the end, prints its figures with the machine they ran on, and that
the agent process it drove stopped cleanly (a non-zero exit is printed by the rig).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
FIGURE = re.compile(r"p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms \((\d+) samples")


def run(script: str, *args: str) -> str:
    """Run ``bench/<script>`` with ``args``; its stdout. Fails on a non-zero exit or
    anything on stderr (the rig prints an agent that did not exit 0 there)."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout.startswith("machine: "), done.stdout
    return done.stdout


@pytest.mark.timeout(90)
def test_door_to_cloud_runs():
    out = run("door_to_cloud.py", "--samples", "3", "--warmup", "1", "--boards", "1")
    samples = [int(n) for n in FIGURE.findall(out)]
    assert samples == [20, 3], out  # the disk's fsyncs, then the flips
    assert "wire floor 12.0 ms" in out
    assert "one fsync where the agent keeps its outbox" in out


@pytest.mark.timeout(90)
def test_command_to_wire_runs():
    out = run("command_to_wire.py", "--samples", "1", "--warmup", "0")
    assert [int(n) for n in FIGURE.findall(out)] == [1, 1], out


@pytest.mark.timeout(90)
def test_idle_runs():
    out = run(
        "idle.py", "--starts", "1", "--window-s", "0.5", "--warmup-s", "0.2", "--cabinets", "16"
    )
    assert "start to READY, 16 cabinets (1 boards)" in out
    assert re.search(r"CPU [\d.]+ % of a core .* RSS [\d.]+ MB", out), out


@pytest.mark.timeout(90)
def test_bus_reads_runs():
    out = run("bus_reads.py", "--seconds", "0.2")
    assert len(re.findall(r"[\d,]+ reads/s, \d+ us CPU a read", out)) == 3, out
    assert len(re.findall(r"bus-wide 0x32 [\d,]+/s", out)) == 2, out


@pytest.mark.timeout(90)
def test_outbox_runs():
    out = run("outbox.py", "--quick")
    assert "drain 200 changes" in out, out
    assert "as a process" in out, out


@pytest.mark.timeout(90)
def test_outbox_full_runs():
    out = run("outbox_full.py", "--quick")
    assert len(re.findall(r"append when full: median +[\d.]+ ms", out)) == 6, out


@pytest.mark.timeout(90)
def test_bus_latency_runs():
    out = run("bus_latency.py", "--samples", "3")
    seen = re.findall(r"median [\d.]+ ms, p95 [\d.]+ ms, max [\d.]+ ms \(3 changes\)", out)
    assert len(seen) == 2, out


@pytest.mark.timeout(120)
def test_flood_runs():
    out = run(
        "flood.py", "--commands", "200", "--pad-kb", "1", "--jam-every", "0", "--cabinets", "4"
    )
    assert re.search(r"answers: \d+ done, [\d,]+ BUSY", out), out
    assert re.search(r"RSS before [\d.]+ MB, peak [\d.]+ MB", out), out


@pytest.mark.timeout(60)
def test_codes_runs():
    out = run("codes.py", "--quick")
    assert "provision 1000 codes" in out and "judge a miss against 1000 codes: p50" in out


def test_an_agent_that_is_not_there_is_refused_not_replaced(tmp_path):
    """--agent names another install's executable: one that is not there is an error,
    never this venv's agent measured under its name."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "memory.py"), "--agent", str(tmp_path / "nothing")],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"--agent {tmp_path / 'nothing'}: not an executable file" in done.stderr
    assert done.stdout == ""
