"""The technician's channel to the running agent: its Unix socket, and proof first.

``AgentChannel(path).call(method, target, body)`` connects to the socket, reads the
server's credentials from the kernel (``SO_PEERCRED``: who called ``listen()``) and
goes on only when that is root, the service user or the user running the command
(``agent.api.peers.trusted_servers``); anything else is refused before a byte is
sent (``NotTheAgent``). Then one HTTP/1.1 request of the local API, without the
token: the agent admits the connection by our own credentials. The token is never
read for this, let alone sent; the TCP port, which anybody may bind while the agent
is down, is never asked.

Errors are ``AgentUnreachable`` with one sentence to print as it is (paths and
process names in it are already escaped): no socket (the agent is not running), a
socket nobody serves (it crashed), one we may not open, a server that is not the
agent, an answer that is not the API's.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from agent.api.peers import (
    SERVICE_GROUP,
    SERVICE_USER,
    Peer,
    peer_of,
    trusted_servers,
    unix_address,
)
from agent.config.text import printable
from agent.field.probes import command_line

TIMEOUT_S = 30.0  # an open waits for its confirmation, a retry, and its turn at the lock
MAX_ANSWER = 4 * 1024 * 1024  # bytes: 160 cabinets are about 100 KiB
_HOW = f"run it as root (sudo) or as a member of the group {SERVICE_GROUP}"


class AgentUnreachable(Exception):
    """The running agent cannot be asked; ``str()`` is one sentence, safe to print."""


class NotTheAgent(AgentUnreachable):
    """Something other than the agent serves the socket: refused, nothing was sent."""


class AgentChannel:
    """Requests to the agent on the Unix socket at ``path``, a connection each.

    Only to a server whose uid is in ``trusted`` (default ``trusted_servers()``);
    ``timeout_s`` per request, seconds.
    """

    def __init__(
        self, path: Path, trusted: frozenset[int] | None = None, timeout_s: float = TIMEOUT_S
    ) -> None:
        self.path = path
        self.trusted = trusted_servers() if trusted is None else trusted
        self.timeout_s = timeout_s

    def call(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        """``(status, JSON answer)`` of ``method target`` (a body is sent as JSON).

        A 401 or 403 (the agent refuses our credentials) raises ``AgentUnreachable``
        like a connection that fails, with the agent's message; so does an answer that
        is not JSON or is over ``MAX_ANSWER`` bytes."""
        conn = _Connection(self)
        try:
            headers = {"Content-Type": "application/json"} if method not in ("GET", "HEAD") else {}
            payload = None if body is None else json.dumps(body).encode()
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
        except AgentUnreachable:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise AgentUnreachable(f"{self._where()}: {type(exc).__name__}") from None
        finally:
            conn.close()
        if len(raw) > MAX_ANSWER:
            raise AgentUnreachable(f"{self._where()}: an answer over {MAX_ANSWER} bytes")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise AgentUnreachable(f"{self._where()}: an answer that is not JSON") from None
        if response.status in (401, 403):
            message = answer.get("message") if isinstance(answer, dict) else None
            raise AgentUnreachable(
                f"the agent at {self._where()} refuses this user ({printable(message)}): {_HOW}"
            )
        return response.status, answer

    def connect(self) -> socket.socket:
        """A connected socket whose server proved to be the agent; else
        ``AgentUnreachable`` (``NotTheAgent`` when someone else serves the path)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            with unix_address(self.path) as address:
                sock.connect(address)
            peer = peer_of(sock)
        except (FileNotFoundError, NotADirectoryError):
            sock.close()
            raise AgentUnreachable(f"no socket at {self._where()}: is it running?") from None
        except ConnectionRefusedError:
            sock.close()
            raise AgentUnreachable(
                f"nobody serves {self._where()} (left by an agent that stopped): is it running?"
            ) from None
        except PermissionError:
            sock.close()
            raise AgentUnreachable(f"{self._where()}: permission denied: {_HOW}") from None
        except OSError as exc:
            sock.close()
            raise AgentUnreachable(f"{self._where()}: {type(exc).__name__}") from None
        if peer.uid not in self.trusted:
            sock.close()
            raise NotTheAgent(self._not_the_agent(peer))
        return sock

    def _where(self) -> str:
        return printable(self.path)

    def _not_the_agent(self, peer: Peer) -> str:
        return (
            f"{self._where()} is served by {peer.describe()}: {command_line(peer.pid)},"
            f" not by the agent (root, {SERVICE_USER} or you): refused, nothing was sent"
        )


class _Connection(http.client.HTTPConnection):
    """``http.client`` on the channel's checked socket (``Host: localhost``)."""

    def __init__(self, channel: AgentChannel) -> None:
        super().__init__("localhost", timeout=channel.timeout_s)
        self._channel = channel

    def connect(self) -> None:
        """The Unix socket, its server's credentials checked."""
        self.sock = self._channel.connect()
