"""What the web view and the scenarios can do to a running simulation, each by its real path.

A step is a dict: ``{"who": "cloud" | "person" | "fate", "do": VERB, ...}`` with
the verb's own fields (``key``, ``side``, ``rear``, ``delay``, ``size``, ``mode``,
``bus``, ``board``, ``status``, ``delay_s``, ``p``, ``fault``, ``unit``,
``temperature_c``). :meth:`Actions.run` carries
it out and answers a JSON-able result; bad input is a :class:`StepError`
naming the field, and nothing is done.

- **cloud**: the cabinet command body of the SYNQ API, sent on the fake cloud's
  command websocket (``via = "channel"``, the default) or PUT to the agent's
  local API with its token (``via = "api"``, as a technician would). The
  agent's answer is the result; a refusal is a result with ``ok: false``.
- **person**: the emulator's physical model (Kerong: a door, a latch and an item
  behind a board channel, read by the agent as bytes on the pty) or the mock
  pins (GPIO: switches, beams, item sensors).
- **fate**: the emulator's and the fake cloud's fault switches, and the food
  locker's physics (:mod:`simulator.food`): a compressor or heater that dies, a
  relay welded on, a sensor that fails as DS18B20s do, the room's temperature.

Nothing here reaches into the agent's memory. Adding a verb is one method
named ``_<who>_<verb>``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from simulator.food import FoodPlant
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import Simulation
from simulator.web.disk import SmallDisk
from simulator.web.pickup import PickupActions

WHO = ("cloud", "person", "fate")
COMMAND_TIMEOUT_S = 15.0  # an open answers once the door confirmed: seconds, not ms
SIDES = ("front", "rear")
SENSOR_FAULTS = ("missing", "crc", "power_on", "stuck")
ROOM_C = (-20.0, 50.0)  # the rooms a locker stands in


class StepError(ValueError):
    """A step that cannot be carried out as written (unknown verb, cabinet, field)."""


def verbs() -> dict[str, list[str]]:
    """Every verb by who does it, for the page and error messages."""
    return {
        who: sorted(n.removeprefix(f"_{who}_") for n in dir(Actions) if n.startswith(f"_{who}_"))
        for who in WHO
    }


class Actions(PickupActions):
    """The steps a person, the cloud or fate can take on ``sim`` (a started Simulation).

    ``disk``: the small disk under the agent's storage, when there is one (the
    disk-full fault needs it; ``disk_why_not`` says why there is none)."""

    def __init__(
        self, sim: Simulation, disk: SmallDisk | None = None, disk_why_not: str | None = None
    ) -> None:
        self.sim = sim
        self.disk = disk if disk is not None and disk.mounted else None
        self.disk_why_not = disk_why_not or "simulate --small-disk puts the storage on one"

    async def run(self, step: dict[str, Any]) -> dict[str, Any]:
        """Carry out ``step``; its result. StepError for a step that cannot be done."""
        who, verb = step.get("who"), step.get("do")
        if who not in WHO:
            raise StepError(f"who: one of {', '.join(WHO)}, not {who!r}")
        handler = getattr(self, f"_{who}_{verb}", None) if isinstance(verb, str) else None
        if handler is None:
            raise StepError(f"do: {who} can {', '.join(verbs()[who])}, not {verb!r}")
        try:
            result = await handler(step)
        except (KeyError, TypeError) as err:
            raise StepError(f"{who} {verb}: a field is missing or wrong ({err})") from None
        except ValueError as err:  # the emulators' own refusals (no such board, no beam)
            raise StepError(f"{who} {verb}: {err}") from None
        return result if result is not None else {"ok": True}

    # -- where things are ----------------------------------------------------

    def _wiring(self, step: dict[str, Any], side: str | None = None) -> dict[str, Any]:
        key = _int(step, "key")
        side = side or step.get("side", "front")
        if side not in SIDES:
            raise StepError(f"side: front or rear, not {side!r}")
        for cabinet in self.sim.config_data["cabinets"]:
            if cabinet["key"] == key:
                wiring = cabinet.get(side)
                if not isinstance(wiring, dict):
                    raise StepError(f"cabinet {key} has no {side} door")
                return {"key": key, "side": side, **wiring}
        raise StepError(f"key: no cabinet {key} in this locker")

    def _kerong(self, wiring: dict[str, Any]) -> KerongBoardEmulator | None:
        """The emulator behind a door, or None when the door is on GPIO."""
        return self.sim.buses.get(wiring["bus"])

    def _bus(self, step: dict[str, Any]) -> KerongBoardEmulator:
        name = step.get("bus") or next(iter(self.sim.buses), None)
        if name not in self.sim.buses:
            raise StepError(f"bus: one of {sorted(self.sim.buses)}, not {name!r}")
        return self.sim.buses[name]

    def _gpio(self) -> Any:
        if self.sim.touchless is None:
            raise StepError("this locker has nothing on GPIO")
        return self.sim.touchless

    def _food(self) -> FoodPlant:
        if self.sim.food is None:
            raise StepError("this locker has no thermal cabinets (simulate --locker food)")
        return self.sim.food

    # -- as the cloud --------------------------------------------------------

    async def _command(self, step: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        key = _int(step, "key")
        body = {k: v for k, v in body.items() if v is not None}
        via = step.get("via", "channel")
        if via == "api":
            return await self._put(key, body)
        if via != "channel":
            raise StepError(f"via: channel or api, not {via!r}")
        if not self.sim.cloud.listening:
            raise StepError("the cloud is down: bring it back first (fate cloud_up)")
        try:
            answer = await self.sim.cloud.send_command(
                {"key": key, **body}, timeout=COMMAND_TIMEOUT_S
            )
        except TimeoutError:
            return {"ok": False, "error": "no answer from the agent on the command channel"}
        except ConnectionResetError as err:
            return {"ok": False, "error": str(err)}
        return answer

    async def _put(self, key: int, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.sim.token}"}
        url = f"{self.sim.api_url}/api/lockers/cabinets/{key}"
        timeout = aiohttp.ClientTimeout(total=COMMAND_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.put(url, json=body, headers=headers) as resp,
        ):
            answer = await resp.json()
        if resp.status == 200:
            return {"ok": True, "cabinet": answer}
        return {"ok": False, "status": resp.status, "error": answer}

    async def _cloud_open(self, step: dict[str, Any]) -> dict[str, Any]:
        rear = bool(step.get("rear", False)) or step.get("side") == "rear"
        return await self._command(step, {"command": "open", "rearload": rear or None})

    async def _cloud_close(self, step: dict[str, Any]) -> dict[str, Any]:
        return await self._command(step, {"command": "close", "delay": step.get("delay")})

    async def _cloud_enable(self, step: dict[str, Any]) -> dict[str, Any]:
        return await self._command(step, {"command": "enable"})

    async def _cloud_disable(self, step: dict[str, Any]) -> dict[str, Any]:
        return await self._command(step, {"command": "disable", "reason": step.get("reason")})

    async def _cloud_resize(self, step: dict[str, Any]) -> dict[str, Any]:
        return await self._command(step, {"command": "resize", "size": step["size"]})

    async def _cloud_set_thermal_mode(self, step: dict[str, Any]) -> dict[str, Any]:
        body = {"command": "set_thermal_mode", "thermal_mode": step["mode"]}
        return await self._command(step, body)

    # -- as a person ----------------------------------------------------------

    async def _person_open(self, step: dict[str, Any]) -> dict[str, Any]:
        """Pull the door: a latched Kerong door stays shut (``opened`` false)."""
        wiring = self._wiring(step)
        if (emulator := self._kerong(wiring)) is None:
            raise StepError("a GPIO door opens by its motor or latch: force it instead")
        return {"ok": True, "opened": emulator.open_door(wiring["board"], wiring["channel"])}

    async def _person_shut(self, step: dict[str, Any]) -> None:
        wiring = self._wiring(step)
        if (emulator := self._kerong(wiring)) is not None:
            emulator.shut_door(wiring["board"], wiring["channel"])
        elif wiring["side"] == "front":
            self._gpio().shut_front(wiring["key"])
        else:
            self._gpio().shut_rear(wiring["key"])

    async def _person_force(self, step: dict[str, Any]) -> None:
        wiring = self._wiring(step)
        if (emulator := self._kerong(wiring)) is not None:
            emulator.force_open(wiring["board"], wiring["channel"])
        elif wiring["side"] == "front":
            self._gpio().push_open(wiring["key"])
        else:
            raise StepError("a GPIO rear door cannot be forced here: jam it or open it")

    async def _person_put_item(self, step: dict[str, Any]) -> None:
        self._item(step, True)

    async def _person_take_item(self, step: dict[str, Any]) -> None:
        self._item(step, False)

    def _item(self, step: dict[str, Any], present: bool) -> None:
        wiring = self._wiring(step, "front")  # the item sensor sits on the front channel
        if (emulator := self._kerong(wiring)) is not None:
            emulator.set_item(wiring["board"], wiring["channel"], present)
        else:
            self._gpio().set_item(wiring["key"], present)

    async def _person_reset_thermal(self, step: dict[str, Any]) -> dict[str, Any]:
        """A technician at the locker clears the cabinet's latched thermal shut-offs, on
        the local API as ``locker-agent thermal reset`` does (ADR 0011)."""
        key = _int(step, "key")
        headers = {"Authorization": f"Bearer {self.sim.token}"}
        url = f"{self.sim.api_url}/api/lockers/cabinets/{key}/thermal/reset"
        timeout = aiohttp.ClientTimeout(total=COMMAND_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json={"by": "the simulator's technician"}, headers=headers) as resp,
        ):
            answer = await resp.json()
        if resp.status != 200:
            raise StepError(f"the reset was refused ({resp.status}): {answer.get('message')}")
        return {"ok": True, "cleared": answer["cleared"]}

    async def _person_block(self, step: dict[str, Any]) -> None:
        """Stand in a motorised door's way (its light beam sees it)."""
        self._gpio().block_beam(_int(step, "key"), True)

    async def _person_unblock(self, step: dict[str, Any]) -> None:
        self._gpio().block_beam(_int(step, "key"), False)

    # -- as fate ----------------------------------------------------------------

    async def _fate_jam(self, step: dict[str, Any]) -> None:
        self._jam(step, True)

    async def _fate_unjam(self, step: dict[str, Any]) -> None:
        self._jam(step, False)

    def _jam(self, step: dict[str, Any], on: bool) -> None:
        wiring = self._wiring(step)
        if (emulator := self._kerong(wiring)) is not None:
            emulator.jam(wiring["board"], wiring["channel"], on)
        else:
            self._gpio().jam_latch(wiring["key"], on, side=wiring["side"])

    async def _fate_break_motor(self, step: dict[str, Any]) -> None:
        wiring = self._wiring(step)
        self._gpio().motor_broken(wiring["key"], True, side=wiring["side"])

    async def _fate_mend_motor(self, step: dict[str, Any]) -> None:
        wiring = self._wiring(step)
        self._gpio().motor_broken(wiring["key"], False, side=wiring["side"])

    async def _fate_board_offline(self, step: dict[str, Any]) -> None:
        self._bus(step).set_offline(_int(step, "board"), True)

    async def _fate_board_online(self, step: dict[str, Any]) -> None:
        emulator = self._bus(step)
        emulator.set_offline(_int(step, "board"), False)
        emulator.bank.set_flapping(_int(step, "board"), None)

    async def _fate_board_flap(self, step: dict[str, Any]) -> None:
        self._bus(step).bank.set_flapping(_int(step, "board"), 2, 2)

    async def _fate_corrupt_line(self, step: dict[str, Any]) -> None:
        p = float(step.get("p", 0.3))
        if not 0.0 <= p <= 1.0:
            raise StepError(f"p: a probability 0-1, not {p}")
        self._bus(step).bank.corrupt = p

    async def _fate_clean_line(self, step: dict[str, Any]) -> None:
        bank = self._bus(step).bank
        bank.corrupt = bank.garbage = bank.drop = 0.0

    async def _fate_cloud_down(self, step: dict[str, Any]) -> None:
        """The cloud stops listening: feedback and the command channel are refused."""
        await self.sim.cloud.close()

    async def _fate_cloud_up(self, step: dict[str, Any]) -> None:
        try:
            await self.sim.cloud.start()
        except OSError as err:  # its address taken meanwhile: said, never a 500
            raise StepError(f"the cloud cannot listen on its address again: {err}") from None

    async def _fate_cloud_errors(self, step: dict[str, Any]) -> None:
        status = _int(step, "status") if "status" in step else 500
        if not 400 <= status <= 599:
            raise StepError(f"status: an HTTP error 400-599, not {status}")
        self.sim.cloud.failing_status = status

    async def _fate_cloud_slow(self, step: dict[str, Any]) -> None:
        delay_s = float(step.get("delay_s", 3.0))
        if not 0.0 <= delay_s <= 60.0:
            raise StepError(f"delay_s: 0-60 seconds, not {delay_s}")
        self.sim.cloud.delay = delay_s

    async def _fate_disk_full(self, step: dict[str, Any]) -> dict[str, Any]:
        """The agent's storage fills up (a filler file, until ENOSPC)."""
        if self.disk is None:
            raise StepError(f"no small disk: {self.disk_why_not}")
        return {"ok": True, "filled_bytes": await asyncio.to_thread(self.disk.fill)}

    async def _fate_disk_free(self, step: dict[str, Any]) -> None:
        if self.disk is None:
            raise StepError(f"no small disk: {self.disk_why_not}")
        self.disk.free()

    async def _fate_fail_compressor(self, step: dict[str, Any]) -> dict[str, Any]:
        """The cabinet's compressor dies: every cabinet on it gets no cold."""
        return self._cold(step, failed=True)

    async def _fate_mend_compressor(self, step: dict[str, Any]) -> dict[str, Any]:
        return self._cold(step, failed=False)

    def _cold(self, step: dict[str, Any], *, failed: bool) -> dict[str, Any]:
        food, key = self._food(), _int(step, "key")
        if not food.fitted(key)[1]:
            raise StepError(f"cabinet {key} has no cooler or compressor")
        keys = food.cooled_with(key)
        for each in keys:
            food.plant.body(each).cooler_failed = failed
        return {"ok": True, "keys": keys}

    async def _fate_fail_heater(self, step: dict[str, Any]) -> None:
        self._heater(step, failed=True)

    async def _fate_mend_heater(self, step: dict[str, Any]) -> None:
        self._heater(step, failed=False)

    def _heater(self, step: dict[str, Any], *, failed: bool) -> None:
        food, key = self._food(), _int(step, "key")
        if not food.fitted(key)[0]:
            raise StepError(f"cabinet {key} has no heater")
        food.plant.body(key).heater_failed = failed

    async def _fate_weld_relay(self, step: dict[str, Any]) -> dict[str, Any]:
        """A relay welded shut: the heater (or cooling) runs whatever is commanded.
        ``unit``: heater or cooler; left out, the one the cabinet has (heater first)."""
        food, key = self._food(), _int(step, "key")
        heater, cooler = food.fitted(key)
        unit = step.get("unit") or ("heater" if heater else "cooler")
        if unit not in ("heater", "cooler"):
            raise StepError(f"unit: heater or cooler, not {unit!r}")
        if not (heater if unit == "heater" else cooler):
            raise StepError(f"cabinet {key} has no {unit}")
        food.plant.body(key).stuck_on = unit
        return {"ok": True, "unit": unit}

    async def _fate_mend_relay(self, step: dict[str, Any]) -> None:
        food = self._food()
        food.plant.body(_int(step, "key")).stuck_on = None

    async def _fate_fail_sensor(self, step: dict[str, Any]) -> None:
        """The cabinet's DS18B20 fails: ``fault`` missing (default), crc, power_on, stuck."""
        fault = step.get("fault", "missing")
        if fault not in SENSOR_FAULTS:
            raise StepError(f"fault: one of {', '.join(SENSOR_FAULTS)}, not {fault!r}")
        self._food().plant.sensor(_int(step, "key")).fault = fault

    async def _fate_mend_sensor(self, step: dict[str, Any]) -> None:
        self._food().plant.sensor(_int(step, "key")).fault = None

    async def _fate_set_room(self, step: dict[str, Any]) -> None:
        """The room's temperature (``temperature_c``): every cabinet exchanges heat with it."""
        value = step.get("temperature_c")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise StepError(f"temperature_c: degrees C, not {json.dumps(value)}")
        try:
            room_c = float(value)
        except ValueError:
            raise StepError(f"temperature_c: degrees C, not {json.dumps(value)}") from None
        if not ROOM_C[0] <= room_c <= ROOM_C[1]:
            raise StepError(f"temperature_c: a room is {ROOM_C[0]:g}-{ROOM_C[1]:g} C, not {value}")
        self._food().plant.room_c = room_c

    async def _fate_cloud_heal(self, step: dict[str, Any]) -> None:
        """The cloud answers promptly and well again (and listens, if it was down)."""
        self.sim.cloud.heal()
        await self.sim.cloud.start()


def _int(step: dict[str, Any], field: str) -> int:
    value = step.get(field)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise StepError(f"{field}: a whole number, not {json.dumps(value)}")
    try:
        return int(value)
    except ValueError:
        raise StepError(f"{field}: a whole number, not {json.dumps(value)}") from None
