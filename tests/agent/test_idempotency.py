import asyncio

import pytest

from agent.commands import error_body
from agent.errors import Conflict, LockerError
from agent.idempotency import CommandLog
from agent.store import StateStore


@pytest.fixture
def log(store):
    return CommandLog(store)


async def test_concurrent_repeat_waits_for_the_first(log):
    calls = []

    async def act():
        calls.append(1)
        await asyncio.sleep(0.05)
        return {"n": len(calls)}

    results = await asyncio.gather(*(log.run("id-1", act) for _ in range(5)))
    assert calls == [1]
    assert results == [{"n": 1}] * 5


async def test_errors_are_remembered_too(log):
    calls = []

    async def fail():
        calls.append(1)
        raise Conflict("disabled")

    for _ in range(2):
        with pytest.raises(LockerError) as err:
            await log.run("x", fail)
        assert error_body(err.value)[0] == 409 and error_body(err.value)[1]["type"] == "CONFLICT"
    assert calls == [1]


async def test_ids_expire(store):
    now = [1000.0]
    log = CommandLog(store, ttl_s=10, clock=lambda: now[0])
    calls = []

    async def act():
        calls.append(1)
        return {}

    await log.run("a", act)
    now[0] += 5
    await log.run("a", act)
    now[0] += 20
    await log.run("a", act)
    assert len(calls) == 2


async def test_a_crash_inside_is_not_remembered(log):
    async def boom():
        raise RuntimeError("bug")

    async def ok():
        return {"ok": True}

    with pytest.raises(RuntimeError):
        await log.run("a", boom)
    assert await log.run("a", ok) == {"ok": True}


async def test_bad_ids_are_422(log):
    with pytest.raises(LockerError):
        await log.run("x" * 500, lambda: None)


async def test_results_survive_a_restart(tmp_path):
    calls = []

    async def act():
        calls.append(1)
        return {"key": 5, "state": "open"}

    store = StateStore(tmp_path / "s.sqlite3")
    assert await CommandLog(store).run("cloud:'c-7'", act, "5:open") == {"key": 5, "state": "open"}
    store.close()
    store = StateStore(tmp_path / "s.sqlite3")  # the agent restarted; the cloud retries
    again = await CommandLog(store).run("cloud:'c-7'", act, "5:open")
    store.close()
    assert again == {"key": 5, "state": "open"}
    assert calls == [1]


async def test_a_result_the_disk_refuses_is_still_the_answer(log, store, monkeypatch):
    """The lock pulsed: a failed save must neither turn the answer into a 500 nor
    leave a waiting repeat hanging, nor let a later repeat pulse again."""
    from agent.store import StoreError

    def refuse(*_a, **_k):
        raise StoreError("state store: database or disk is full")

    monkeypatch.setattr(store, "save_command", refuse)
    calls = []

    async def act():
        calls.append(1)
        await asyncio.sleep(0.02)
        return {"key": 3, "state": "open"}

    first, repeat = await asyncio.wait_for(
        asyncio.gather(log.run("k", act, "3:open"), log.run("k", act, "3:open")), timeout=2
    )
    assert first == repeat == {"key": 3, "state": "open"}
    assert await log.run("k", act, "3:open") == {"key": 3, "state": "open"}
    assert calls == [1]


async def test_unavailable_is_a_moment_not_a_result(log):
    from agent.errors import Unavailable

    calls = []

    async def act():
        calls.append(1)
        if len(calls) == 1:
            raise Unavailable("board 1 is not answering")
        return {"ok": True}

    with pytest.raises(Unavailable):
        await log.run("u", act)
    assert await log.run("u", act) == {"ok": True}  # the board is back: it acts
    assert await log.run("u", act) == {"ok": True}  # and now it is remembered
    assert calls == [1, 1]
