"""``locker-agent bus scan`` against the KR-CU16 emulator on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import sys

import pytest

from agent.field import busscan
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import AGENT, CLOUD_KEY, agent_running, write_small_config


@pytest.fixture
async def boards():
    emulator = KerongBoardEmulator([0, 1, 2])
    await emulator.start()
    yield emulator
    await emulator.close()


async def scan(port, bauds, boards=range(16), timeout_s=0.1):
    # pyserial blocks: in a thread, so the emulator's loop answers meanwhile.
    return await asyncio.to_thread(busscan.scan, port, bauds, boards, timeout_s=timeout_s)


async def test_every_board_that_answers_is_found_once(boards):
    boards.force_open(1, 3)
    found = await scan(boards.port, [19200])
    assert [(baud, p.board, p.replies, p.garbled) for baud, p in found] == [
        (19200, 0, 1, False),
        (19200, 1, 1, False),
        (19200, 2, 1, False),
    ]
    status = found[1][1].status
    assert status is not None and status.lock_bits[2] is False  # channel 3 is open


async def test_two_boards_on_one_address_answer_twice(boards):
    boards.bank.twins.add(1)
    found = {p.board: p for _, p in await scan(boards.port, [19200], boards=[0, 1])}
    assert found[0].replies == 1
    assert found[1].replies == 2
    assert "answers 2 times: 2 boards are set to address 1" in busscan.describe(19200, found[1])


async def test_a_board_at_another_baud_is_found_at_its_baud(boards):
    boards.baud = 9600
    bauds = [busscan.DEFAULT_BAUD, *(b for b in busscan.BAUD_RATES if b != 19200)]
    # 0.2 s: a loaded host must not make the answering probe miss (the others cost it)
    found = await scan(boards.port, bauds, boards=[0, 4], timeout_s=0.2)
    assert [(baud, p.board) for baud, p in found] == [(9600, 0)]


async def test_an_echoing_adapter_is_not_a_second_board(boards):
    boards.echo = True
    (_, found), *rest = await scan(boards.port, [19200], boards=[2])
    assert (found.replies, found.garbled, rest) == (1, False, [])


async def test_replies_that_are_garbled_are_reported(boards):
    boards.bank.corrupt = 1.0  # one bit of every reply flipped
    ((_, found),) = await scan(boards.port, [19200], boards=[0])
    assert (found.replies, found.garbled) == (0, True)
    assert "garbled answer" in busscan.describe(19200, found)


async def run_cli(*args):
    proc = await asyncio.create_subprocess_exec(
        *AGENT,
        "bus",
        "scan",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_the_command_lists_boards_and_a_twin(boards):
    boards.bank.twins.add(2)
    code, out, err = await run_cli("--port", boards.port, "--baud", "19200")
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0] == f"bus scan: {boards.port}, boards 0-15, at 19200 baud"
    assert lines[1].startswith("board 0 at 19200 baud: answers (lock bits set: 16/16")
    assert lines[3].startswith("board 2 at 19200 baud: answers 2 times")
    assert lines[-1] == (
        "found: board 0 (19200 baud), board 1 (19200 baud), board 2 (19200 baud, twice)"
    )


async def test_the_command_on_a_clean_bus_exits_0(boards):
    code, out, _ = await run_cli("--port", boards.port, "--baud", "19200")
    assert code == 0
    assert out.splitlines()[-1].startswith("found: board 0 (19200 baud), board 1")


async def test_the_command_says_what_to_do_when_nothing_answers(boards):
    boards.baud = 9600
    code, out, _ = await run_cli("--port", boards.port, "--baud", "19200")
    assert code == 1
    assert out.splitlines()[-1] == (
        "found: no board answers: check power, A/B wiring and termination;"
        " omit --baud to try every speed"
    )


async def test_a_port_that_does_not_exist_is_one_clear_failure(tmp_path):
    code, _, err = await run_cli("--port", str(tmp_path / "ttyUSB9"))
    assert code == 1
    assert err.startswith(
        f"bus scan: cannot use {tmp_path / 'ttyUSB9'}: no such file: ls -l /dev/serial/by-id/"
        " lists the adapters plugged in (now: "
    )
    assert "Traceback" not in err and len(err.splitlines()) == 1


async def test_a_port_the_service_holds_says_to_stop_the_service(boards, cloud, tmp_path):
    """As doctor does: the running agent holds the port; the scan says to stop it (not to
    look in /dev/serial/by-id/, where the adapter is, plugged in)."""
    path = write_small_config(
        tmp_path,
        cloud=cloud.url,
        secret=f'api_key = "{CLOUD_KEY}"',
        port=boards.port,
        api_port=free_port(),
    )
    async with agent_running("run", "--config", path) as agent:
        await cloud.wait_for(lambda c: c == {"key": 0, "front_status": "closed"}, timeout=15)
        code, _, err = await run_cli("--port", boards.port, "--baud", "19200")
    assert code == 1
    assert err == (
        f"bus scan: cannot use {boards.port}: held by the running agent (pid {agent.pid}):"
        " sudo systemctl stop locker-agent, scan, then sudo systemctl start locker-agent"
        " (while it runs, sudo locker-agent status says which boards answer)\n"
    )


async def test_a_port_another_program_holds_names_it(boards):
    import serial

    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import serial, sys, time; s = serial.Serial(sys.argv[1], exclusive=True);"
        " print('held', flush=True); time.sleep(60)",
        boards.port,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert await holder.stdout.readline() == b"held\n"
        code, _, err = await run_cli("--port", boards.port, "--baud", "19200")
    finally:
        holder.kill()
        await holder.wait()
    assert code == 1
    assert "held by another process: pid " in err and f"pid {holder.pid} (" in err
    assert "stop it" in err and serial
