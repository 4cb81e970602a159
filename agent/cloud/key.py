"""The locker's api-key, one source for both links, read again from its file while refused.

A technician who fixes a refused key edits ``[cloud] api_key_file``; waiting out a
minute of slow retry before the new key is tried is a minute of a deaf locker. So
while the cloud refuses the key (401/403), a link waits in :meth:`ApiKey.refused`:
the file's ``stat`` is looked at every ``watch_s``, and once it changed and holds
another key, that key is taken and every waiting link tries at once. A key written
inline in ``agent.toml`` has no file and is never re-read (SIGHUP's rules are
``agent.config.reload``'s). The key is a secret: it is never logged, never in a
problem line; the file's path may be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog
from pydantic import SecretStr

from agent.config.secrets import read_secret_file

log = structlog.get_logger(__name__)

AUTH_RETRY_S = 60.0  # a refused key will not fix itself quickly: the slow retry
WATCH_S = 1.0  # while refused, the key file's stat is looked at this often

_Signature = tuple[int, int, int, int]  # inode, size, mtime and ctime in ns
_UNREAD = object()  # the file not looked at yet


class ApiKey:
    """The api-key both links send; ``path``: the file it came from (None: inline).

    ``generation`` counts the keys taken (0: the one given). Seconds: ``watch_s``
    between looks at the file while a link waits refused.
    """

    def __init__(
        self, key: SecretStr, path: Path | None = None, *, watch_s: float = WATCH_S
    ) -> None:
        self._key = key
        self.path = path
        self.watch_s = watch_s
        self.generation = 0
        self._seen: _Signature | object | None = _UNREAD  # the file as last looked at
        self._new = asyncio.Event()  # set when a new key is taken, then replaced

    def header(self) -> dict[str, str]:
        """The request header that carries the key: ``{"api-key": ...}``."""
        return {"api-key": self._key.get_secret_value()}

    def hint(self) -> str:
        """What a refused-key problem line adds: where a new key is taken from, if anywhere."""
        return "" if self.path is None else f"; a new key in {self.path} is tried at once"

    async def refused(self, generation: int, wait_s: float) -> bool:
        """The key of ``generation`` was refused: wait ``wait_s`` s, less if a new key comes.

        A new key in the file (or one another link took) ends the wait. True: try again
        now with the new key; False: the wait ran out.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while True:
            if self.path is not None:
                self._look()
            if self.generation != generation:
                return True
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            step = remaining if self.path is None else min(self.watch_s, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), step)

    def _look(self) -> None:
        """Take the file's key when its stat changed and it holds another, valid key."""
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            signature = None
            problem = f"cannot read {self.path}: {exc.strerror or type(exc).__name__}"
        else:
            signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            problem = None
        if signature == self._seen:
            return  # unchanged (or still missing): the cheap path, once a second while refused
        self._seen = signature
        if problem is None:
            text, problem = read_secret_file(self.path)
        if problem is not None:
            # Mid-edit (truncated, not yet written) or gone: the next change is read again.
            log.warning("api_key.file_unusable", problem=problem)
            return
        if text == self._key.get_secret_value():
            return  # touched, or rewritten with the key the cloud refuses
        self._key = SecretStr(text)
        self.generation += 1
        self._new.set()
        self._new = asyncio.Event()
        log.info("api_key.reloaded", file=str(self.path), generation=self.generation)
