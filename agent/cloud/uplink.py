"""The uplink: drains the outbox into the cloud's feedback endpoint, and beats.

One task sends, one task appends heartbeats. A failing cloud never stops the
rest of the agent: every error here turns into a retry with backoff and a
health problem, never an exception out of the loop. The link is up while the
cloud takes what is sent; a cloud that keeps dropping it is unstable in health
(``agent.cloud.link``), even at the moments it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr, ValidationError

from agent.cloud.backoff import Backoff
from agent.cloud.feedback import LockerInfo, build_body, locker_info
from agent.cloud.key import AUTH_RETRY_S, ApiKey
from agent.cloud.link import LinkHealth
from agent.cloud.session import cloud_session
from agent.locker.indicator import Link
from agent.locker.journal import EVENT_STARTUP
from agent.storage.message import Message
from agent.storage.outbox import Outbox, OutboxError

log = structlog.get_logger(__name__)

FEEDBACK_PATH = "/api/lockers/cabinet/status"
EVENT_HEARTBEAT = "active"  # event.type of a heartbeat
RETRY_EMPTY_EVERY = 60  # beats (an hour at 60 s): a cloud that refused an empty list is asked again
RETRY_AFTER_MAX_S = 300.0  # a Retry-After beyond this is a cloud bug, not a plan
ANSWER_BYTES = 512  # of a refusal, for the log; an acceptance is judged by its status alone
EARLY_TRY_S = 2.0  # during a backoff, fresh news is tried at most this often
BEAT_RETRY_S = 5.0  # a heartbeat the disk refused is written again this soon, not a beat on
# Answers that refuse the body itself: isolated to one message, then set aside as dead.
BODY_REFUSED = frozenset({400, 413, 415, 422})
EMPTY_REFUSED = (
    "cloud refuses feedback with no cabinet in it: with no door known, it hears"
    " nothing from this locker (not even heartbeats) until a door is read"
)


def retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds, or an HTTP date taken
    from the answer's own ``Date`` header (the cloud's clock against the cloud's clock).

    Never against this controller's wall clock, which may be days off before its
    first NTP sync: a date without a ``Date`` to measure it from gives None.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        sent = email.utils.parsedate_to_datetime(date or "")
        return max(0.0, (when - sent).total_seconds())
    return None


class Uplink:
    """Sends the outbox to ``{url}/api/lockers/cabinet/status`` with the ``api-key``.

    Seconds: ``heartbeat_s`` between heartbeats, ``timeout_s`` per POST,
    ``backoff_base_s``/``backoff_cap_s`` of the retry backoff, ``auth_retry_s``
    after a 401/403 (sooner when ``api_key``, an ``ApiKey`` shared with the command
    channel, takes a new key from its file). ``on_link`` hears the link state change
    (for the indicators); ``health`` keeps up/down and the drops.
    """

    def __init__(
        self,
        url: str,
        api_key: SecretStr | ApiKey,
        outbox: Outbox,
        snapshot: Callable[[], list[dict[str, Any]]],
        *,
        heartbeat_s: float = 60.0,
        timeout_s: float = 10.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        auth_retry_s: float = AUTH_RETRY_S,
        rand: Callable[[], float] = random.random,
        on_link: Callable[[Link], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_answer: Callable[[str], None] | None = None,
    ) -> None:
        self._endpoint = url.rstrip("/") + FEEDBACK_PATH
        self._key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)
        self._outbox = outbox
        self._snapshot = snapshot
        self.heartbeat_s = heartbeat_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rand)
        self._auth_retry_s = auth_retry_s
        self._on_link = on_link
        self._ssl = ssl_context  # a private CA; None: the system's, verified
        self._on_answer = on_answer  # each POST's outcome: the status, or "unreachable"
        self._info: LockerInfo = locker_info()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._problem: str | None = None
        self.health = LinkHealth("uplink")
        self._refused: int | None = None  # the generation of the key the cloud refused
        self._hold = False  # the cloud asked for time: no early tries
        self._isolate = False  # after a rejected batch: one message at a time, to find the bad one
        # The cloud refused a body with no cabinets (the spec allows it; a cloud may
        # not): beats with no door known are then not queued, until one is taken.
        self._empty_refused = False

    async def start(self) -> None:
        """Start sending and beating in the background; returns at once."""
        self._session = cloud_session(self._timeout, self._ssl)
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="uplink-send"),
            asyncio.create_task(self._heartbeat_loop(), name="uplink-heartbeat"),
        ]

    async def close(self) -> None:
        """Stop both tasks and close the HTTP session; unsent rows stay in the outbox."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def problems(self) -> list[str]:
        """Health lines for /healthz: why the cloud did not take the last batch, or
        that it keeps failing between the batches it takes, or that it refuses the
        bodies of a locker with no door known."""
        flapping = self.health.flapping()
        if self._problem is not None:
            return [self._problem + (f"; {flapping}" if flapping else "")]
        unstable = self.health.unstable()
        out = [unstable] if unstable else []
        if self._empty_refused and not self._snapshot():
            out.append(EMPTY_REFUSED)
        return out

    def ended(self) -> str | None:
        """Why a loop of the uplink stopped for good (a bug escaped it), for the
        watchdog; None while both run."""
        return _ended(self._tasks, "uplink")

    @property
    def link(self) -> Link:
        """The link's state for the indicators: ok, cloud_unreachable or no_internet."""
        if self._problem is None:
            return "ok"
        return "no_internet" if self._info.ip.startswith("127.") else "cloud_unreachable"

    def _set_problem(self, problem: str | None) -> None:
        before = self.link
        self._problem = problem
        if problem is None:
            self.health.went_up()
        else:
            self.health.went_down(problem)
        if problem is not None and problem.startswith("cloud unreachable"):
            self._info = locker_info()  # did we lose the network itself?
        if self._on_link is not None and self.link != before:
            self._on_link(self.link)

    async def _heartbeat_loop(self) -> None:
        beats = 0
        retry = False  # the last beat the disk refused: this one is it again, not counted
        while True:
            await asyncio.sleep(min(BEAT_RETRY_S, self.heartbeat_s) if retry else self.heartbeat_s)
            self._info = locker_info()  # the address may change (DHCP)
            # With no door known (a bus that never opened) the beat still goes, with
            # an empty cabinets list: the cloud must hear the locker is alive (ADR 0019),
            # unless this cloud said it takes no such body.
            snapshot = self._snapshot()
            if not retry:
                beats += 1
            retry = False
            if not snapshot and self._empty_refused and beats % RETRY_EMPTY_EVERY:
                continue  # one beat in RETRY_EMPTY_EVERY asks again: a cloud may be mended
            try:
                self._outbox.append("heartbeat", EVENT_HEARTBEAT, snapshot)
            except OutboxError:  # logged there; soon again, so /healthz and the cloud
                retry = True  # know when the disk is back

    async def _send_loop(self) -> None:
        while True:
            await self._outbox.wait()
            try:
                batch = self._outbox.next_batch()
                if self._isolate:
                    batch = batch[:1]
                # An empty batch (every row just buried as damaged) waits a moment:
                # no path through this loop may run without awaiting.
                delay = await self._deliver(batch) if batch else 0.1
            except OutboxError as exc:
                delay = self._failed(str(exc), None)
            except Exception:  # a bug must not end the uplink for good
                log.exception("uplink.error")
                delay = self._failed("uplink error", None)
            if delay:
                await self._pause(delay)

    async def _pause(self, delay_s: float) -> None:
        """Sleep ``delay_s``, but try early (at most every ``EARLY_TRY_S``) on a new message.

        After an outage a fresh change need not wait out a minute of backoff; a
        throttled or refused cloud gets no early tries.
        """
        if self._refused is not None:
            # The key was refused: slowly, unless its file brings a new one.
            refused, self._refused = self._refused, None
            await self._key.refused(refused, delay_s)
            return
        if self._hold:
            await asyncio.sleep(delay_s)
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + delay_s
        self._outbox.appended.clear()
        await asyncio.sleep(min(delay_s, EARLY_TRY_S))
        remaining = end - loop.time()
        if remaining > 0 and not self._outbox.appended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.appended.wait(), remaining)

    async def _deliver(self, batch: list[Message]) -> float:
        """POST one batch; returns how long to wait before the next try (0: go on)."""
        seqs = [m.seq for m in batch]
        cabinets = [c for m in batch for c in m.cabinets]
        try:
            body = build_body(cabinets, batch[0].event, self._info, batch[0].detail)
        except ValidationError as exc:  # a row damaged in a way JSON still reads
            if len(batch) > 1:
                self._isolate = True
                return 0.0
            log.error("uplink.invalid_body", seqs=seqs, error=str(exc))
            self._outbox.bury(seqs, 0, f"not a valid feedback body: {exc}")
            return 0.0
        assert self._session is not None
        self._hold = False
        generation = self._key.generation  # the key this POST sends
        try:
            # Never a redirect: the api-key would follow it to whoever sent it.
            async with self._session.post(
                self._endpoint,
                json=body,
                headers=self._key.header(),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                hint = retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"))
                text = "" if 200 <= status < 300 else await _answer(resp)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if self._on_answer is not None:
                self._on_answer("unreachable")
            return self._failed(f"cloud unreachable: {type(exc).__name__}", None)
        if self._on_answer is not None:
            self._on_answer(str(status))

        if 200 <= status < 300:
            try:
                self._outbox.ack(seqs)
            except OutboxError as exc:  # sent again later: at least once, never lost
                return self._failed(str(exc), None)
            self._isolate = False
            if not cabinets:
                self._empty_refused = False
            self._backoff.reset()
            self._set_problem(None)
            log.debug("uplink.sent", seqs=seqs, event_type=batch[0].event)
            return 0.0
        if 300 <= status < 400:
            return self._failed(f"cloud answers HTTP {status} (redirects are not followed)", None)
        if status == 401 or status == 403:
            self._backoff.failures += 1
            self._refused = generation
            self._set_problem(f"cloud rejects the api-key (HTTP {status}){self._key.hint()}")
            log.error("uplink.unauthorized", status=status, retry_in_s=self._auth_retry_s)
            return self._auth_retry_s
        if status not in BODY_REFUSED:
            # 5xx, 408, 429, and any 4xx that is not about the body (a 404 during a
            # deploy, a misrouted proxy): the rows wait; burying them would lose
            # changes and leave the cloud a _cleared without its alarm.
            self._hold = hint is not None or status == 429
            hint_404 = " (is cloud.url right?)" if status in (404, 405, 410, 421) else ""
            return self._failed(f"cloud answers HTTP {status}{hint_404}", hint)
        # The cloud will never accept this body; holding it would block the queue.
        if len(batch) > 1:
            self._isolate = True
            return 0.0
        log.error("uplink.rejected", seqs=seqs, status=status, answer=text, body=body)
        self._outbox.bury(seqs, status, text)
        # Only a body that is nothing but the empty list (a beat, the start-up) says the
        # list is what the cloud refuses; another event may be refused for its fields.
        plain = batch[0].event in (EVENT_HEARTBEAT, EVENT_STARTUP)
        if not cabinets and plain and not self._empty_refused:
            self._empty_refused = True
            log.error("uplink.empty_refused", hint="heartbeats wait for a door to be known")
        return 0.0

    def _failed(self, problem: str, hint: float | None) -> float:
        delay = self._backoff.next_s()
        if hint is not None:
            delay = max(delay, min(hint, RETRY_AFTER_MAX_S))
        self._set_problem(problem)
        log.warning(
            "uplink.retry", problem=problem, attempt=self._backoff.failures, delay_s=round(delay, 2)
        )
        return delay


async def _answer(resp: aiohttp.ClientResponse) -> str:
    """At most ``ANSWER_BYTES`` of a refusal's body, for the log; whatever its encoding
    (not UTF-8, a gzip that is not, or gigabytes), never an error."""
    try:
        raw = await resp.content.read(ANSWER_BYTES)
    except (aiohttp.ClientError, ValueError, OSError, TimeoutError):
        return "(unreadable body)"
    return raw.decode("utf-8", "replace")


def _ended(tasks: list[asyncio.Task[None]], what: str) -> str | None:
    """Why one of ``tasks`` is no longer running (None: all run)."""
    for task in tasks:
        if task.done() and not task.cancelled():
            error = task.exception()
            cause = type(error).__name__ if error is not None else "returned"
            return f"{what}: its {task.get_name()} loop ended ({cause})"
    return None
