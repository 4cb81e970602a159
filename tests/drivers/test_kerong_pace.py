"""The poller's pace and the bus-wide status: at rest slowly, by one 0x32 sweep where
the boards answer it (given up where they do not), at the wire's pace at once on a
command, a change or a door held open, and back at rest after. Against the board
emulator on a real pseudo-terminal; functional, not timed (rates are compared with
bounds many times apart)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.kerong import codec
from drivers.kerong.bus import KerongBus, KerongBusConfig
from drivers.kerong.sweep import GIVE_UP_AFTER
from simulator.kerong_board import KerongBoardEmulator

WAIT = 20.0  # only bounds how long a broken test hangs (a loaded host's reply clock
# learns slower replies: three boards found silent took more than 5 s in a loaded run)
REST_S = 0.1
HOLD_S = 0.5
BOARDS = [0, 1, 2]


async def eventually(predicate, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


class Statuses:
    def __init__(self) -> None:
        self.last: dict[int, object] = {}

    def __call__(self, board, status) -> None:
        self.last[board] = status

    def closed(self, board: int, channel: int) -> bool | None:
        status = self.last.get(board)
        return None if status is None else status.closed[channel - 1]


@pytest.fixture
async def rig():
    made: list[tuple[KerongBoardEmulator, KerongBus]] = []

    async def make(*, without_bus_status: tuple[int, ...] = (), **options):
        emulator = KerongBoardEmulator(BOARDS, has_items=False)
        emulator.bank.no_bus_status.update(without_bus_status)
        await emulator.start()
        statuses = Statuses()
        settings = {
            "poll_interval_s": 0.005,
            "rest_poll_interval_s": REST_S,
            "active_hold_s": HOLD_S,
            "reply_timeout_s": 0.2,  # a loaded host must not make a sweep miss a board
            "name": "pace",
        }
        settings.update(options)
        config = KerongBusConfig(port=emulator.port, boards=BOARDS, **settings)
        bus = KerongBus(config, statuses)
        made.append((emulator, bus))
        await bus.start()
        await asyncio.wait_for(bus.wait_ready(), WAIT)
        return emulator, bus, statuses

    yield make
    for emulator, bus in made:
        await bus.close()
        await emulator.close()


def requests(emulator: KerongBoardEmulator, cmd: int) -> int:
    return sum(1 for raw in emulator.bank.received if raw[2] == cmd)


async def rates(emulator: KerongBoardEmulator, seconds: float) -> tuple[float, float]:
    """Per-board status requests and bus-wide sweeps a second over ``seconds``."""
    reads, sweeps = requests(emulator, codec.CMD_STATUS), requests(emulator, codec.CMD_BUS_STATUS)
    await asyncio.sleep(seconds)
    return (
        (requests(emulator, codec.CMD_STATUS) - reads) / seconds,
        (requests(emulator, codec.CMD_BUS_STATUS) - sweeps) / seconds,
    )


async def a_quiet_window(emulator: KerongBoardEmulator, seconds: float, tries: int = 5) -> bool:
    """Whether one of ``tries`` windows of ``seconds`` had sweeps and no board read on its
    own: at the wire's pace every window has reads; at rest a loaded host may still make
    a sweep miss a board now and then (then read alone, as it should be), not always."""
    for _ in range(tries):
        reads, sweeps = await rates(emulator, seconds)
        if reads == 0 and sweeps > 0:
            return True
    return False


async def at_rest(bus: KerongBus) -> None:
    await eventually(lambda: not bus._poller.active)


async def test_at_rest_one_sweep_reads_every_board(rig):
    emulator, bus, statuses = await rig()
    await at_rest(bus)
    _, sweeps = await rates(emulator, 0.5)
    assert 0 < sweeps <= 2 / REST_S  # a sweep each rest interval, not the wire's pace
    assert await a_quiet_window(emulator, 0.5)  # no board read on its own
    assert bus._poller._sweep.answered and bus._poller._sweep.usable
    # A door that changes at rest is seen by a sweep and brings the wire's pace.
    emulator.force_open(1, 4)
    await eventually(lambda: statuses.closed(1, 4) is False)
    assert bus._poller.active
    reads, _ = await rates(emulator, 0.2)
    assert reads >= len(BOARDS) / 0.2  # board by board (none at rest): a cycle at least


async def test_the_pace_goes_back_down_once_every_door_is_shut(rig):
    emulator, bus, statuses = await rig()
    await at_rest(bus)
    emulator.force_open(0, 2)
    await eventually(lambda: statuses.closed(0, 2) is False)
    await asyncio.sleep(HOLD_S * 2)
    assert bus._poller.active  # a door held open keeps it up past the hold
    emulator.shut_door(0, 2)
    await eventually(lambda: statuses.closed(0, 2) is True)
    await at_rest(bus)  # the hold after the last change, then rest
    assert await a_quiet_window(emulator, 0.3)


async def test_a_command_brings_the_wire_pace_at_once(rig):
    emulator, bus, _ = await rig()
    await at_rest(bus)
    await bus.read_status(2)
    assert bus._poller.active
    await at_rest(bus)
    await bus.unlock(0, 5)
    assert bus._poller.active
    reads, _ = await rates(emulator, 0.2)
    assert reads >= len(BOARDS) / 0.2


async def open_from_the_first_read() -> tuple[KerongBoardEmulator, KerongBus]:
    """One board whose channel 16 reads open from the first read (no door wired to it),
    its bus started and at rest; the caller closes both."""
    emulator = KerongBoardEmulator([0], has_items=False)
    emulator.force_open(0, 16)
    await emulator.start()
    config = KerongBusConfig(
        name="pace",
        port=emulator.port,
        boards=[0],
        poll_interval_s=0.005,
        rest_poll_interval_s=REST_S,
        active_hold_s=HOLD_S,
        reply_timeout_s=0.2,  # as the rig's: a loaded host makes replies late
    )
    bus = KerongBus(config, lambda b, s: None)
    await bus.start()
    await asyncio.wait_for(bus.wait_ready(), WAIT)
    await at_rest(bus)
    return emulator, bus


async def test_a_channel_open_from_the_first_read_does_not_keep_the_bus_awake():
    # No door wired to it: it reads open for good, and must not cost the wire's pace.
    emulator, bus = await open_from_the_first_read()
    try:
        # Once it closes it counts like any other door: opened again, the pace goes up.
        emulator.shut_door(0, 16)
        await eventually(lambda: bus.status(0).closed[15])
        await at_rest(bus)
        emulator.force_open(0, 16)
        await eventually(lambda: bus._poller.active)
        await asyncio.sleep(HOLD_S * 2)
        assert bus._poller.active
    finally:
        await bus.close()
        await emulator.close()


async def test_a_bus_that_does_not_answer_the_bus_status_reads_board_by_board(rig):
    emulator, bus, statuses = await rig(without_bus_status=tuple(BOARDS))
    sweep = bus._poller._sweep
    await eventually(lambda: not sweep.usable)
    assert sweep.sweeps == GIVE_UP_AFTER and not sweep.answered
    await at_rest(bus)
    reads, sweeps = await rates(emulator, 0.5)
    assert sweeps == 0  # given up for good
    assert 0 < reads <= 2 * len(BOARDS) / REST_S  # each board at the rest pace
    # Doors still come through at rest.
    emulator.force_open(2, 9)
    await eventually(lambda: statuses.closed(2, 9) is False)
    assert bus.silent_boards() == []


async def test_boards_all_silent_do_not_give_the_bus_status_up(rig):
    # Nothing answers anything (boards off): that says nothing about the sweep.
    emulator, bus, _ = await rig()
    sweep = bus._poller._sweep
    await at_rest(bus)
    for board in BOARDS:
        emulator.set_offline(board)
    await eventually(lambda: bus.silent_boards() == BOARDS)
    await asyncio.sleep(REST_S * (GIVE_UP_AFTER + 2))
    assert sweep.usable


async def test_bus_status_off_never_sends_it(rig):
    emulator, bus, _ = await rig(bus_status=False)
    await at_rest(bus)
    reads, _ = await rates(emulator, 0.3)
    assert requests(emulator, codec.CMD_BUS_STATUS) == 0
    assert reads > 0


async def test_a_replugged_port_is_read_at_the_wires_pace(rig):
    """Finding: after an unplug at rest the bus stayed at its rest pace, every door
    unknown and every open refused for two rest intervals."""
    _, bus, _ = await rig()
    await at_rest(bus)
    transport = bus._link.transport
    assert transport is not None
    transport.abort()  # the adapter pulled out and in again
    await eventually(lambda: bus._link.transport not in (None, transport))
    assert bus._poller.active


async def test_a_close_heard_only_in_a_late_reply_counts_for_the_pace():
    """A channel open since the first read closes, and the only frame saying so is a late
    reply (no read waited for it); it opens again before the next poll. The poller sees
    what the bus heard: the door counts as wired, and open again it keeps the pace up."""
    emulator, bus = await open_from_the_first_read()
    try:
        emulator.shut_door(0, 16)
        [late] = codec.FrameParser().feed(emulator.bank.status_reply(0))  # what it said then
        emulator.force_open(0, 16)  # ... and open again before any poll
        bus._heard(late, False)
        assert bus.status(0).closed[15]  # taken as a read
        await asyncio.sleep(HOLD_S * 2)
        assert bus._poller.active  # open again, held open: the wire's pace
    finally:
        await bus.close()
        await emulator.close()
