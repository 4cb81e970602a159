"""``status``, ``open`` and ``selftest``: the running agent, asked through its local API.

The agent holds the serial ports, so a technician's command never talks to the
hardware itself: it reads ``[api] listen`` and the token from the same config
file and asks the running agent, exactly as an operator's tool would.

- ``locker-agent status``: every cabinet as a table (doors, enabled, occupied,
  alarms), then the agent's health;
- ``locker-agent open KEY [--rear]``: open one door; prints the cabinet after;
- ``locker-agent selftest [--rear] [--pause-s S]``: open every enabled cabinet's
  door in turn (one at a time, ``pause_s`` apart: the supply sees one lock at a
  time) and print whether each switch confirmed it.

Exit status: 0 when all is well, 1 when a door did not open or the agent is
degraded, 2 when the agent cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from agent.config import Config

TIMEOUT_S = 30.0  # an open waits for its confirmation, and a retry


class AgentUnreachable(Exception):
    """The running agent's local API did not answer."""


class _Client:
    def __init__(self, config: Config) -> None:
        host = config.api.host
        host = f"[{host}]" if ":" in host else host
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        self._base = f"http://{host}:{config.api.port}"
        self._headers = {"Authorization": f"Bearer {config.api.token.get_secret_value()}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=self._headers) as http,
                http.request(method, self._base + path, json=body) as resp,
            ):
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise AgentUnreachable(f"{self._base}: {type(exc).__name__}") from None


async def ask(config: Config, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the running agent, as ``open`` makes it: (status, JSON answer).
    Raises ``AgentUnreachable``. Other rooms' commands (``thermal reset``) call this."""
    return await _Client(config).call(method, path, body)


def _row(cabinet: dict[str, Any]) -> str:
    alarms = (
        ", ".join(a["type"] + (f" ({a['side']})" if a["side"] else "") for a in cabinet["alarms"])
        or "-"
    )
    rear = cabinet.get("rear_load_status") or "-"
    return (
        f"{cabinet['key']:>5}  {cabinet['state']:<8} {rear:<8} "
        f"{'yes' if cabinet['enabled'] else 'no':<8} {cabinet['occupied']:<9}"
        f" {_thermal(cabinet):<22} {alarms}"
    )


def _thermal(cabinet: dict[str, Any]) -> str:
    """``chill 3.9 C cooling``, ``heat ? (sensor failed)``, or ``-`` without a unit."""
    unit = cabinet.get("thermal")
    if not unit:
        return "-"
    temp = cabinet.get("temperature_c")
    shown = f"{temp:.1f} C" if temp is not None else f"? (sensor {unit['sensor']})"
    doing = " heating" if unit["heating"] else " cooling" if unit["cooling"] else ""
    return f"{unit['mode']} {shown}{doing}"


HEADER = (
    f"{'key':>5}  {'front':<8} {'rear':<8} {'enabled':<8} {'occupied':<9} {'thermal':<22} alarms"
)


async def status(config: Config) -> int:
    """Print the cabinets and the health; 1 when degraded."""
    client = _Client(config)
    _, cabinets = await client.call("GET", "/api/lockers/cabinets")
    code, health = await client.call("GET", "/healthz")
    print(HEADER)
    for cabinet in cabinets:
        print(_row(cabinet))
    print(f"health: {health.get('status')}" + "".join(f"\n  - {r}" for r in health["reasons"]))
    return 0 if code == 200 else 1


async def open_door(config: Config, key: int, rear: bool) -> int:
    """Open one door; 1 when the agent refused or the door did not open."""
    client = _Client(config)
    code, answer = await client.call(
        "PUT", f"/api/lockers/cabinets/{key}", {"command": "open", "rearload": rear}
    )
    if code != 200:
        print(f"cabinet {key}: {answer.get('type')}: {answer.get('message')}", file=sys.stderr)
        return 1
    print(HEADER)
    print(_row(answer))
    return 0


async def selftest(config: Config, rear: bool, pause_s: float) -> int:
    """Open each enabled cabinet's door in turn and print a table; 1 if any failed."""
    client = _Client(config)
    _, cabinets = await client.call("GET", "/api/lockers/cabinets")
    side = "rear" if rear else "front"
    failed = 0
    print(f"{'key':>5}  {side:<6} result")
    for cabinet in cabinets:
        if not cabinet["enabled"] or (rear and cabinet.get("rear_load_status") is None):
            continue
        code, answer = await client.call(
            "PUT", f"/api/lockers/cabinets/{cabinet['key']}", {"command": "open", "rearload": rear}
        )
        state = answer.get("rear_load_status" if rear else "state") if code == 200 else None
        ok = code == 200 and state == "open"
        failed += not ok
        result = "opened" if ok else f"FAIL {answer.get('type', code)}: {answer.get('message', '')}"
        print(f"{cabinet['key']:>5}  {side:<6} {result}")
        await asyncio.sleep(pause_s)
    print(f"selftest: {failed} of {len(cabinets)} failed" if failed else "selftest: all opened")
    return 1 if failed else 0


def add_arguments(sub: Any) -> None:
    """The three subcommands on ``sub`` (argparse subparsers); each takes the config."""
    for name, text in (
        ("status", "the running agent's cabinets as a table, with alarms"),
        ("open", "open one cabinet's door through the running agent"),
        ("selftest", "open every enabled cabinet in turn and confirm each switch"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument(
            "--config",
            dest="config_flag",
            metavar="FILE",
            default="/etc/locker-agent/agent.toml",
            help="the TOML config file",
        )
        if name == "open":
            parser.add_argument("key", type=int, help="the cabinet's key")
        if name in ("open", "selftest"):
            parser.add_argument("--rear", action="store_true", help="the rear-load door")
        if name == "selftest":
            parser.add_argument("--pause-s", type=float, default=1.0, help="between two opens")


def main(args: argparse.Namespace, config: Config) -> int:
    """Run ``args.cmd``; 2 when the agent cannot be reached."""
    try:
        if args.cmd == "status":
            return asyncio.run(status(config))
        if args.cmd == "open":
            return asyncio.run(open_door(config, args.key, args.rear))
        return asyncio.run(selftest(config, args.rear, args.pause_s))
    except AgentUnreachable as exc:
        print(
            f"locker-agent {args.cmd}: the agent does not answer at {exc}: is it running?"
            " (systemctl status locker-agent)",
            file=sys.stderr,
        )
        return 2
