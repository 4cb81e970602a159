"""Is the wall clock known to be right? Asked of whatever on this machine can tell.

A Pi has no clock chip: it boots at fake-hwclock's last save (up to an hour before a
power cut) and steps when the network time comes (LESSONS, "Time, storage and the
field"). Nothing here trusts the clock for want of an answer: each source answers
True (synchronised), False (not yet) or None (cannot tell here), and
:func:`synchronized` is True as soon as one says so.

- systemd-timesyncd: ``/run/systemd/timesync/synchronized`` exists once the network
  time is in (the directory without it: not yet);
- the kernel: ``adjtimex`` with no change asked, whose status every NTP daemon
  (chrony, timesyncd, ntpd) keeps: ``STA_UNSYNC`` clear. The shipped unit's
  ``ProtectClock=yes`` refuses the call (EPERM, systemd #26413): None;
- timedated: ``timedatectl show -p NTPSynchronized``, the kernel's answer asked of a
  service outside the sandbox;
- chrony: ``chronyc -c tracking``, whose leap status is ``Not synchronised`` until it
  has a source.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

TIMESYNC_DIR = Path("/run/systemd/timesync")
ASK_TIMEOUT_S = 3.0
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5

Source = Callable[[], bool | None]


def timesyncd(directory: Path = TIMESYNC_DIR) -> bool | None:
    """systemd-timesyncd's flag; None where timesyncd does not run."""
    if not directory.is_dir():
        return None
    return (directory / "synchronized").exists()


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


def kernel() -> bool | None:
    """The kernel's NTP status (``adjtimex``, nothing changed); None when refused."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None  # EPERM under ProtectClock=yes: cannot tell
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def _run(argv: Sequence[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=ASK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def timedated() -> bool | None:
    """``timedatectl``'s ``NTPSynchronized``; None where it cannot answer."""
    answer = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    return {"yes": True, "no": False}.get(answer or "")


def chrony() -> bool | None:
    """chrony's tracking: synchronised unless its leap status says not; None without
    chronyc or chronyd."""
    answer = _run(["chronyc", "-n", "-c", "tracking"])
    if not answer:
        return None
    fields = answer.splitlines()[0].split(",")
    return fields[-1].strip() != "Not synchronised" if len(fields) > 2 else None


SOURCES: dict[str, Source] = {
    "timesyncd": timesyncd,
    "adjtimex": kernel,
    "timedatectl": timedated,
    "chrony": chrony,
}


def synchronized(sources: dict[str, Source] | None = None) -> tuple[bool | None, str]:
    """``(known right, what said so)``: whether the wall clock is known to be right.

    True at the first source that says so; False when one can tell and none says so;
    None when none can tell. Blocking (up to a few seconds): call it off the loop.
    """
    said: list[str] = []
    for name, ask in (sources or SOURCES).items():
        answer = ask()
        if answer:
            return True, name
        if answer is False:
            said.append(name)
    if said:
        return False, f"not synchronised by {', '.join(said)}"
    return None, "nothing here can tell whether the clock is synchronised"
