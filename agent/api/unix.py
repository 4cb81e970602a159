"""The local API on the technicians' Unix socket: the same application, admitted by
the peer's credentials instead of the token.

``PeerSite`` is an aiohttp ``UnixSite`` on the runner that also serves TCP: same
routes, same handlers, same middlewares. Each connection passes a
``ConnectionGate`` (cap, deadlines, head checks) whose peer check reads
``SO_PEERCRED`` and refuses, with a 403 before anything it sends is parsed, a peer
the ``PeerPolicy`` does not name; the requests of an admitted peer need no token.

The socket file's life:

- **Start.** A socket file left by a crashed agent (nobody listens) is replaced. One
  that a live agent serves (root or this user listening) stops the start:
  ``SocketUnavailable``, one line. One served by anybody else is taken back (a
  squatter cannot keep the agent down). Anything else at the path (a file, a
  directory) stops the start too: it is not ours to remove.
- **Publish.** The socket is bound under a temporary name beside the path, made
  ``0660`` (group ``locker-agent`` when the agent runs as root), listening, then
  renamed over the path: it appears whole, never with looser modes or not yet
  listening.
- **Stop.** The file is removed first, if it is still the one this agent made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.api.guard import ConnectionGate
from agent.api.peers import SERVICE_GROUP, PeerPolicy, group_id, peer_of, unix_address

log = structlog.get_logger(__name__)

SOCKET_MODE = 0o660
PROBE_TIMEOUT_S = 1.0


class SocketUnavailable(OSError):
    """The socket's path cannot be served: another agent serves it, or something that
    is not a socket is there, or its directory refuses (the message says which)."""


def peer_check(policy: PeerPolicy) -> Callable[[Any], str | None]:
    """A ``ConnectionGate`` peer check: the transport's socket -> None (served) or why
    not (a peer without credentials, or one ``policy`` refuses)."""

    def check(sock: Any) -> str | None:
        try:
            peer = peer_of(sock)
        except (OSError, TypeError):
            return "a peer without credentials is not served"
        refusal = policy.refusal(peer)
        if refusal is None:
            log.debug("api.peer", peer=peer.describe())
        return refusal

    return check


class PeerSite(web.UnixSite):
    """The runner's application on a Unix socket at ``path``, each connection through
    ``gate``. ``start()`` raises ``SocketUnavailable`` (see the module)."""

    def __init__(self, runner: web.BaseRunner, path: Path, gate: ConnectionGate) -> None:
        super().__init__(runner, path)
        self._socket_path = path
        self._gate = gate
        self._node: tuple[int, int] | None = None  # (st_dev, st_ino) of the file made

    @property
    def path(self) -> Path:
        """Where the socket is served."""
        return self._socket_path

    async def start(self) -> None:
        """Claim the path, bind, listen, publish (rename into place)."""
        await web.BaseSite.start(self)  # registered with the runner; UnixSite's bind is ours
        path = self._socket_path
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            _claim(path)
        except SocketUnavailable:
            raise
        except OSError as err:
            raise SocketUnavailable(f"cannot serve {path}: {err.strerror or err}") from None
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(temporary) as address:
                sock.bind(address)
            os.chmod(temporary, SOCKET_MODE)
            if os.geteuid() == 0 and (gid := group_id(SERVICE_GROUP)) is not None:
                os.chown(temporary, -1, gid)
            node = os.stat(temporary)
            sock.listen(self._backlog)
            server = self._runner.server
            assert server is not None
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(
                self._gate.factory(server), sock=sock, backlog=self._backlog
            )
            os.replace(temporary, path)
        except OSError as err:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if self._server is not None:
                self._server.close()
                self._server = None
            raise SocketUnavailable(f"cannot serve {path}: {err.strerror or err}") from None
        self._node = (node.st_dev, node.st_ino)
        log.info("api.socket", path=str(path))

    async def stop(self) -> None:
        """Remove the socket file (if it is still ours), then stop accepting."""
        self._remove()
        await super().stop()

    def _remove(self) -> None:
        if self._node is None:
            return
        try:
            found = os.lstat(self._socket_path)
            if (found.st_dev, found.st_ino) == self._node:
                os.unlink(self._socket_path)
        except OSError:
            pass  # already gone, or replaced by a newer agent's: theirs now
        self._node = None


def _claim(path: Path) -> None:
    """Make ``path`` free to be replaced, or raise ``SocketUnavailable`` (module doc)."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise SocketUnavailable(
            f"{path} exists and is not a socket: move it away, or set [api] socket"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    with probe:
        try:
            with unix_address(path) as address:
                probe.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("api.socket_stale", path=str(path))  # a crashed agent's: replaced
            return
        except OSError as err:
            log.warning("api.socket_replaced", path=str(path), error=type(err).__name__)
            return
        peer = peer_of(probe)
    if peer.uid in (0, os.geteuid()):
        raise SocketUnavailable(
            f"another agent serves {path} ({peer.describe()}): stop it first"
            " (systemctl stop locker-agent), or set [api] socket"
        )
    log.warning("api.socket_squatter_replaced", path=str(path), holder=peer.describe())
