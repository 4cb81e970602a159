"""A small disk for the agent's storage, that fate can fill: a tmpfs and a filler file.

Only root can mount a tmpfs; elsewhere :meth:`SmallDisk.mount` says why not and
the disk-full fault is not offered. The filler is written until the
filesystem refuses (ENOSPC), as a full SD card would, and deleted to free it.
``bench/soak.py`` fills its agent's disk the same way.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

CHUNK = 64 * 1024
MOUNT_TIMEOUT_S = 10.0


class SmallDisk:
    """A tmpfs of ``size_mb`` MiB mounted on ``path`` (an empty directory)."""

    def __init__(self, path: Path, size_mb: int = 16) -> None:
        self.path = path
        self.size_mb = size_mb
        self.mounted = False
        self.filler = path / "filler.bin"

    def mount(self) -> str | None:
        """Mount the tmpfs; None when done, else why not (not root, mount refused)."""
        if os.geteuid() != 0:
            return "the disk-full fault needs root (to mount a small tmpfs for the storage)"
        self.path.mkdir(parents=True, exist_ok=True)
        options = f"size={self.size_mb}m,mode=0700"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=MOUNT_TIMEOUT_S,
        )
        if done.returncode != 0:
            return f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}"
        self.mounted = True
        return None

    @property
    def full(self) -> bool:
        """Whether the filler is there now."""
        return self.filler.exists()

    def fill(self) -> int:
        """Write the filler until the filesystem refuses; the bytes written."""
        if not self.mounted:
            raise RuntimeError("the small disk is not mounted")
        written = 0
        limit = (self.size_mb + 1) * 1024 * 1024  # bounded whatever the filesystem says
        with self.filler.open("ab", buffering=0) as f:
            for size in (CHUNK, 4096, 512):  # big steps, then the last gaps
                with contextlib.suppress(OSError):
                    while written < limit:
                        written += f.write(b"\0" * size) or 0
        return written

    def free(self) -> None:
        """Delete the filler."""
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        """Free and unmount (lazily if something still holds it). Idempotent."""
        self.free()
        if self.mounted:
            done = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
            self.mounted = False
