"""The cloud's side of the command channel: commands out to the agent, answers matched by id.

A websocket at ``/api/lockers/commands`` (``api-key`` header, 401 before the
upgrade when wrong) on which ``send_command`` sends ``{"id", "key",
...command}`` to the connected agent and waits for the answer with the same id.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from simulator.cloud.common import Predicate, json_or_text, matches

log = structlog.get_logger(__name__)

COMMANDS_PATH = "/api/lockers/commands"


@dataclass(slots=True)
class _Waiter:
    ws: web.WebSocketResponse
    future: asyncio.Future[dict[str, Any]]


class CommandChannel:
    """The agents' websockets, the commands sent on them and the answers they gave."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key
        # Connected agents (newest last), answers by id.
        self._agents: list[web.WebSocketResponse] = []
        self._agents_changed = asyncio.Event()
        self._waiters: dict[str, deque[_Waiter]] = {}
        self.connections = 0  # websocket upgrades accepted, ever
        self.refused = 0  # upgrades refused for a wrong api-key
        # Every message an agent sent on the channel, parsed when it was JSON.
        self.answers: list[Any] = []
        self._answered = asyncio.Event()
        # True: the channel goes silent without closing (pings unanswered), as behind
        # a proxy that swallows traffic; False answers again.
        self.silent = False

    @property
    def agents(self) -> int:
        """How many agents are connected right now."""
        return len(self._agents)

    async def wait_for_agent(self, timeout: float) -> None:
        """Returns once an agent is connected; TimeoutError when none comes in time."""
        async with asyncio.timeout(timeout):
            while not self._agents:
                self._agents_changed.clear()
                await self._agents_changed.wait()

    async def send_command(self, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a command to the newest connected agent and return its answer.

        ``body`` is ``{"id", "key", ...command}``; an id is added when missing.
        Waits (within ``timeout``) for an agent if none is connected. Sending
        the same id twice waits for two answers. ConnectionResetError when the
        agent goes away before answering, TimeoutError when it does not answer.
        """
        body = dict(body)
        body.setdefault("id", uuid.uuid4().hex)
        ident = _id_key(body["id"])
        async with asyncio.timeout(timeout):
            await self.wait_for_agent(timeout)
            ws = self._agents[-1]
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            waiter = _Waiter(ws, future)
            self._waiters.setdefault(ident, deque()).append(waiter)
            try:
                await ws.send_str(json.dumps(body))
                log.info("fake cloud sent command", command=body)
                return await future
            finally:
                queue = self._waiters.get(ident)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiters[ident]

    async def send_raw(self, data: str | bytes) -> None:
        """Send any frame to the newest agent (bad messages); see ``wait_for_answer``."""
        await self.wait_for_agent(5.0)
        ws = self._agents[-1]
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)

    async def wait_for_answer(self, predicate: Predicate, timeout: float) -> dict[str, Any]:
        """The first answer (a JSON object) matching ``predicate``, received or to come."""
        checked = 0
        async with asyncio.timeout(timeout):
            while True:
                while checked < len(self.answers):
                    answer = self.answers[checked]
                    checked += 1
                    if isinstance(answer, dict) and matches(predicate, answer):
                        return answer
                self._answered.clear()
                await self._answered.wait()

    async def disconnect_agents(self) -> None:
        """Close every agent's socket (the agent should reconnect)."""
        agents, self._agents = self._agents, []
        self._agents_changed.set()
        for ws in agents:
            self._fail_waiters(ws)
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"disconnected by the simulator")
        if agents:
            log.info("fake cloud disconnected agents", count=len(agents))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/lockers/commands``: an agent's websocket, for as long as it stays."""
        given = request.headers.get("api-key", "")
        if not hmac.compare_digest(given.encode(), self._api_key.encode()):
            self.refused += 1
            log.info("fake cloud refused command channel", status=401)
            return web.json_response(
                {"error": "Unauthorized", "message": "Invalid API key"}, status=401
            )
        ws = web.WebSocketResponse(autoping=False)  # pings answered below, unless silent
        await ws.prepare(request)
        self.connections += 1
        self._agents.append(ws)
        self._agents_changed.set()
        log.info("fake cloud agent connected", connections=self.connections)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.PING and not self.silent:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    self._answer_received(json_or_text(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    self._answer_received(msg.data)
        finally:
            if ws in self._agents:
                self._agents.remove(ws)
                self._agents_changed.set()
            self._fail_waiters(ws)
            log.info("fake cloud agent disconnected")
        return ws

    def _answer_received(self, answer: Any) -> None:
        self.answers.append(answer)
        self._answered.set()
        log.info("fake cloud got answer", answer=answer)
        if not isinstance(answer, dict) or "id" not in answer:
            return
        queue = self._waiters.get(_id_key(answer["id"]))
        while queue:
            waiter = queue.popleft()
            if not waiter.future.done():
                waiter.future.set_result(answer)
                break

    def _fail_waiters(self, ws: web.WebSocketResponse) -> None:
        for queue in self._waiters.values():
            for waiter in queue:
                if waiter.ws is ws and not waiter.future.done():
                    waiter.future.set_exception(
                        ConnectionResetError("the agent went away before answering")
                    )


def _id_key(command_id: Any) -> str:
    """Ids compared as JSON: 5 and "5" are different commands."""
    return json.dumps(command_id, sort_keys=True)
