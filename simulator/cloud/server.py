"""The fake SYNQ cloud as one object: its feedback endpoint, fault switches and command channel.

:class:`FakeCloud` serves them on one real aiohttp server on 127.0.0.1, so
the agent's outbox and channel are tested against real HTTP; each job lives
in its own module (``feedback``, ``faults``, ``channel``) and the methods
here hand over to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from simulator.cloud.channel import COMMANDS_PATH, CommandChannel
from simulator.cloud.common import Predicate
from simulator.cloud.faults import REDIRECTED_PATH, FaultSwitches
from simulator.cloud.feedback import FeedbackEndpoint
from simulator.cloud.orders import Orders
from simulator.cloud.spec import FEEDBACK_PATH, FeedbackValidator, load_feedback_schema

log = structlog.get_logger(__name__)


class FakeCloud:
    """The cloud's feedback endpoint and command channel on a real aiohttp server."""

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._faults = FaultSwitches()
        self._feedback = FeedbackEndpoint(
            api_key, FeedbackValidator(load_feedback_schema()), self._faults, lambda: self.url
        )
        self._channel = CommandChannel(api_key)
        self._orders = Orders(self._channel, lambda: self.received)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host``:``port`` (0: a free port, see :attr:`url`). Idempotent.

        After :meth:`close` it listens again on the same port, keeping what it
        received: a cloud that was down and came back."""
        if self._runner is not None:
            return
        if self._port == 0:
            self._port = outside_ephemeral(self._host)
        app = web.Application()
        app.router.add_post(FEEDBACK_PATH, self._feedback.handle)
        app.router.add_get("/_sim/feedback", self._feedback.listing)
        app.router.add_route("*", REDIRECTED_PATH, self._faults.redirected_to)
        app.router.add_get(COMMANDS_PATH, self._channel.handle)
        app.router.add_get("/_sim/orders", self._list_orders)
        # Open websockets would hold the shutdown up: close them once the site stops listening.
        app.on_shutdown.append(self._shutdown_agents)
        # Access logs off: the structlog lines below say more, and less noise.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._port = port  # the same address when started again after an outage
        self._url = f"http://{host}:{port}"
        log.info("fake cloud started", url=self._url)

    async def close(self) -> None:
        """Stop listening and close the agents' websockets. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("fake cloud closed", url=self._url)

    @property
    def listening(self) -> bool:
        """Whether the cloud is up (started and not closed since)."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the cloud URL to configure. RuntimeError before start."""
        if self._url is None:
            raise RuntimeError("fake cloud not started")
        return self._url

    @property
    def commands_url(self) -> str:
        """Where the agent opens the command channel: ws://127.0.0.1:PORT/api/lockers/commands."""
        return "ws" + self.url.removeprefix("http") + COMMANDS_PATH

    # -- the command channel --------------------------------------------------

    @property
    def agents(self) -> int:
        """How many agents are connected right now."""
        return self._channel.agents

    @property
    def connections(self) -> int:
        """Websocket upgrades accepted, ever."""
        return self._channel.connections

    @property
    def refused(self) -> int:
        """Upgrades refused for a wrong api-key."""
        return self._channel.refused

    @property
    def answers(self) -> list[Any]:
        """Every message an agent sent on the channel, parsed when it was JSON."""
        return self._channel.answers

    async def wait_for_agent(self, timeout: float) -> None:
        """Returns once an agent is connected; TimeoutError when none comes in time."""
        await self._channel.wait_for_agent(timeout)

    async def send_command(self, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a command to the newest connected agent and return its answer.

        See :meth:`CommandChannel.send_command`."""
        return await self._channel.send_command(body, timeout)

    async def send_raw(self, data: str | bytes) -> None:
        """Send any frame to the newest agent (bad messages); see ``wait_for_answer``."""
        await self._channel.send_raw(data)

    async def wait_for_answer(self, predicate: Predicate, timeout: float) -> dict[str, Any]:
        """The first answer (a JSON object) matching ``predicate``, received or to come."""
        return await self._channel.wait_for_answer(predicate, timeout)

    async def disconnect_agents(self) -> None:
        """Close every agent's socket (the agent should reconnect)."""
        await self._channel.disconnect_agents()

    # -- orders and their pickup codes ----------------------------------------

    async def create_order(
        self, key: int, *, rearload: bool = False, code: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        """A new order for cabinet ``key``, its ``open_code`` provisioned to the agent as
        a hash. See :meth:`Orders.create`."""
        return await self._orders.create(key, rearload=rearload, code=code, **kw)

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order made, with ``collected``: the agent told ``code_opened`` for it."""
        return self._orders.listing()

    async def _list_orders(self, request: web.Request) -> web.Response:
        return web.json_response(self.orders)

    # -- fault injection ----------------------------------------------------

    @property
    def delay(self) -> float:
        """Seconds to stall before answering each feedback request (settable)."""
        return self._faults.delay

    @delay.setter
    def delay(self, value: float) -> None:
        self._faults.delay = value

    @property
    def answer_delay_s(self) -> float:
        """Seconds to hold each answer back after the body was recorded (settable)."""
        return self._faults.answer_delay_s

    @answer_delay_s.setter
    def answer_delay_s(self, value: float) -> None:
        self._faults.answer_delay_s = value

    @property
    def failing_status(self) -> int | None:
        """An HTTP status every feedback request gets until set back to None (settable)."""
        return self._faults.failing_status

    @failing_status.setter
    def failing_status(self, value: int | None) -> None:
        self._faults.failing_status = value

    @property
    def redirected(self) -> list[dict[str, Any]]:
        """Requests that followed a redirect: ``{"method", "api_key_sent"}``; never any."""
        return self._faults.redirected

    @property
    def odd_answers(self) -> list[dict[str, Any]]:
        """Odd answers given: ``{"answered_at", "kind", "retry_after"}``."""
        return self._faults.odd_answers

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer ``status`` to the next ``count`` feedback requests, recording nothing.

        See :meth:`FaultSwitches.fail_next`."""
        self._faults.fail_next(status, count, retry_after)

    def drop_next(self, count: int = 1, *, after_processing: bool = False) -> None:
        """Close the next ``count`` connections without an answer.

        See :meth:`FaultSwitches.drop_next`."""
        self._faults.drop_next(count, after_processing=after_processing)

    def odd_next(self, kind: str, count: int = 1, *, retry_after: str = "999999999") -> None:
        """Answer the next ``count`` feedback requests oddly (``kind`` in ``ODD_KINDS``).

        See :meth:`FaultSwitches.odd_next`."""
        self._faults.odd_next(kind, count, retry_after=retry_after)

    def heal(self) -> None:
        """Forget every injected failure, drop and odd answer still queued, delays and
        silence."""
        self._faults.heal()
        self._channel.silent = False

    @property
    def silent(self) -> bool:
        """True: the command channel swallows everything without closing (pings too)."""
        return self._channel.silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._channel.silent = value

    # -- observation --------------------------------------------------------

    @property
    def received(self) -> list[dict[str, Any]]:
        """Accepted requests: ``{"received_at": unix time, "body": the JSON body}``."""
        return self._feedback.received

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """Requests answered 4xx: ``{"received_at", "status", "body", "response"}``."""
        return self._feedback.rejected

    def cabinet_updates(self) -> list[dict[str, Any]]:
        """Every accepted cabinet entry, in the order received."""
        return self._feedback.cabinet_updates()

    async def wait_for(self, predicate: Predicate, timeout: float) -> dict[str, Any]:
        """The first accepted cabinet entry, or else body, matching ``predicate``.

        See :meth:`FeedbackEndpoint.wait_for`."""
        return await self._feedback.wait_for(predicate, timeout)

    async def _shutdown_agents(self, app: web.Application) -> None:
        await self.disconnect_agents()


# Not the random module's own: Hypothesis seeds it with 0 for each example, and then
# every test worker chose the same ports in the same order.
_CHOICE = random.SystemRandom()
# A port chosen stays its chooser's this long: bound within seconds, but a test restarts
# its agent or its cloud on the same port for minutes (crash rounds, outages), and a 60 s
# claim let another worker take it in a gap (seen: "address already in use" at start).
CLAIM_S = 600.0


def claims() -> Path:
    """This user's folder of ports chosen: ``$TMPDIR/locker-agent-ports-UID``, 0700.

    OSError when it cannot be made, or is not a folder of this user's alone (a link
    or a folder another user made there first: never written through).
    """
    folder = Path(tempfile.gettempdir()) / f"locker-agent-ports-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise OSError(f"{folder}: not a folder of this user's alone")
    return folder


def claim(port: int) -> bool:
    """False when another caller of this user's chose ``port`` in the last ``CLAIM_S``;
    else marks it chosen (a file in :func:`claims`) and gives True.

    A free port is bound later by whoever it was chosen for: two test workers that chose
    the same one meanwhile both bound it, and one agent stopped at start. True when the
    folder cannot be used: the choice is then as good as random.
    """
    try:
        folder = claims()
        lock = os.open(folder, os.O_RDONLY)
    except OSError:
        return True
    marker = folder / str(port)
    try:
        # One caller at a time looks and takes: two that found the same old claim each
        # took it again, and both bound the port.
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            age = time.time() - marker.stat().st_mtime
            # Dated ahead by more than a claim lasts: made before the clock was set back.
            if -CLAIM_S < age < CLAIM_S:
                return False
        marker.touch()  # chosen now, or an old choice (long bound, given up) taken again
        return True
    except OSError:
        return True
    finally:
        os.close(lock)  # and the lock with it


def outside_ephemeral(host: str, tries: int = 50) -> int:
    """A port free on ``host`` below the kernel's ephemeral range (0 if none is found),
    not chosen by another caller in the last ``CLAIM_S`` (:func:`claim`): a cloud that goes
    down and comes back on its address finds it free again, where a port from the
    ephemeral range may meanwhile be any outgoing connection's (a test failed on
    "address already in use" after a simulated outage)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low <= 10000:
        return 0  # no room below the range: the caller takes any free port
    for _ in range(tries):
        port = _CHOICE.randrange(10000, low)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        if claim(port):
            return port
    return 0
