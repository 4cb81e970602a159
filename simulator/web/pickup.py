"""Pickup codes in the simulation: the cloud makes orders, a person scans a code.

A mixin of :class:`simulator.web.actions.Actions` (its verbs are found there):

- ``cloud order``: the fake cloud makes an order for cabinet ``key`` (``rear``: the
  rear door) with the ``code`` given (or one of its own) and provisions it to the agent
  on the command channel (the cloud must be up); the result names the code;
- ``person scan``: a customer scans ``code`` on the virtual scanner (``reader``: which
  one, by name; the first by default): bytes on a pseudo-terminal, as a real scanner.

Bad input is a ValueError (``Actions.run`` names the verb).
"""

from __future__ import annotations

from typing import Any

from simulator.run import Simulation

CODE_MAX = 128  # what the agent's reader takes in a line


class PickupActions:
    """The pickup verbs; ``sim`` is the running simulation."""

    sim: Simulation

    async def _cloud_order(self, step: dict[str, Any]) -> dict[str, Any]:
        key = step["key"]
        if isinstance(key, bool) or not isinstance(key, int):
            raise ValueError(f"key: a whole number, not {key!r}")
        code = step.get("code")
        if code is not None and (not isinstance(code, str) or not code.strip()):
            raise ValueError("code: a non-empty text")
        if not self.sim.cloud.listening:
            raise ValueError("the cloud is down: bring it back first (fate cloud_up)")
        rear = bool(step.get("rear", False)) or step.get("side") == "rear"
        try:
            order = await self.sim.cloud.create_order(key, rearload=rear, code=code)
        except (TimeoutError, ConnectionResetError) as err:
            return {"ok": False, "error": f"the agent took no codes: {err or 'no answer'}"}
        answer = order.pop("answer")
        return {"ok": order["provisioned"], "order": order, "answer": answer}

    async def _person_scan(self, step: dict[str, Any]) -> dict[str, Any]:
        code = step["code"]
        if not isinstance(code, str) or not code.strip() or len(code) > CODE_MAX:
            raise ValueError(f"code: a text of 1-{CODE_MAX} characters")
        name = step.get("reader") or next(iter(self.sim.scanners))
        scanner = self.sim.scanners.get(name)
        if scanner is None:
            raise ValueError(f"reader: one of {sorted(self.sim.scanners)}, not {name!r}")
        scanner.scan(code.strip())
        return {"ok": True, "reader": name}
