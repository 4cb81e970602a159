"""The codes the locker holds: provisioned, matched in constant time, spent, pruned.

A mirror of ``codes.sqlite3`` in memory (bounded by ``max_codes``); a change is
written to disk before the mirror shows it, except the end of an open
(:meth:`HeldCodes.settle`): that is the truth at once, its write retried while the disk
refuses. Expiry is judged by :meth:`HeldCodes.now` (ADR 0017): the wall clock when it is
known right, else never earlier than the newest time it was seen right.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from agent.codes.message import CodesMessage, unix
from agent.config import Side
from agent.locker.errors import Conflict, Invalid, Unavailable
from agent.storage.codes import CodeStore, State, StoredCode
from agent.storage.store import StoreError

log = structlog.get_logger(__name__)

MAX_CODES = 10_000  # rows held, spent and superseded together
KEEP_EXPIRED_S = 86_400.0  # an expired code is kept a day, refused as expired (not wrong)


@dataclass(frozen=True, slots=True)
class Held:
    """One code as the locker holds it; ``digest`` the 32 bytes of its SHA-256."""

    digest: bytes
    key: int
    side: Side
    order_id: int | str
    expires_at: float  # unix seconds
    state: State

    @property
    def sha256(self) -> str:
        """The hex digest, as the cloud names the code."""
        return self.digest.hex()


def digest_of(code: str) -> bytes:
    """The SHA-256 of a code as typed or scanned (UTF-8)."""
    return hashlib.sha256(code.encode("utf-8")).digest()


def _held(row: StoredCode) -> Held:
    side: Side = "rear" if row.rear else "front"
    return Held(bytes.fromhex(row.sha256), row.key, side, row.order_id, row.expires_at, row.state)


def _row(code: Held) -> StoredCode:
    return StoredCode(
        code.sha256, code.key, code.side == "rear", code.order_id, code.expires_at, code.state
    )


class HeldCodes:
    """The codes in ``store``; ``doors``: cabinet key -> its sides, to refuse a code for a
    door the locker does not have. ``wall``: the wall clock (unix seconds)."""

    def __init__(
        self,
        store: CodeStore,
        doors: Mapping[int, tuple[Side, ...]],
        *,
        wall: Callable[[], float] = time.time,
        max_codes: int = MAX_CODES,
    ) -> None:
        self._store = store
        self._doors = doors
        self._wall = wall
        self.max_codes = max_codes
        self.clock_known: bool | None = None  # set by note_clock; None: not asked yet
        self._codes: dict[bytes, Held] = {}  # by digest, oldest put first
        self._unsaved: dict[bytes, State] = {}  # digest -> the state its row still has
        self._dropping: set[bytes] = set()  # dropped while opening: gone once settled
        self._superseding: set[bytes] = set()  # its door reused while opening: not held again
        self._undeleted: set[str] = set()  # rows of dropped codes the disk kept
        self._trusted = 0.0
        try:
            self._codes = {code.digest: code for code in map(_held, store.rows())}
            self._trusted = store.trusted()
        except (StoreError, ValueError) as exc:
            log.error("codes.unreadable", error=str(exc))

    def __len__(self) -> int:
        return len(self._codes)

    def counts(self) -> dict[str, int]:
        """How many codes are in each state."""
        out = {"held": 0, "opening": 0, "spent": 0, "superseded": 0}
        for code in self._codes.values():
            out[code.state] += 1
        return out

    # --- time ----------------------------------------------------------------------

    def note_clock(self, known: bool | None) -> None:
        """Whether the wall clock is known right now (``agent.thermal.clock``); while it
        is, its time is the floor expiry is never judged below once it is not (a floor
        above a clock known right was a wrong clock's: it follows the clock down)."""
        self.clock_known = known
        if not known:
            return
        wall = self._trusted = self._wall()
        try:  # the caller's cadence (housekeeping, once a minute) bounds the writes
            self._store.set_trusted(wall)
        except StoreError as exc:
            log.warning("codes.clock_unsaved", error=str(exc))

    def now(self) -> tuple[float, bool]:
        """(the time expiry is judged by, whether the clock is known right): the wall
        clock when it is known right; else never earlier than the newest time it was
        seen right (ADR 0017)."""
        wall = self._wall()
        if self.clock_known:
            return wall, True
        return max(wall, self._trusted), False

    def expired(self, code: Held) -> bool:
        """Whether ``code`` is past its expiry, by :meth:`now`."""
        return self.now()[0] >= code.expires_at

    # --- provisioning --------------------------------------------------------------

    def provision(self, message: CodesMessage) -> dict[str, Any]:
        """Drop, then put, as one write; a code put for a door that holds another order's
        code supersedes it. Answers ``{"held", "put", "dropped"}``.

        Raises ``Invalid`` (a cabinet or door the locker does not have), ``Conflict``
        (beyond ``max_codes``, after pruning) and ``Unavailable`` (the disk refused).
        """
        errors: dict[str, list[str]] = {}
        for i, put in enumerate(message.put):
            sides = self._doors.get(put.key)
            if sides is None:
                errors[f"put.{i}.key"] = [f"no cabinet with key {put.key}"]
            elif put.rearload and "rear" not in sides:
                errors[f"put.{i}.rearload"] = [f"cabinet {put.key} has no rear door"]
        if errors:
            first = next(iter(errors.items()))
            raise Invalid(f"{first[0]}: {first[1][0]}", errors)
        codes = dict(self._codes)
        dropping: set[bytes] = set()  # a code opening now is settled first, then dropped
        for sha in message.drop:
            if (code := codes.get(bytes.fromhex(sha))) is not None:
                if code.state == "opening":
                    dropping.add(code.digest)
                else:
                    del codes[code.digest]
        dropped = len(self._codes) - len(codes) + len(dropping)
        doors: dict[tuple[int, Side], set[bytes]] = {}  # held codes by door
        opening: dict[tuple[int, Side], set[bytes]] = {}  # codes being opened by door
        for code in codes.values():
            if code.state == "held":
                doors.setdefault((code.key, code.side), set()).add(code.digest)
            elif code.state == "opening":
                opening.setdefault((code.key, code.side), set()).add(code.digest)
        superseded: set[bytes] = set()
        superseding: set[bytes] = set()  # opening now: superseded if its open did not act
        news: set[bytes] = set()
        for i, put in enumerate(message.put):
            side: Side = "rear" if put.rearload else "front"
            new = Held(
                bytes.fromhex(put.sha256), put.key, side, put.order_id, unix(put.expires_at), "held"
            )
            known = codes.get(new.digest)
            if known is not None and known.state != "held":
                continue  # opening, spent or superseded: a put again (a replay) revives none
            if known is not None and known.order_id != new.order_id:
                raise Conflict(
                    f"put.{i}.sha256: this code is held for another order: its cabinet"
                    " would change under a customer (make the codes differ)",
                    {f"put.{i}.sha256": ["held for another order"]},
                )
            old = codes.pop(new.digest, None)  # put again: replaced, and last in order
            if old is not None:
                doors.get((old.key, old.side), set()).discard(old.digest)
            door = doors.setdefault((new.key, new.side), set())
            at = opening.get((new.key, new.side), ())
            superseding |= {d for d in at if codes[d].order_id != new.order_id}
            for digest in [d for d in door if codes[d].order_id != new.order_id]:
                codes[digest] = replace(codes[digest], state="superseded")
                superseded.add(digest)
                door.discard(digest)
            codes[new.digest] = new
            door.add(new.digest)
            news.add(new.digest)
        now = self.now()[0]
        if len(codes) > self.max_codes and self.clock_known is not False:  # nor here
            codes = {d: c for d, c in codes.items() if c.state == "opening" or c.expires_at > now}
        if len(codes) > self.max_codes:
            raise Conflict(
                f"the locker would hold {len(codes)} codes, at most {self.max_codes}:"
                " drop some first"
            )
        gone = [d for d in self._codes if d not in codes]
        puts = [d for d in codes if d in news]
        older = [d for d in superseded if d in codes and d not in news]
        try:
            self._store.put(
                [_row(codes[d]) for d in puts], [d.hex() for d in gone], [d.hex() for d in older]
            )
        except StoreError as exc:
            log.error("codes.unsaved", error=str(exc))
            raise Unavailable(f"cannot keep the codes: {exc}") from None
        self._codes = codes
        self._dropping |= dropping
        self._superseding |= superseding
        for digest in (*gone, *puts, *older):  # those rows now say what the memory says
            self._unsaved.pop(digest, None)
            self._undeleted.discard(digest.hex())
        if superseded:
            log.info("codes.superseded", count=len(superseded))
        log.info("codes.provisioned", put=len(message.put), dropped=dropped, held=len(codes))
        return {"held": self.counts()["held"], "put": len(message.put), "dropped": dropped}

    # --- use -------------------------------------------------------------------------

    def match(self, code: str) -> Held | None:
        """The code whose hash is that of ``code`` (any state), or None. Every held hash
        is compared, each in constant time: how long it takes says nothing of which."""
        digest = digest_of(code)
        found: Held | None = None
        for held in self._codes.values():
            if hmac.compare_digest(digest, held.digest):
                found = held
        return found

    def mark(self, code: Held, state: State) -> Held:
        """Write ``code``'s new state, then show it (``opening``, before a pulse). A row
        the disk still holds in ``state`` (a later write was refused) needs no write:
        the disk says what a power cut must find. Raises ``StoreError``."""
        try:
            self._store.set_state(code.sha256, state)
        except StoreError as exc:
            if self._unsaved.get(code.digest) != state:
                raise
            log.warning("code.already_on_disk", key=code.key, state=state, error=str(exc))
        self._unsaved.pop(code.digest, None)
        new = replace(code, state=state)
        self._codes[code.digest] = new
        return new

    def settle(self, code: Held, state: State) -> Held:
        """An open's end: ``code`` is ``state`` (``spent``, or ``held`` again when nothing
        acted) at once, and written. Never raises: when the disk refuses, its row keeps
        what it said (``opening``) and :meth:`save_unsaved` writes it later; a restart
        before that spends the code, said unsure (a pulse is never repeated). A code the
        cloud dropped during its open is forgotten now; one whose door the cloud gave to
        another order during its open is ``superseded`` instead of held again."""
        if code.digest in self._superseding:
            self._superseding.discard(code.digest)
            state = "superseded" if state == "held" else state
        if code.digest in self._dropping:
            return self._drop_settled(code, state)
        on_disk = self._unsaved.get(code.digest, code.state)
        new = replace(code, state=state)
        self._codes[code.digest] = new
        try:
            self._store.set_state(code.sha256, state)
        except StoreError as exc:
            if on_disk != state:
                self._unsaved[code.digest] = on_disk
            log.error("code.unsaved", key=code.key, state=state, on_disk=on_disk, error=str(exc))
            return new
        self._unsaved.pop(code.digest, None)
        return new

    def _drop_settled(self, code: Held, state: State) -> Held:
        """The drop the cloud sent while ``code`` was opening, carried out at its end."""
        self._dropping.discard(code.digest)
        self._codes.pop(code.digest, None)
        self._unsaved.pop(code.digest, None)
        log.info("code.dropped_after_open", key=code.key, state=state)
        try:
            self._store.prune([code.sha256])
        except StoreError as exc:  # forgotten in memory all the same; the row later
            self._undeleted.add(code.sha256)
            log.error("code.unsaved", key=code.key, state="dropped", error=str(exc))
        return replace(code, state=state)

    @property
    def unsaved(self) -> int:
        """How many codes' rows say another state than the memory (the disk refused)."""
        return len(self._unsaved) + len(self._undeleted)

    def save_unsaved(self) -> int:
        """Write again the states (and drops) the disk refused; how many it still refuses."""
        if self._undeleted:
            try:
                self._store.prune(list(self._undeleted))
                self._undeleted.clear()
            except StoreError as exc:
                log.warning("code.still_unsaved", count=self.unsaved, error=str(exc))
                return self.unsaved
        for digest in list(self._unsaved):
            code = self._codes.get(digest)
            if code is None:  # gone from memory: its row went with it (dropped, pruned)
                del self._unsaved[digest]
                continue
            try:
                self._store.set_state(code.sha256, code.state)
            except StoreError as exc:
                log.warning("code.still_unsaved", count=self.unsaved, error=str(exc))
                break  # the disk refuses: the rest waits for the next turn
            del self._unsaved[digest]
            log.info("code.saved", key=code.key, state=code.state)
        return self.unsaved

    def orphans(self) -> list[Held]:
        """Held codes for a door the config no longer has (a cabinet or rear door removed
        since they were put): refused when scanned, until dropped or expired."""
        return [
            c
            for c in self._codes.values()
            if c.state == "held" and c.side not in self._doors.get(c.key, ())
        ]

    def interrupted(self) -> list[Held]:
        """At start: codes written ``opening`` by a run that died before it knew the
        outcome; each is now ``spent`` (a pulse may have gone: never a second one),
        in memory even when the disk refuses (see :meth:`settle`)."""
        return [self.settle(c, "spent") for c in list(self._codes.values()) if c.state == "opening"]

    def prune(self) -> int:
        """Forget codes ``KEEP_EXPIRED_S`` past their expiry (not one being opened): until
        then a scan is told "expired" and not counted as a wrong code. Never while the
        clock is said not synchronised (as with thermal records): a clock running ahead
        may refuse a code for a while, never delete it for good. How many."""
        if self.clock_known is False:
            return 0
        now = self.now()[0] - KEEP_EXPIRED_S
        gone = [c for c in self._codes.values() if c.state != "opening" and c.expires_at <= now]
        if not gone:
            return 0
        try:
            self._store.prune(c.sha256 for c in gone)
        except StoreError as exc:
            log.warning("codes.prune_failed", error=str(exc))
            return 0
        for code in gone:
            del self._codes[code.digest]
            self._unsaved.pop(code.digest, None)
        log.info("codes.pruned", count=len(gone))
        return len(gone)
