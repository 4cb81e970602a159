"""Why a serial port is not open, in a technician's words: the path, the reason, what to do.

One vocabulary for every place that says it: ``check-config`` (before the agent
runs: a warning, the adapter may be plugged in later), ``/healthz`` and ``STATUS=``
and the journal (the running agent, from the error its last open raised).
"""

from __future__ import annotations

import errno
import re

NO_SUCH_FILE = "no such file"
PERMISSION = "permission denied"
HELD = "held by another process"

_BY_ERRNO = {
    errno.ENOENT: NO_SUCH_FILE,
    errno.ENODEV: "the device is gone (unplugged?)",
    errno.ENXIO: "the device is gone (unplugged?)",
    errno.EACCES: PERMISSION,
    errno.EPERM: PERMISSION,
    errno.EBUSY: HELD,
    errno.EAGAIN: HELD,  # pyserial's exclusive lock (flock) refused
    errno.ECONNREFUSED: "the gateway refuses the connection",
    errno.EHOSTUNREACH: "no route to the gateway",
    errno.ENETUNREACH: "no route to the gateway",
}

_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")

ADVICE = {
    NO_SUCH_FILE: "is the adapter plugged in? ls -l /dev/serial/by-id/ lists those that are",
    PERMISSION: "the service user must be in the group dialout (sudo usermod -aG dialout"
    " locker-agent)",
    HELD: "sudo locker-agent doctor names the process; stop it (a second agent? a login"
    " console on the UART?)",
}


def reason(exc: BaseException | None) -> str:
    """The reason a port open raised ``exc``: ``no such file``, ``permission denied``,
    ``held by another process``, or the error's own words."""
    if exc is None:
        return "not open yet"
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None and (found := _ERRNO_IN_TEXT.search(text)):
        code = int(found.group(1))  # pyserial's socket:// keeps it only in the text
    if code in _BY_ERRNO:
        return _BY_ERRNO[code]
    if isinstance(exc, TimeoutError):
        return "no answer within 10 s (is the gateway on and wired?)"
    if "exclusively lock" in text:
        return HELD
    return (getattr(exc, "strerror", None) or text or type(exc).__name__).strip()


def not_open(bus: str, port: str, exc: BaseException | None) -> str:
    """``bus NAME: port PATH not open: REASON: what to do`` (one line)."""
    why = reason(exc)
    advice = ADVICE.get(why)
    return f"bus {bus}: port {port} not open: {why}" + (f": {advice}" if advice else "")
