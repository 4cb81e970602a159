"""The fake cloud's orders: a code made or given, provisioned to the agent as its hash,
``collected`` once the agent told ``code_opened``; the simulator's virtual scanner."""

import hashlib

import pytest

from simulator.run import Simulation
from simulator.scanner import VirtualScanner
from simulator.web.actions import Actions, StepError


async def until(check, timeout=10.0):
    import asyncio

    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_an_order_made_is_provisioned_and_collected_by_a_scan(tmp_path):
    sim = Simulation(storage_dir=tmp_path, auto_shut_after_s=None)
    await sim.start()
    try:
        actions = Actions(sim)
        await sim.cloud.wait_for_agent(10)
        result = await actions.run({"who": "cloud", "do": "order", "key": 3})
        assert result["ok"] is True, result
        order = result["order"]
        assert order["id"] == 46188 and len(order["open_code"]) >= 40  # as the spec's
        assert sim.agent is not None and sim.agent.codes.held.match(order["open_code"])
        stored = (tmp_path / "codes.sqlite3").read_bytes()
        assert order["open_code"].encode() not in stored
        assert hashlib.sha256(order["open_code"].encode()).hexdigest() != order["open_code"]
        await actions.run({"who": "person", "do": "scan", "code": order["open_code"]})
        await until(lambda: sim.door_open(3))
        await until(lambda: sim.cloud.orders[0]["collected"])
    finally:
        await sim.close()


async def test_scan_and_order_refuse_bad_input(tmp_path):
    sim = Simulation(storage_dir=tmp_path)
    await sim.start()
    try:
        actions = Actions(sim)
        with pytest.raises(StepError, match="code"):
            await actions.run({"who": "person", "do": "scan", "code": ""})
        with pytest.raises(StepError, match="reader"):
            await actions.run({"who": "person", "do": "scan", "code": "x", "reader": "nope"})
        with pytest.raises(StepError, match="key"):
            await actions.run({"who": "cloud", "do": "order", "key": "three"})
        await sim.cloud.wait_for_agent(10)
        refused = await actions.run({"who": "cloud", "do": "order", "key": 999})
        assert (
            refused["ok"] is False and "key" in refused["answer"]["error"]["errors"]["put.0.key"][0]
        )
    finally:
        await sim.close()


def test_a_virtual_scanner_types_a_line():
    import os

    scanner = VirtualScanner()
    scanner.start()
    try:
        fd = os.open(scanner.path, os.O_RDONLY | os.O_NOCTTY)
        scanner.scan("ABC-123")
        assert os.read(fd, 100) == b"ABC-123\r\n"
        os.close(fd)
        with pytest.raises(ValueError):
            scanner.scan("two\nlines")
    finally:
        scanner.close()
