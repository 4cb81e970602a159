"""What ``doctor`` looks at outside the config: the cloud, a serial port's holders,
the clock. Each returns what it found; ``doctor`` turns it into ok/FAIL/warn lines.

The cloud probe never sends feedback: it POSTs an empty JSON object to the feedback
endpoint with the api-key. The cloud checks the key before the body, so 401/403
means the key is refused and 422 (the body: ``cabinets`` is required) means it was
accepted; nothing is recorded. The api-key is never printed, not even from an answer.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.config import CloudConfig

FEEDBACK_PATH = "/api/lockers/cabinet/status"


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
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        return CloudAnswer(False, "resolve", f"cannot resolve {host}: {err}")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return CloudAnswer(False, "connect", f"cannot connect to {host}:{port}: {err}")
    conn: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context(cafile=str(cloud.ca_file) if cloud.ca_file else None)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    path = (parts.path.rstrip("/") or "") + FEEDBACK_PATH
    headers = {"api-key": key, "Content-Type": "application/json", "Accept": "application/json"}
    try:
        conn.request("POST", path, body=b"{}", headers=headers)
        response = conn.getresponse()
        status, location = response.status, response.getheader("Location") or ""
        response.read()
    except ssl.SSLError as err:
        return CloudAnswer(False, "tls", _redact(f"TLS with {host} failed: {err}", key))
    except (OSError, http.client.HTTPException) as err:
        return CloudAnswer(False, "http", _redact(f"{host}:{port}: {err}", key))
    finally:
        conn.close()
    address = addresses[0][4][0]
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


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def healthz(host: str, port: int, timeout_s: float = 3.0) -> tuple[int, list[str]] | None:
    """``(status, reasons)`` of the running agent's ``GET /healthz``; None when silent.

    A wildcard ``host`` is asked on loopback.
    """
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status, [str(r) for r in body.get("reasons", [])]
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return None
    finally:
        conn.close()


def holders(device: str) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every other process with ``device`` open, by /proc
    (the processes this user may look at)."""
    target = os.path.realpath(device)
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            if any(os.path.realpath(fd) == target for fd in fds):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((pid, cmd.strip() or proc.name))
        except OSError:
            continue  # gone, or not ours to look at
    return found


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
