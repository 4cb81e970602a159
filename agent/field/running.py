"""What ``doctor`` learns from the running agent, asked as the technician's commands ask
it: on its Unix socket, its server's credentials checked before a byte is sent
(``agent/field/channel.py``), never on the TCP port (anybody may bind that while the
agent is down, and answer "all well").

``ask_agent`` gives its health or why it cannot be asked (not running, a socket left by
a crash, one served by something else); ``agent_line`` and ``as_the_agent_hears`` turn
that into doctor's ``(level, what, says)`` lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config.text import printable
from agent.field.channel import AgentChannel, AgentUnreachable, NotTheAgent

ASK_TIMEOUT_S = 5.0  # the running agent answers /healthz from memory
Found = tuple[str, str, str]  # (ok / FAIL / warn / skip, what, says)


@dataclass(frozen=True, slots=True)
class Health:
    """The running agent's ``GET /healthz``, asked on its socket (``where``, printable):
    the HTTP ``status`` (200 ready, 503 degraded) and its ``reasons``, printable."""

    where: str
    status: int
    reasons: list[str]


def ask_agent(socket_path: Path) -> Health | AgentUnreachable:
    """The running agent's health, asked on its socket at ``socket_path`` (its server's
    credentials checked before a byte is sent); the reason it cannot be asked, else."""
    try:
        status, body = AgentChannel(socket_path, timeout_s=ASK_TIMEOUT_S).call("GET", "/healthz")
    except AgentUnreachable as exc:
        return exc
    reasons = body.get("reasons") if isinstance(body, dict) else None
    if not isinstance(reasons, list):
        return AgentUnreachable(f"{printable(socket_path)}: an answer that is not its health")
    return Health(printable(socket_path), status, [printable(reason) for reason in reasons])


def agent_line(health: Health | AgentUnreachable) -> Found:
    """Whether the agent runs, as its socket says: healthy, degraded, not running, or
    a socket served by something else (refused, told nothing)."""
    if isinstance(health, NotTheAgent):
        return ("FAIL", "agent", f"{health}: stop that process, then restart locker-agent")
    if isinstance(health, AgentUnreachable):
        return ("skip", "agent", f"not asked ({health}): the checks below read the hardware")
    if health.status == 200:
        return ("ok", "agent", f"running, ready (asked on its socket {health.where})")
    count = len(health.reasons)
    return (
        "warn",
        "agent",
        f"running, degraded (HTTP {health.status}, asked on its socket {health.where}):"
        f" {count} reason{'s' if count != 1 else ''}; locker-agent status lists them",
    )


def as_the_agent_hears(what: str, health: Health | AgentUnreachable) -> Found:
    """The line of a bus whose port the running agent holds: what its ``health`` says
    of ``what`` (``bus NAME``), or that it cannot be asked."""
    if isinstance(health, AgentUnreachable):
        return (
            "warn",
            what,
            f"the agent holding it cannot be asked ({health}): systemctl status locker-agent",
        )
    mine = [r for r in health.reasons if r.startswith(f"{what}:") or r.startswith(f"{what} ")]
    if mine:
        return ("FAIL", what, f"the running agent says: {'; '.join(mine)}")
    return ("ok", what, f"the running agent hears every board (its health: HTTP {health.status})")
