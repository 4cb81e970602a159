"""``make simulate`` at a person's terminal (issue 20): the page's address, the token and
the storage stay on the screen while the locker works; the agent's info lines go to a
log file the banner names (kept after the run), its warnings and errors to the screen.
Off a terminal nothing changes (the other simulator tests read stderr's JSON)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import urllib.request
from pathlib import Path

import pytest

from agent import log
from simulator import console
from simulator.console import Screen, rows_of
from simulator.run import free_port
from tests.conftest import AGENT

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROWS, COLUMNS = 24, 80  # the smallest terminal a person is likely to have


def last_screen(text: str, rows: int = ROWS, columns: int = COLUMNS) -> list[str]:
    """The whole lines of ``text`` still on a terminal ``rows`` x ``columns`` after it
    was written (long lines wrap; the cursor waits on the last row)."""
    lines = [ANSI.sub("", line).rstrip("\r") for line in text.split("\n")[:-1]]
    shown, used = [], 0
    for line in reversed(lines):
        used += rows_of(line + "\n", columns)
        if used > rows - 1:
            break
        shown.append(line)
    return shown[::-1]


def test_rows_count_wrapped_lines_and_not_colour_codes():
    assert rows_of("a\n\n", 80) == 2
    assert rows_of("x" * 80 + "\n", 80) == 1
    assert rows_of("x" * 81 + "\n", 80) == 2
    assert rows_of("\x1b[31m" + "x" * 80 + "\x1b[0m\n", 80) == 1
    assert rows_of("no newline yet", 80) == 0


@pytest.mark.parametrize("line_length", [30, 150, 400])
def test_the_kept_lines_never_leave_the_screen(line_length):
    out = io.StringIO()
    screen = Screen(out, size=lambda: (COLUMNS, ROWS))
    kept = ["simulator still runs:", "  web view     http://127.0.0.1:8000/", "  token: t"]
    out.write("\n".join(kept) + "\n")
    screen.shown(kept)
    for n in range(200):
        screen.stream.write(f"warning {n} " + "w" * line_length + "\n")
        on_screen = last_screen(out.getvalue())
        assert all(line in on_screen for line in kept), (n, on_screen)
    assert screen.repeated >= 200 * rows_of("w" * line_length + "\n", COLUMNS) // ROWS


def test_nothing_is_repeated_before_the_banner():
    out = io.StringIO()
    screen = Screen(out, size=lambda: (COLUMNS, ROWS))
    for n in range(100):
        screen.stream.write(f"warning {n}\n")
    assert screen.repeated == 0 and out.getvalue().count("\n") == 100


def test_off_a_terminal_the_log_stays_where_the_cli_put_it(tmp_path):
    assert console.log_to_file(None) is None  # pytest's stderr is no terminal
    assert console.log_to_file("-") is None
    with pytest.raises(OSError):
        console.log_to_file(str(tmp_path / "no-such-dir" / "sim.log"))


def test_a_log_file_gets_everything_and_stderr_the_warnings(tmp_path, capsys):
    path = tmp_path / "sim.log"
    try:
        found = console.log_to_file(str(path), "info")
        assert found is not None and found.path == path and found.screen is None
        import structlog

        structlog.get_logger("t").info("door.changed", key=5, token="s3cret")
        structlog.get_logger("t").warning("uplink.retry", attempt=1)
    finally:
        log.reset()
    text = path.read_text()
    assert "door.changed" in text and "uplink.retry" in text
    assert "s3cret" not in text  # masked as on every path
    err = capsys.readouterr().err
    assert "uplink.retry" in err and "door.changed" not in err


def _act(port: int, path: str, body: dict, headers: dict | None = None, method="POST") -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    urllib.request.urlopen(request, timeout=10).read()


class Terminal:
    """A process on a pseudo-terminal ROWS x COLUMNS, as a person's shell runs it."""

    def __init__(self, *argv: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS)}
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        self.text = ""

    def read(self, seconds: float, until: str | None = None) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until in ANSI.sub("", self.text)):
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process is gone and its side closed
                    break
                if not chunk:
                    break
                self.text += chunk.decode(errors="replace")
        return ANSI.sub("", self.text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_on_a_terminal_the_address_token_and_storage_stay_on_the_screen():
    api, cloud, web = free_port(), free_port(), free_port()
    term = Terminal(
        *AGENT,
        "simulate",
        "--api-port",
        str(api),
        "--cloud-port",
        str(cloud),
        "--web-port",
        str(web),
    )
    log_path = None
    try:
        seen = term.read(20, until="act on it there")
        assert f"web view     http://127.0.0.1:{web}/" in seen, seen
        log_path = Path(re.search(r"  log {10}(\S+\.log)", seen).group(1))
        # A person at work: the cloud taken down (warnings: the agent's retries), doors
        # opened (info lines: the log file's), boards off the bus (warnings).
        _act(web, "/_sim/act", {"who": "fate", "do": "cloud_down"})
        token = {"Authorization": "Bearer simulator"}
        for key in range(8):
            _act(api, f"/api/lockers/cabinets/{key}", {"command": "open"}, token, "PUT")
        for board in (0, 1):
            _act(web, "/_sim/act", {"who": "fate", "do": "board_offline", "bus": "rs485",
                                    "board": board})  # fmt: skip
        term.read(40, until="kerong.board_offline")  # after its missed polls: seconds
        term.read(2)
        screen = term.read(0)
        assert "uplink.retry" in screen and "kerong.board_offline" in screen  # warnings shown
        assert "door.changed" not in screen  # info lines are the file's
        assert "still running" in screen  # the banner's last lines were written again
        shown = last_screen(term.text)
        for needed in (
            f"  web view     http://127.0.0.1:{web}/   (the locker, live; act on it there)",
            f"  agent API    http://127.0.0.1:{api}   token: simulator",
            f"  log          {log_path}   (all of it; warnings and errors here too)",
        ):
            assert needed in shown, "\n".join(shown)
        assert any(line.startswith("  storage      /") for line in shown), shown

        term.proc.send_signal(signal.SIGINT)
        assert term.proc.wait(10) == 0
        ending = term.read(3).rstrip().splitlines()[-1]
        assert ending == f"locker-agent simulate: its log stays in {log_path}"
        logged = log_path.read_text()
        assert "door.changed" in logged and "agent.stopped" in logged
        assert "\x1b[" not in logged  # readable in less, no colour codes
    finally:
        term.close()
        if log_path is not None:
            log_path.unlink(missing_ok=True)


SHORT = """
title = "cabinet 5 opens and shuts"
steps = [
  { cloud = "open", key = 5 },
  { expect = "cabinet", key = 5, state = "open", within = 5 },
]
"""


def test_a_scenario_with_log_file_keeps_its_steps_on_stdout_and_its_log_in_the_file(tmp_path):
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    path = tmp_path / "run.log"
    done = subprocess.run(
        [*AGENT, "simulate", "--scenario", str(scenario), "--log-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"scenario {scenario}: the log goes to {path}"
    assert lines[-1] == f"locker-agent simulate: its log stays in {path}"
    assert f"scenario {scenario}: passed" in lines
    logged = path.read_text()
    assert "door.changed" in logged and "agent.stopped" in logged
    assert "door.changed" not in done.stderr  # the info lines are the file's only
    assert "[warning" in done.stderr  # warnings (plain http to the fake cloud) on stderr too
    assert not done.stderr.lstrip().startswith("{")  # readable, not JSON


def test_a_log_file_that_cannot_be_opened_is_one_line_and_2(tmp_path, capsys):
    import argparse

    from simulator.cli import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    bad = str(tmp_path / "no-such-dir" / "sim.log")
    args = ["--api-port", "0", "--cloud-port", "0", "--web-port", "0", "--log-file", bad]
    assert command.main(parser.parse_args(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"locker-agent simulate: --log-file {bad}: [Errno 2]"), err
    assert len(err.splitlines()) == 1
