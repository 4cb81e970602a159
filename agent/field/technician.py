"""``status``, ``open`` and ``selftest``: the running agent, asked on its Unix socket.

The agent holds the serial ports, so a technician's command never talks to the
hardware itself: it asks the running agent through ``AgentChannel``
(``agent/field/channel.py``) on the socket the config file names
(``Config.api_socket``: ``[api] socket``, else ``/run/locker-agent/agent.sock``
with the service's storage, else ``agent.sock`` in ``[storage] dir``), or
``--socket PATH``. The server proves to be the agent by its credentials before a
byte is sent; the token is never used. Everything printed that came from the agent
goes through ``printable`` (control characters escaped).

- ``locker-agent status``: every cabinet as a table (doors, enabled, occupied,
  size, thermal, alarms), then the agent's health;
- ``locker-agent open KEY [--rear]``: open one door; prints the cabinet after;
- ``locker-agent selftest [--rear] [--yes] [--pause-s S]``: says which cabinets it
  will open and which it spares (disabled; occupied: the item sensor reads an
  item), asks (``--yes`` skips the question; without a terminal and without
  ``--yes`` it refuses), then opens each one in turn through the agent's normal
  open (one at a time, ``pause_s`` apart), looking at each again just before.

A new command (``thermal reset KEY``) is a function of an ``AgentChannel``, e.g.
``channel.call("POST", f"/api/lockers/cabinets/{key}/thermal/reset")``, printing
through ``printable``; ``run_command`` gives it the channel and the exit statuses,
``main`` dispatches it, and ``add_socket_arguments`` + ``socket_path`` are how it
finds the socket, as every command here does.

Exit status: 0 when all is well, 1 when a door did not open or the agent is
degraded, 2 when the agent cannot be reached (or something else serves its
socket), 3 when the selftest was not confirmed (nothing opened).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from agent.config import ConfigError, load_config
from agent.config.text import printable as p
from agent.field.channel import AgentChannel, AgentUnreachable
from agent.field.verdict import say_problems
from agent.thermal import cli as thermal_cli

NOT_CONFIRMED = 3
DEFAULT_CONFIG = "/etc/locker-agent/agent.toml"

HEADER = (
    f"{'key':>5}  {'front':<8} {'rear':<8} {'enabled':<8} {'occupied':<9} {'size':<8}"
    f" {'thermal':<22} alarms"
)


class _Odd(Exception):
    """An answer without the fields of the local API's cabinet or health objects."""


def _row(cabinet: dict[str, Any]) -> str:
    alarms = ", ".join(
        p(a["type"]) + (f" ({p(a['side'])})" if a.get("side") else "") for a in cabinet["alarms"]
    )
    rear = cabinet.get("rear_load_status") or "-"
    return (
        f"{p(cabinet['key']):>5}  {p(cabinet['state']):<8} {p(rear):<8} "
        f"{'yes' if cabinet['enabled'] else 'no':<8} {'yes' if cabinet['occupied'] else 'no':<9}"
        f" {p(cabinet.get('size', '-')):<8} {_thermal(cabinet):<22} {alarms or '-'}"
    )


def _thermal(cabinet: dict[str, Any]) -> str:
    """``chill 3.9 C cooling``, ``heat ? (sensor failed)``, ``chill ? (sensor not known)``
    while the thermal loop is stalled, or ``-`` without a unit."""
    unit = cabinet.get("thermal")
    if not unit:
        return "-"
    temp = cabinet.get("temperature_c")
    sensor = unit["sensor"] or "not known"  # None: the thermal loop is stalled
    shown = f"{float(temp):.1f} C" if temp is not None else f"? (sensor {p(sensor)})"
    doing = " heating" if unit["heating"] else " cooling" if unit["cooling"] else ""
    return f"{p(unit['mode'])} {shown}{doing}"


def _cabinets(channel: AgentChannel) -> list[dict[str, Any]]:
    code, cabinets = channel.call("GET", "/api/lockers/cabinets")
    if code != 200 or not isinstance(cabinets, list):
        raise _Odd(f"the cabinets answered {code}: {_problem(cabinets)}")
    return cabinets


NEXT = {
    "LOCK_JAMMED": "the lock was pulsed twice and the door switch never read it open: check"
    " the lock's latch and the door's switch, then open again (a good opening clears the alarm)",
    "DOOR_OBSTRUCTED": "something is in the door's way: clear it, then open again",
    "BUSY": "the lock rests between pulses, or commands are queued: try again in a moment",
    "NOT_FOUND": "locker-agent status lists the cabinets this locker has",
}
"""What a technician does next, by the answer's error ``type`` (the message says why)."""


