"""The cloud's orders: each with its ``open_code``, provisioned to the agent as a hash.

``create`` makes an order for a cabinet (the code given, or one made as the SYNQ API
makes them: base64 of a UUID) and sends the agent a ``codes`` message on the command
channel; an order is ``collected`` once the agent's ``code_opened`` with its id came.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.cloud.channel import CommandChannel

FIRST_ORDER_ID = 46188  # the spec's example order


class Orders:
    """Orders made in this fake cloud; ``received`` gives the feedback bodies accepted."""

    def __init__(
        self, channel: CommandChannel, received: Callable[[], list[dict[str, Any]]]
    ) -> None:
        self._channel = channel
        self._received = received
        self._ids = itertools.count(FIRST_ORDER_ID)
        self._orders: list[dict[str, Any]] = []

    async def create(
        self,
        key: int,
        *,
        rearload: bool = False,
        code: str | None = None,
        expires_in_s: float = 86_400.0,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """A new order for cabinet ``key``, its code sent to the connected agent (within
        ``timeout``); the order, with ``provisioned`` saying whether the agent took it."""
        open_code = code or base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")
        expires = datetime.now(UTC) + timedelta(seconds=expires_in_s)
        order: dict[str, Any] = {
            "id": next(self._ids),
            "cabinet_key": key,
            "rearload": rearload,
            "open_code": open_code,
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "provisioned": False,
        }
        self._orders.append(order)
        put = {
            "key": key,
            "rearload": rearload,
            "order_id": order["id"],
            "sha256": hashlib.sha256(open_code.encode()).hexdigest(),
            "expires_at": order["expires_at"],
        }
        answer = await self._channel.send_command(
            {"id": f"codes-{order['id']}", "type": "codes", "put": [put]}, timeout
        )
        order["provisioned"] = answer.get("ok") is True
        order["answer"] = answer
        return dict(order)

    def listing(self) -> list[dict[str, Any]]:
        """Every order, oldest first, with ``collected`` (the agent said ``code_opened``)."""
        opened = {
            body["event"].get("order_id")
            for body in (r["body"] for r in self._received())
            if isinstance(body.get("event"), dict) and body["event"].get("type") == "code_opened"
        }
        return [{**order, "collected": order["id"] in opened} for order in self._orders]
