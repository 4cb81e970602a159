"""What ``doctor`` looks at outside the config: the cloud, the holders of a serial port
or of a TCP port, the clock. Each returns what it found; ``doctor`` turns it into
ok/FAIL/warn lines, ``run`` and ``simulate`` name who holds a port they need.

The cloud probe never sends feedback: it POSTs an empty JSON object to the feedback
endpoint with the api-key. The cloud checks the key before the body, so 401/403
means the key is refused and 422 (the body: ``cabinets`` is required) means it was
accepted; nothing is recorded. The api-key is never printed, not even from an answer.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config import CloudConfig
from agent.config.text import printable

FEEDBACK_PATH = "/api/lockers/cabinet/status"
ANSWER_BYTES = 65536  # of the answer's body read before the connection is closed


@dataclass(frozen=True, slots=True)
class CloudAnswer:
    """How far the cloud probe got.

    ``ok``: the key was accepted (``detail``: the address the name resolved to);
    otherwise ``step`` failed (``resolve``, ``connect``, ``tls``, ``http``) and
    ``detail`` says how (never the key); ``status``: the HTTP status when one came.
    """

    ok: bool
    step: str
    detail: str
    status: int | None = None


def probe_cloud(cloud: CloudConfig, timeout_s: float = 5.0) -> CloudAnswer:
    """Resolve, connect (TLS verified for https, with ``cloud.ca_file`` if set) and ask
    the feedback endpoint with the api-key and an empty body; ``timeout_s`` per step."""
    parts = urlsplit(cloud.url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    key = cloud.api_key.get_secret_value()
    try:
        addresses = _resolve(host, port, timeout_s)
    except OSError as err:
        return CloudAnswer(False, "resolve", f"cannot resolve {host}: {err}")
    try:
        sock, address = _connect(addresses, timeout_s)
    except OSError as err:
        return CloudAnswer(False, "connect", f"cannot connect to {host}:{port}: {err}")
    conn: http.client.HTTPConnection
    try:
        if tls:
            cafile = str(cloud.ca_file) if cloud.ca_file else None
            context = ssl.create_default_context(cafile=cafile)
            sock = context.wrap_socket(sock, server_hostname=host)  # the handshake
            conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    except (ssl.SSLError, OSError) as err:
        sock.close()
        return CloudAnswer(False, "tls", _redact(f"TLS with {host} failed: {err}", key))
    conn.sock = sock  # the address reported is the one asked: no second DNS lookup
    path = (parts.path.rstrip("/") or "") + FEEDBACK_PATH
    headers = {"api-key": key, "Content-Type": "application/json", "Accept": "application/json"}
    # Each read waits timeout_s at most; the whole answer as long: a server that drips
    # a byte at a time is cut off (its socket shut from this timer's thread).
    cut = threading.Event()
    ended = threading.Lock()  # the answer read whole, or cut: whichever came first

    def cut_off() -> None:
        with ended:
            if whole:
                return
            cut.set()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the reads see the end

    whole = False  # a timer firing just after the last read cut nothing
    timer = threading.Timer(timeout_s, cut_off)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", path, body=b"{}", headers=headers)
        response = conn.getresponse()
        status, location = response.status, response.getheader("Location") or ""
        response.read(ANSWER_BYTES)  # unused: no more than this is read
        with ended:
            whole = not cut.is_set()  # cut meanwhile: what came may be cut short
    except ssl.SSLError as err:
        if not cut.is_set():
            return CloudAnswer(False, "tls", _redact(f"TLS with {host} failed: {err}", key))
    except (OSError, http.client.HTTPException) as err:
        if not cut.is_set():
            return CloudAnswer(False, "http", _redact(f"{host}:{port}: {err}", key))
    finally:
        timer.cancel()
        conn.close()
    if not whole:  # cut short (a header, a status): not an answer
        return CloudAnswer(False, "http", f"{host}:{port}: no whole answer within {timeout_s:g} s")
    if status in (401, 403):
        return CloudAnswer(False, "http", "refuses the api-key", status)
    if 300 <= status < 400:
        where = _redact(location, key) or "elsewhere"
        return CloudAnswer(False, "http", f"redirects to {where}", status)
    if status in (404, 405):
        return CloudAnswer(False, "http", f"has no feedback endpoint at {path}", status)
    if status >= 500:
        return CloudAnswer(False, "http", "fails on its side", status)
    return CloudAnswer(True, "http", address, status)


def _resolve(host: str, port: int, timeout_s: float) -> list[Any]:
    """``getaddrinfo`` bounded by ``timeout_s``: it has no timeout of its own, and a DNS
    server that does not answer holds it for the resolver's tries (20 s and more).
    Raises ``OSError`` (``TimeoutError`` when no answer came)."""
    found: list[Any] = []

    def work() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as err:
            found.append(err)

    # A daemon thread: one stuck in the resolver never holds doctor at its exit.
    thread = threading.Thread(target=work, name="resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not found:
        raise TimeoutError(f"no answer from DNS within {timeout_s:g} s")
    if isinstance(answer := found[0], OSError):
        raise answer
    return list(answer)


def _connect(addresses: list[Any], timeout_s: float) -> tuple[socket.socket, str]:
    """A TCP connection to the first of ``addresses`` (``getaddrinfo``'s) that takes
    one, each tried for ``timeout_s``, and its address: as ``create_connection`` does,
    without looking the name up again. Raises the last address's ``OSError``."""
    error: OSError = OSError("no address")
    for family, kind, proto, _, where in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout_s)
        try:
            sock.connect(where)
        except OSError as err:
            sock.close()
            error = err
            continue
        return sock, str(where[0])
    raise error


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def holders(device: str) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every other process with ``device`` open, by /proc
    (the processes this user may look at)."""
    target = os.path.realpath(device)
    return _holding(lambda link: link == target)


def is_agent(pid: int) -> bool:
    """Whether process ``pid`` is a running agent (``locker-agent run``, or ``simulate``,
    whose agent runs in the same process), by its argv
    (:func:`runs_agent`); False when it is gone or not ours to look at."""
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return runs_agent([arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]])


RUNS = ("run", "simulate")  # the commands that run an agent


def runs_agent(argv: Sequence[str]) -> bool:
    """Whether ``argv`` runs the agent: the program, or the script or module its Python
    runs, is ``locker-agent`` (``-m agent``), and its command is ``run`` or ``simulate``
    (the simulator's agent holds the simulated ports in its own process). Never a
    mention: ``python /opt/locker-agent/holder.py``, ``locker-agent bus scan`` and
    ``python x.py -m agent`` are not the agent; ``python -Im agent run`` is."""
    if not argv:
        return False
    if os.path.basename(argv[0]) == "locker-agent":
        return _command(argv[1:]) in RUNS
    rest, i = list(argv[1:]), 0
    while i < len(rest) and rest[i].startswith("-") and rest[i] != "-":
        arg = rest[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        for n, flag in enumerate(arg[1:], start=2):
            if flag in "cmWX":  # an option with a value: the rest of the word, or the next
                value = arg[n:] or (rest[i + 1] if i + 1 < len(rest) else "")
                after = i + (1 if arg[n:] else 2)
                if flag == "c":
                    return False
                if flag == "m":
                    return value == "agent" and _command(rest[after:]) in RUNS
                i = after
                break
        else:
            i += 1
    script = rest[i] if i < len(rest) else ""
    return os.path.basename(script) == "locker-agent" and _command(rest[i + 1 :]) in RUNS


def _command(args: Sequence[str]) -> str | None:
    """locker-agent's command in ``args``: the first word past its global options."""
    value_next = False
    for arg in args:
        if value_next:
            value_next = False
        elif len(arg) > 2 and "--log-level".startswith(arg):
            value_next = True  # agent/cli.py's one global option with a value (argparse
            # takes any prefix of it: --log debug)
        elif not arg.startswith("-"):
            return arg
    return None


def agent_holding(device: str) -> int | None:
    """The pid of a running locker-agent that holds ``device`` open, by /proc; None."""
    return next((pid for pid, _ in holders(device) if is_agent(pid)), None)


def port_holders(port: int) -> list[tuple[int, str]]:
    """``[(pid, command line)]`` of every other process holding TCP ``port``.

    Those listening on it, else those bound or connected with it (never TIME_WAIT), by
    /proc/net/tcp and tcp6 and the processes' descriptors. As root every process is
    seen, otherwise only this user's: an empty list then says nothing.
    """
    listening: set[str] = set()
    bound: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # sl local rem st queues tr retrnsmt uid timeout inode
            if len(fields) < 10 or fields[9] == "0" or fields[3] == _TIME_WAIT:
                continue
            if int(fields[1].rpartition(":")[2], 16) == port:
                (listening if fields[3] == _LISTEN else bound).add(f"socket:[{fields[9]}]")
    for inodes in (listening, bound):
        if inodes and (found := _holding(inodes.__contains__)):
            return found
    return []


def named(found: list[tuple[int, str]], most: int = 3) -> str:
    """``pid 812 (python3 -m http.server 8080)``, a few of them, comma separated, each
    command line shortened to 120 characters."""
    text = ", ".join(f"pid {pid} ({shortened(cmd)})" for pid, cmd in found[:most])
    return text + (f" and {len(found) - most} more" if len(found) > most else "")


def command_line(pid: int, limit: int | None = 120) -> str:
    """The command line of process ``pid`` as one printable line; ``?`` when unreadable.

    Control characters escaped, at most ``limit`` characters (None: all of it); its name
    when the command line is empty.
    """
    proc = Path("/proc") / str(pid)
    try:
        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        text = cmd.decode(errors="replace") or (proc / "comm").read_text().strip()
    except OSError:
        return "?"
    return shortened(printable(text), limit)


def shortened(text: str, limit: int | None = 120) -> str:
    """``text`` cut to ``limit`` characters, the cut marked ``...``; None keeps it whole."""
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


_LISTEN, _TIME_WAIT = "0A", "06"  # /proc/net/tcp states


def _holding(match: Callable[[str], bool]) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every other process with a descriptor whose link
    (``/dev/ttyUSB0``, ``socket:[4711]``) ``match`` accepts."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            if any(match(link) for link in _links(proc)):
                # Whole: whether it is the agent is judged on all of it (a long path
                # once cut "locker-agent" off); display shortens it.
                found.append((pid, command_line(pid, limit=None)))
        except OSError:
            continue  # gone, or not ours to look at
    return found


def _links(proc: Path) -> list[str]:
    """Where each of a process's descriptors points; OSError when they cannot be read."""
    links = []
    for fd in (proc / "fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return links


def plugged_now() -> str:
    """The adapters in /dev/serial/by-id as one phrase: their names, or ``none plugged in``."""
    return ", ".join(by_id()) or "none plugged in"


def by_id() -> list[str]:
    """The names in /dev/serial/by-id (the adapters plugged in), sorted."""
    try:
        return sorted(p.name for p in Path("/dev/serial/by-id").iterdir())
    except OSError:
        return []


def ntp_synchronised(timeout_s: float = 5.0) -> bool | None:
    """``timedatectl show -p NTPSynchronized --value``: True/False; None when it cannot
    tell (no timedatectl, no systemd-timedated)."""
    program = shutil.which("timedatectl")
    if program is None:
        return None
    try:
        result = subprocess.run(
            [program, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = result.stdout.strip()
    if result.returncode != 0 or value not in ("yes", "no"):
        return None
    return value == "yes"
