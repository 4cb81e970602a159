"""Import only what the config uses: a Kerong-only locker never loads gpiozero or the
GPIO driver, nor the simulator's and the fake cloud's packages; a GPIO bus does load
them. Each case in a fresh interpreter (a subprocess), its ``sys.modules`` read after
the agent's modules are imported and its drivers built from the config."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

BASE = """
[locker]
name = "Lazy"
[cloud]
url = "https://lockers.example.com"
api_key = "a-key-long-enough-for-the-check"
[api]
listen = "127.0.0.1:8080"
token = "a-token-long-enough-for-the-check-0123456789"
[storage]
dir = "{dir}"
"""

KERONG = """
[[buses]]
name = "rs485"
driver = "kerong-cu16"
port = "/dev/ttyUSB-not-opened"
boards = [0]
[[cabinets]]
key = 0
front = { bus = "rs485", board = 0, channel = 1 }
"""

GPIO = """
[[buses]]
name = "gpio"
driver = "gpio"
pin_factory = "mock"
[[cabinets]]
key = 0
front = { bus = "gpio", switch = "^!4", lock = 11 }
"""

PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    import agent.app, agent.cli  # everything `locker-agent run` imports
    from agent.config import load_config
    from agent.hardware.bridge import Hardware

    async def main():
        hardware = Hardware(load_config(sys.argv[1]), object())
        hardware.build()  # every driver of the config, no port opened
        await hardware.close()

    asyncio.run(main())
    wanted = ("gpiozero", "drivers.gpio.bus", "yaml", "openapi_schema_validator",
              "jsonschema", "simulator", "serial_asyncio_fast")
    print(json.dumps({name: name in sys.modules for name in wanted}))
    """
)


def loaded(tmp_path: Path, buses: str) -> dict[str, bool]:
    config = tmp_path / "agent.toml"
    config.write_text(BASE.format(dir=tmp_path / "storage") + buses)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_kerong_only_locker_does_not_import_gpiozero(tmp_path):
    modules = loaded(tmp_path, KERONG)
    assert modules == dict.fromkeys(modules, False)


def test_a_gpio_bus_does_import_gpiozero(tmp_path):
    modules = loaded(tmp_path, GPIO)
    assert modules["gpiozero"]
    assert modules["drivers.gpio.bus"]
