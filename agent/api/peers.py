"""Who is at the other end of a Unix socket, by the kernel's word, and who may be.

Both ends of the technicians' socket use this: the agent admits a connection by
its peer's credentials (``PeerPolicy.for_agent``: root, the agent's own user, the
service's group) instead of the bearer token, and the CLI talks only to a server
whose credentials say root, the service user or itself (``trusted_servers``),
before it sends a byte. ``SO_PEERCRED`` gives the process, user and group of the
peer as they were at ``connect()`` (of a client) or ``listen()`` (of a server);
nobody can forge them, whatever the socket file's owner or mode says.

Linux only (``SO_PEERCRED``, ``SO_PEERGROUPS``, ``/proc/self/fd``). Standard
library only: the CLI imports this without the server.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_USER = "locker-agent"
"""The user the unit runs the agent as (``systemd/locker-agent.service``)."""
SERVICE_GROUP = "locker-agent"
"""Its group: members may use the technicians' socket (``usermod -aG locker-agent``)."""

SUN_PATH_MAX = 107  # bytes of a socket path, beside its NUL (sockaddr_un)
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13; 59 on arm and x86
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_GROUPS = 256  # Python reads at most 1024 bytes of an option


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end: ``pid``, ``uid``, primary ``gid`` and every group
    (``groups``, the primary included) as they were when it connected or listened."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]

    def describe(self) -> str:
        """``pid 812 (uid 65534 nobody)``, for messages and logs."""
        return f"pid {self.pid} (uid {self.uid} {user_name(self.uid)})"


def peer_of(sock: Any) -> Peer:
    """The credentials of ``sock``'s peer (a connected ``AF_UNIX`` stream socket, or
    asyncio's wrapper of one). ``OSError`` when the socket has none (not Unix)."""
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    groups = {gid}
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_GROUPS)
        groups.update(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:  # an older kernel, or more groups than asked for: the accounts say
        with contextlib.suppress(KeyError, OSError):
            groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    return Peer(pid, uid, gid, frozenset(groups))


def user_name(uid: int) -> str:
    """The account name of ``uid``, or ``?`` when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "?"


def group_id(name: str) -> int | None:
    """The id of group ``name``; None when there is no such group (a laptop)."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def service_uid() -> int | None:
    """The uid of ``SERVICE_USER``; None when there is no such user (a laptop)."""
    try:
        return pwd.getpwnam(SERVICE_USER).pw_uid
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Which peers the agent serves on its socket: any of ``uids``, or a member of any
    of ``gids`` (primary or supplementary)."""

    uids: frozenset[int]
    gids: frozenset[int]

    @classmethod
    def for_agent(cls, group: str = SERVICE_GROUP) -> PeerPolicy:
        """Root, the running agent's own user, and the members of ``group``."""
        gid = group_id(group)
        return cls(frozenset({0, os.geteuid()}), frozenset() if gid is None else frozenset({gid}))

    def refusal(self, peer: Peer) -> str | None:
        """None when ``peer`` may ask; else why not, in one sentence."""
        if peer.uid in self.uids or peer.groups & self.gids:
            return None
        return (
            f"{peer.describe()} may not use this socket: it serves root, the agent's"
            f" user and the group {SERVICE_GROUP}"
        )


def trusted_servers() -> frozenset[int]:
    """The users the CLI believes to be the agent: root, the service user, and the
    user running the CLI (a developer's own agent on a laptop)."""
    uids = {0, os.getuid(), os.geteuid()}
    if (uid := service_uid()) is not None:
        uids.add(uid)
    return frozenset(uids)


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address naming ``path`` for ``bind`` or ``connect``, however long the path.

    The path itself when it fits ``sun_path`` (107 bytes), else ``/proc/self/fd/N/NAME``
    through a descriptor of its directory, held open while the block runs. Raises
    ``OSError`` (e.g. ``FileNotFoundError``) when that directory cannot be opened.
    """
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
