import asyncio

import pytest

from agent.locker.commands import error_body
from agent.locker.errors import Conflict, LockerError
from agent.locker.idempotency import CommandLog
from agent.storage.store import StateStore


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


async def test_a_clock_step_never_makes_an_id_act_twice(log, monkeypatch):
    """A Pi steps its wall clock at the first NTP sync, sometimes by days."""
    import agent.locker.idempotency

    calls = []

    async def act():
        calls.append(1)
        return {}

    await log.run("cloud:'c-1'", act)
    later = agent.locker.idempotency.time.time() + 3 * 24 * 3600
    monkeypatch.setattr(agent.locker.idempotency.time, "time", lambda: later)
    await log.run("cloud:'c-1'", act)
    assert calls == [1]


async def test_results_are_forgotten_by_count_only(tmp_path):
    from agent.locker.idempotency import TRIM_EVERY

    store = StateStore(tmp_path / "s.sqlite3", max_commands=10)
    log = CommandLog(store)
    calls = []

    async def act():
        calls.append(1)
        return {}

    for i in range(TRIM_EVERY):
        await log.run(f"id-{i}", act)
    await log.run(f"id-{TRIM_EVERY - 1}", act)  # among the newest ten: remembered
    await log.run("id-0", act)  # the oldest, past the cap: forgotten, acts again
    assert len(calls) == TRIM_EVERY + 1
    store.close()


async def test_a_bug_inside_is_an_unknown_outcome_not_a_second_try(log):
    """The command may have pulsed before it failed: a retry must not pulse again."""
    calls = []

    async def boom():
        calls.append(1)
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await log.run("a", boom)
    with pytest.raises(Conflict, match="outcome is unknown"):
        await log.run("a", boom)
    assert calls == [1]


async def test_a_repeat_waiting_on_a_run_that_hits_a_bug_is_told_the_outcome_is_unknown(log):
    """A repeat of the id arrives while the first run is in flight; the first then hits a
    bug. The repeat gets an answer (it was left cancelled: no answer on the channel)."""
    release = asyncio.Event()

    async def boom():
        await release.wait()
        raise RuntimeError("bug")

    first = asyncio.create_task(log.run("a", boom))
    await asyncio.sleep(0)
    again = asyncio.create_task(log.run("a", boom))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RuntimeError):
        await first
    with pytest.raises(Conflict, match="outcome is unknown"):
        await again


async def test_a_kill_between_pulse_and_result_never_pulses_again(tmp_path):
    """SIGKILL after the action began and before its result was saved: the intent,
    written first, survives; the resent id is told the outcome is unknown."""
    path = tmp_path / "s.sqlite3"
    script = f"""
import asyncio, os, signal
from agent.locker.idempotency import CommandLog
from agent.storage.store import StateStore

async def main():
    log = CommandLog(StateStore({str(path)!r}))
    async def pulse_then_die():
        os.kill(os.getpid(), signal.SIGKILL)  # the lock pulsed; the result is never saved
    await log.run("cloud:'c-9'", pulse_then_die, "5:open")

asyncio.run(main())
"""
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(proc.wait(), 30) == -9
    store = StateStore(path)
    calls = []

    async def act():
        calls.append(1)
        return {}

    with pytest.raises(Conflict, match="outcome is unknown"):
        await CommandLog(store).run("cloud:'c-9'", act, "5:open")
    assert calls == []
    store.close()


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
    from agent.storage.store import StoreError

    save = store.save_command

    def refuse_results(command_id, fingerprint, at, outcome, answer):
        if outcome != "running":  # the intent was written; the disk filled meanwhile
            raise StoreError("state store: database or disk is full")
        save(command_id, fingerprint, at, outcome, answer)

    monkeypatch.setattr(store, "save_command", refuse_results)
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
    from agent.locker.errors import Unavailable

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


async def test_an_intent_the_disk_refuses_does_not_act(log, store, monkeypatch):
    """If the intent cannot be written, a crash could let a resent id act twice:
    the command answers Unavailable and does not act; once the disk takes it, it acts."""
    from agent.locker.errors import Unavailable
    from agent.storage.store import StoreError

    def refuse(*_a, **_k):
        raise StoreError("state store: database or disk is full")

    calls = []

    async def act():
        calls.append(1)
        return {}

    monkeypatch.setattr(store, "save_command", refuse)
    with pytest.raises(Unavailable, match="before acting"):
        await log.run("cloud:'c-2'", act, "2:open")
    assert calls == []
    monkeypatch.undo()
    await log.run("cloud:'c-2'", act, "2:open")
    assert calls == [1]
