"""status, open and selftest against a running (simulated) agent, through its local API."""

import asyncio
import sys

from simulator.run import Simulation


def config_for(tmp_path, sim: Simulation):
    """A technician's config file: the agent's API address and token (the rest valid)."""
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[cloud]\nurl = "{sim.cloud.url}"\napi_key = "k-9f3Qx1"\n'
        f'[api]\nlisten = "{sim.api_url.removeprefix("http://")}"\ntoken = "{sim.token}"\n'
        f'[storage]\ndir = "{tmp_path}"\n'
        '[[buses]]\nname = "rs485"\nport = "/dev/ttyUSB9"\nboards = [0]\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "rs485", board = 0, channel = 1 }\n'
    )
    return path


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_status_open_and_selftest(tmp_path):
    def quick(data):
        data["buses"][0].update(pulse_s=0.1, stagger_s=0.0)

    # The person shuts a door 5 s after it opened: long enough for `status` (a
    # subprocess, up to a second to start on a loaded machine) to see the alarm.
    sim = Simulation(auto_shut_after_s=5.0, adjust=quick)
    await sim.start()
    try:
        path = str(config_for(tmp_path, sim))
        code, out, _ = await cli("open", "5", "--config", path)
        assert code == 0 and " 5  open" in out
        sim.boards.force_open(0, 8)  # cabinet 7, by hand: an alarm
        async with asyncio.timeout(5):
            while ("door_forced_open", "front") not in sim.agent.locker.get(7).alarms:
                await asyncio.sleep(0.02)
        code, out, _ = await cli("status", "--config", path)
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["key", "front", "rear"]
        assert len([line for line in lines if line[:5].strip().isdigit()]) == 16
        assert "door_forced_open (front)" in out
        code, out, _ = await cli("selftest", "--config", path, "--pause-s", "0.05")
        assert "selftest: all opened" in out, out
        assert len(sim.boards.bank.unlocked) >= 17  # the open, then one per cabinet
        code, _, _ = await cli("open", "99", "--config", path)
        assert code == 1
    finally:
        await sim.close()
    code, _, err = await cli("status", "--config", path)
    assert code == 2 and "does not answer" in err