def _problem(answer: Any) -> str:
    """``BUSY: the lock rests 1.2 s more: try again...``: an error answer's type and
    message, and what to do next when the type has advice."""
    if isinstance(answer, dict):
        kind = answer.get("type", "?")
        said = f"{p(kind)}: {p(answer.get('message', ''))}"
        return f"{said}: {NEXT[kind]}" if kind in NEXT else said
    return p(answer)[:200]


def status(channel: AgentChannel) -> int:
    """Print the cabinets and the health; 1 when degraded."""
    cabinets = _cabinets(channel)
    code, health = channel.call("GET", "/healthz")
    print(HEADER)
    for cabinet in cabinets:
        print(_row(cabinet))
    reasons = "".join(f"\n  - {p(r)}" for r in health["reasons"])
    print(f"health: {p(health.get('status'))}{reasons}")
    return 0 if code == 200 else 1


def open_door(channel: AgentChannel, key: int, rear: bool) -> int:
    """Open one door; 1 when the agent refused or the door did not open."""
    code, answer = channel.call(
        "PUT", f"/api/lockers/cabinets/{key}", {"command": "open", "rearload": rear}
    )
    if code != 200:
        print(f"cabinet {key}: {_problem(answer)}", file=sys.stderr)
        return 1
    print(HEADER)
    print(_row(answer))
    return 0


def _key(cabinet: dict[str, Any]) -> int:
    """A cabinet's key, which goes into a request's path: a number, or ``_Odd``."""
    key = cabinet["key"]
    if type(key) is not int:
        raise _Odd(f"a cabinet key that is not a number: {p(key)[:40]}")
    return key


def spared(cabinet: dict[str, Any], rear: bool) -> str | None:
    """Why the selftest leaves ``cabinet`` shut (``disabled``, ``occupied``, ``item
    sensor unknown``, ``no rear door``), or None to open it: only a cabinet known empty
    is opened."""
    if rear and cabinet.get("rear_load_status") is None:
        return "no rear door"
    if not cabinet["enabled"]:
        return "disabled"
    if cabinet["occupied"] is None:
        return "item sensor unknown (its board does not answer): it may hold an item"
    if cabinet["occupied"]:
        return "occupied (the item sensor reads an item)"
    return None


def selftest(
    channel: AgentChannel,
    rear: bool,
    pause_s: float,
    confirm: Callable[[str], bool],
) -> int:
    """Open each enabled, empty cabinet's door once, in turn, once ``confirm(question)`` agrees.

    Prints a line per cabinet and a summary. Answers 1 if a door did not open,
    ``NOT_CONFIRMED`` (nothing opened) when not confirmed, else 0.
    """
    side = "rear" if rear else "front"
    cabinets = _cabinets(channel)
    plan = [(c, spared(c, rear)) for c in cabinets]
    chosen = [str(_key(c)) for c, why in plan if why is None]
    spare = [f"{_key(c)} ({why})" for c, why in plan if why and why != "no rear door"]
    print(
        f"selftest: opens the {side} door of {len(chosen)} cabinet(s), one at a time:"
        f" {', '.join(chosen) or 'none'}"
    )
    if spare:
        print(f"selftest: spares {', '.join(spare)}")
    if not chosen:
        return 0
    if not confirm(f"Open {len(chosen)} {side} door(s) now? [y/N] "):
        print("selftest: not confirmed, nothing opened", file=sys.stderr)
        return NOT_CONFIRMED
    print(f"{'key':>5}  {side:<6} result")
    opened = failed = late = 0
    for cabinet, why in plan:
        if why is not None:
            if why != "no rear door":
                print(f"{_key(cabinet):>5}  {side:<6} spared: {why}")
            continue
        key = _key(cabinet)
        code, now = channel.call("GET", f"/api/lockers/cabinets/{key}")  # as it is now
        why = spared(now, rear) if code == 200 else None
        if why is not None:  # filled or disabled since the plan
            late += 1
            print(f"{key:>5}  {side:<6} spared: {why}")
            continue
        code, answer = channel.call(
            "PUT", f"/api/lockers/cabinets/{key}", {"command": "open", "rearload": rear}
        )
        state = answer.get("rear_load_status" if rear else "state") if code == 200 else None
        ok = code == 200 and state == "open"
        opened += ok
        failed += not ok
        why_not = _problem(answer) if code != 200 else f"the switch reads {p(state)}"
        result = "opened" if ok else f"FAIL {why_not}"
        print(f"{key:>5}  {side:<6} {result}")
        time.sleep(pause_s)
    counts = f"{opened} opened, {len(spare) + late} spared, {failed} failed"
    print(f"selftest: {counts}" if failed else f"selftest: all opened ({counts})")
    return 1 if failed else 0


