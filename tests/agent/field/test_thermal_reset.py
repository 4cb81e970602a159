"""``locker-agent thermal reset``, as a technician runs it against ``locker-agent run``:
the reset is logged and recorded with who really asked (the socket's peer, by the
kernel's word), the ``--by`` text kept as their note, never in its place."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import sqlite3

from simulator.run import free_port
from tests.agent.thermal.test_run_faults import (
    COLD,
    HOT,
    agent_process,
    cloud,  # noqa: F401 (a fixture)
    config,
    said,
    until,
    write_sensor,
)
from tests.conftest import run_agent


def latch_log(path) -> list[tuple[str, str, str]]:
    """(event, alarm, by) of every latch log row, oldest first, read-only."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT event, alarm, by FROM latch_log ORDER BY rowid").fetchall()


async def test_a_reset_records_the_peer_who_asked_and_keeps_by_as_a_note(
    tmp_path,
    cloud,  # noqa: F811
):
    port = free_port()
    w1 = tmp_path / "w1"
    write_sensor(w1, HOT, 60.0)
    write_sensor(w1, COLD, 3.0)
    path = config(tmp_path, cloud, port)
    async with agent_process(path, port) as agent:
        status, _ = await agent.put(0, {"command": "set_thermal_mode", "thermal_mode": "heat"})
        assert status == 200
        write_sensor(w1, HOT, 95.0)  # over the limit (90 C): latched off
        await until(lambda: said(cloud, "temperature_over_limit"))
        write_sensor(w1, HOT, 60.0)
        done = await asyncio.to_thread(
            run_agent,
            "thermal", "reset", "0", "--config", path, "--by", "Ana", "--reason", "relay replaced",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "cabinet 0: reset temperature_over_limit" in done.stdout
    rows = latch_log(tmp_path / "state" / "thermal.sqlite3")
    # The reset's row (a loaded host may show the cabinet latching again after it, from
    # a round that read the sensor before it fell: that row is not this test's claim).
    resets = [row for row in rows if row[0] == "reset"]
    assert len(resets) == 1, rows
    (event, alarm, by) = resets[0]
    assert (event, alarm) == ("reset", "temperature_over_limit")
    user = re.escape(pwd.getpwuid(os.geteuid()).pw_name)
    pattern = (
        rf"{user} \(uid {os.geteuid()}, pid \d+\) on the agent's socket,"
        r" noted as 'Ana': relay replaced"
    )
    assert re.fullmatch(pattern, by), by
