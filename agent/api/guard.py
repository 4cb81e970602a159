"""The local API's connections: a cap, deadlines, and a look at each request head.

``ConnectionGate.factory(protocol_factory)`` wraps the protocol factory handed to
``loop.create_server`` (aiohttp's ``web.Server``). Every connection gets a
``GuardedConnection`` in front of aiohttp's own protocol, which it feeds:

- **A cap.** At most ``max_connections`` are open at once, well below the process's
  descriptor limit, so the uplink, the serial ports and a technician still get one.
  At the cap, a new connection displaces the one that has waited longest without a
  request in progress (a slow or idle client); when every connection has a request
  in progress, the new one is answered 503 and closed.
- **Deadlines.** A connection delivers a complete request head within
  ``head_timeout_s`` of opening or of its previous answer (so idle keep-alive
  connections close too), and a declared body within ``body_timeout_s`` of its
  head (plus a second: the handler's own 408 comes first). Else it is closed. A
  request still unanswered after ``busy_timeout_s`` (5 minutes) is given up.
- **Head lines checked before aiohttp parses them.** The request line and every
  header line must be well-formed HTTP/1.1 (an origin-form target of URI
  characters, token header names, visible header values, CRLF endings, bounded
  sizes), and a request says its body's size with ``Content-Length`` (no chunked
  bodies) and sends it as is (no ``Content-Encoding``). A head that fails is
  answered 400 (411 for chunked, 415 for an encoding, 417 for an ``Expect`` but
  100-continue, 501 for a method aiohttp does not know) in the JSON error model
  and closed; aiohttp never sees it, so it can neither log nor echo the raw line,
  which may carry the token. A line is only passed on once it is complete.

A gate may also check who connects (``check_peer``: the Unix socket's
credentials, ``agent/api/unix.py``): a peer it refuses is answered 403 before any
byte it sends is read, and an admitted one is marked ``by_peer`` (no token needed).

The request handler tells a connection when it has answered
(``GuardedConnection.answered``); the connection knows by itself when a head ended.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from agent.api.head import HeadError, HeadScanner, answer
from agent.locker.commands import problem

log = structlog.get_logger(__name__)

BODY_GRACE_S = 1.0  # the handler's 408 comes before the connection's own deadline
# After refusing a head, bytes still arriving are read and dropped this long before
# the close: closing with unread bytes sends a reset that can destroy the answer.
LINGER_S = 2.0


class GuardedConnection(asyncio.Protocol):
    """One connection: counts against the gate's cap, keeps its deadlines, checks its
    request heads, and passes everything else on to ``inner`` (aiohttp's protocol)."""

    def __init__(self, gate: ConnectionGate, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._gate = gate
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._scanner = HeadScanner()
        self._in_flight = 0  # heads passed on and not yet answered
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._draining = False  # refused: reading and dropping until the close
        self.by_peer = False  # admitted by its peer's credentials (the Unix socket)

    def answered(self) -> None:
        """The handler has answered a request (its response is being written)."""
        if self._closed or self._in_flight == 0:
            return
        self._in_flight -= 1
        if self._in_flight == 0:
            self._gate._idle(self)
            if not self._scanner.in_body:
                self._arm(self._gate.head_timeout_s)

    def shut(self, reason: str) -> None:
        """Close now; a response still unsent is dropped (the peer is not reading)."""
        if self._closed or self._transport is None:
            return
        log.debug("api.connection_closed", reason=reason, peer=self._peer())
        if self._transport.get_write_buffer_size():
            self._transport.abort()
        else:
            self._transport.close()
        self._gone()

    # --- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count in (displacing an idle connection at the cap) or answer 503."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._gate._admit(self):  # not counted: no lingering past the cap
            busy = problem(503, "UNAVAILABLE", "too many connections")
            transport.write(answer(503, busy, {"Retry-After": "1"}))
            transport.close()
            self._gone()
            return
        if self._gate.check_peer is not None:
            refusal = self._gate.check_peer(transport.get_extra_info("socket"))
            if refusal is not None:
                self._gate.peers_refused += 1
                log.warning("api.peer_refused", reason=refusal)
                self._refuse(403, "FORBIDDEN", refusal)
                return
            self.by_peer = True
        self._inner = self._make_inner()
        self._inner.connection_made(transport)
        self._arm(self._gate.head_timeout_s)

    def data_received(self, data: bytes) -> None:
        """Check head lines, pass checked lines and bodies on, keep the deadlines."""
        if self._closed or self._draining or self._inner is None:
            return
        try:
            out, heads, body_ended = self._scanner.feed(data)
        except HeadError as err:
            self._gate.bad_heads += 1
            if self._in_flight:  # an answer is due first: no second one to interleave
                self.shut("bad head")
            else:
                self._refuse(err.status, err.type, err.message)
            return
        if heads:
            self._in_flight += heads
            self._gate._busy(self)
            if self._scanner.in_body:
                self._arm(self._gate.body_timeout_s + BODY_GRACE_S)
            else:
                self._arm(self._gate.busy_timeout_s)
        elif body_ended:
            if self._in_flight:
                self._arm(self._gate.busy_timeout_s)
            else:
                self._arm(self._gate.head_timeout_s)
        if out:
            self._inner.data_received(out)

    def eof_received(self) -> bool | None:
        """The peer is done sending: aiohttp decides (it closes)."""
        if self._inner is not None and not self._closed and not self._draining:
            return self._inner.eof_received()
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        """Count out; aiohttp cleans up."""
        self._gone()
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """The peer reads slowly: aiohttp stops writing."""
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        """aiohttp may write again."""
        if self._inner is not None:
            self._inner.resume_writing()

    # --- inside ----------------------------------------------------------------

    def _refuse(self, status: int, type_: str, message: str) -> None:
        """Answer a bad head, say no more (FIN), drop what still comes, close."""
        assert self._transport is not None
        self._transport.write(answer(status, problem(status, type_, message)))
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._draining = True
        self._arm(LINGER_S)

    def _gone(self) -> None:
        if not self._closed:
            self._closed = True
            self._disarm()
            self._gate._forget(self)

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay_s, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._draining:
            self.shut("refused")
            return
        self._gate.timed_out += 1
        if self._scanner.in_body:
            self.shut("body too slow")
        elif self._in_flight:
            log.warning("api.request_overdue", peer=self._peer())
            self.shut("no answer in time")
        else:
            self.shut("no request head in time")

    def _peer(self) -> Any:
        return self._transport.get_extra_info("peername") if self._transport else None


class ConnectionGate:
    """The connections of one listening socket: a cap, and deadlines for each.

    ``max_connections`` open at most; ``head_timeout_s`` and ``body_timeout_s``
    (seconds) to send a request; ``busy_timeout_s`` for an answer (a backstop: no
    handler runs that long, so such a connection is stuck). ``check_peer``: the
    connection's socket -> None to serve it, or why not (then 403). Counters
    ``displaced``, ``refused``, ``timed_out``, ``bad_heads``, ``peers_refused``;
    ``open``: connections open now.
    """

    def __init__(
        self,
        max_connections: int = 64,
        head_timeout_s: float = 10.0,
        body_timeout_s: float = 10.0,
        busy_timeout_s: float = 300.0,
        check_peer: Callable[[Any], str | None] | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self.busy_timeout_s = busy_timeout_s
        self.check_peer = check_peer
        self.displaced = self.refused = self.timed_out = self.bad_heads = 0
        self.peers_refused = 0
        self._open: set[GuardedConnection] = set()
        # Connections without a request in progress, longest waiting first.
        self._waiting: OrderedDict[GuardedConnection, None] = OrderedDict()

    @property
    def open(self) -> int:
        """Connections open now (never more than ``max_connections``)."""
        return len(self._open)

    def factory(self, make_inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``: ``make_inner`` builds the
        protocol each admitted connection feeds (aiohttp's ``web.Server``)."""
        return lambda: GuardedConnection(self, make_inner)

    def stats(self) -> dict[str, int]:
        """``{"open", "busy", "max", "displaced", "refused", "timed_out", "bad_heads"}``.

        Connections open now and those with a request in progress, the cap, and how
        many were displaced, refused (503), timed out, or sent a bad head; with a peer
        check, also ``peers_refused`` (403).
        """
        peers = {"peers_refused": self.peers_refused} if self.check_peer else {}
        return {
            "open": self.open,
            "busy": self.open - len(self._waiting),
            "max": self.max_connections,
            "displaced": self.displaced,
            "refused": self.refused,
            "timed_out": self.timed_out,
            "bad_heads": self.bad_heads,
        } | peers

    def abort_all(self) -> None:
        """Drop every connection still open (at shutdown, after the server's own grace:
        a peer that does not read must not hold the stop)."""
        for conn in list(self._open):
            conn.shut("shutting down")

    def _admit(self, conn: GuardedConnection) -> bool:
        if len(self._open) >= self.max_connections:
            if not self._waiting:
                self.refused += 1
                log.warning("api.connection_refused", open=len(self._open), reason="all busy")
                return False
            oldest = next(iter(self._waiting))
            self.displaced += 1
            log.warning("api.connection_displaced", open=len(self._open))
            oldest.shut("displaced by a new connection at the cap")
        self._open.add(conn)
        self._waiting[conn] = None
        return True

    def _busy(self, conn: GuardedConnection) -> None:
        self._waiting.pop(conn, None)

    def _idle(self, conn: GuardedConnection) -> None:
        if conn in self._open:
            self._waiting[conn] = None
            self._waiting.move_to_end(conn)

    def _forget(self, conn: GuardedConnection) -> None:
        self._open.discard(conn)
        self._waiting.pop(conn, None)