def ask(question: str, stdin: TextIO = sys.stdin) -> bool:
    """``question`` on stdout, a yes (``y``, ``yes``) from the terminal on ``stdin``."""
    print(question, end="", flush=True)
    answer = stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def add_arguments(sub: Any) -> None:
    """The three subcommands on ``sub`` (argparse subparsers); each takes the config
    (for the socket's path) or ``--socket``."""
    for name, text in (
        ("status", "the running agent's cabinets as a table, with alarms and health"),
        ("open", "open one cabinet's door through the running agent"),
        (
            "selftest",
            "open every enabled, empty cabinet in turn (asks first) and confirm each switch",
        ),
    ):
        parser = sub.add_parser(
            name,
            help=text,
            description=f"{text}. Asks the running agent on its Unix socket (the config"
            " file's [api] socket; see README 'On a locker'), as root, the service user"
            " or a member of the group locker-agent; the token is not used.",
        )
        add_socket_arguments(parser)
        if name == "open":
            parser.add_argument("key", type=int, help="the cabinet's key")
        if name in ("open", "selftest"):
            parser.add_argument("--rear", action="store_true", help="the rear-load door")
        if name == "selftest":
            parser.add_argument(
                "--yes", action="store_true", help="do not ask (needed without a terminal)"
            )
            parser.add_argument("--pause-s", type=float, default=1.0, help="between two opens")


def add_socket_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (where the agent's socket is; default the locker's own file) and
    ``--socket PATH``: how each command that asks the running agent finds it
    (``status``, ``open``, ``selftest``, ``thermal reset``); ``socket_path`` reads them."""
    parser.add_argument(
        "--config",
        dest="config_flag",
        metavar="FILE",
        default=DEFAULT_CONFIG,
        help="the TOML config file: where the agent's socket is",
    )
    parser.add_argument(
        "--socket", type=Path, metavar="PATH", help="the agent's socket; the config is not read"
    )


def socket_path(args: argparse.Namespace) -> Path | None:
    """The agent's socket: ``--socket``, else the one the config file names
    (``Config.api_socket``); None when that file cannot be loaded (its problems, and that
    ``--socket`` alone is enough, said on stderr)."""
    if args.socket is not None:
        return Path(args.socket)
    try:
        return load_config(args.config_flag).api_socket
    except ConfigError as err:
        say_problems(args.config_flag, err.problems)
        print(SOCKET_HINT, file=sys.stderr)
        for found in simulators():
            print(f"  (a simulator runs here: --socket {found})", file=sys.stderr)
        return None


SOCKET_HINT = (
    "  (status, open, selftest and thermal reset need only the agent's socket: --socket"
    " /run/locker-agent/agent.sock on a locker)"
)
SIMULATOR_PREFIX = "locker-agent-sim-"  # `simulate`'s storage folder, in the temp dir


def simulators() -> list[Path]:
    """The sockets of this user's simulators that take a connection now, in name order:
    not one in a folder left by a crash, nor in one another user made (a lure: its
    answers would be believed)."""
    found = []
    for path in sorted(Path(tempfile.gettempdir()).glob(f"{SIMULATOR_PREFIX}*/agent.sock")):
        try:
            if {path.parent.lstat().st_uid, path.lstat().st_uid} != {os.getuid()}:
                continue
            # The channel's own check: served, and by the agent's users (its peer's uid).
            AgentChannel(path, timeout_s=0.5).connect().close()
        except (OSError, AgentUnreachable):
            continue
        found.append(path)
    return found


def run_command(name: str, path: Path, work: Callable[[AgentChannel], int]) -> int:
    """``work(channel)`` on the agent's socket; 2 (said on stderr) when the agent
    cannot be reached or its answer is not the API's."""
    try:
        return work(AgentChannel(path))
    except AgentUnreachable as exc:
        print(
            f"locker-agent {name}: the agent does not answer: {exc}"
            " (systemctl status locker-agent)",
            file=sys.stderr,
        )
    except (_Odd, KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f": {exc}" if isinstance(exc, _Odd) else ""
        print(f"locker-agent {name}: the agent's answer is not understood{detail}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace, path: Path) -> int:
    """Run ``args.cmd`` (``status``, ``open``, ``selftest``, ``thermal reset``) against the
    agent's socket at ``path`` (``socket_path``)."""
    if args.cmd == "status":
        return run_command("status", path, status)
    if args.cmd == "open":
        return run_command("open", path, lambda c: open_door(c, args.key, args.rear))
    if args.cmd == "thermal":
        by = args.by or thermal_cli.who()  # a note: the agent records who asks, by the socket
        return run_command(
            "thermal reset",
            path,
            lambda c: thermal_cli.reset(args.key, by, args.reason, c.call),
        )
    if not args.yes and not sys.stdin.isatty():
        print(
            "locker-agent selftest: it opens doors, and asks first; without a terminal, pass --yes",
            file=sys.stderr,
        )
        return NOT_CONFIRMED
    confirm = (lambda _: True) if args.yes else ask
    return run_command("selftest", path, lambda c: selftest(c, args.rear, args.pause_s, confirm))
