"""GpioBus on gpiozero's mock pins: polarity, debounce (pure, with a fake clock, and end
to end across threads), relay pulses, door motors, the indicator, start/close.

Timing checks are lower bounds only; WAIT only bounds how long a broken test hangs."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections.abc import Callable

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from drivers.gpio import (
    BLUE,
    DIM_WHITE,
    DULL_RED,
    GREEN,
    MAX_PIN,
    OFF,
    RED,
    YELLOW,
    BusClosed,
    Debouncer,
    GpioBus,
    PinRefused,
    PinSpec,
    Relay,
    outputs,
    parse_pin,
)
from drivers.power import PowerBudget

WAIT = 5.0


class RecordingPin(MockPWMPin):
    """Records every level change of every pin, in order, with a timestamp, and the
    level a pin had when its device let go of it."""

    released = None

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self.factory.changes.append((time.monotonic(), self.info.name, value))
        return changed

    def close(self):
        # MockPWMPin.close() then drops the level to 0 (unlike lgpio, which makes
        # the line an input): what counts is the level at release.
        self.released = self._state
        super().close()


@pytest.fixture
def factory():
    f = MockFactory(pin_class=RecordingPin)
    f.changes = []
    yield f
    f.reset()


def make_bus(factory, **kwargs) -> GpioBus:
    settings = {
        "pin_factory": factory,
        "max_concurrent": 2,
        "stagger_s": 0.0,
        "pulse_s": 0.02,
        "pulse_max_s": 0.05,
        "motor_max_s": 0.2,
        "debounce_s": 0.01,
    }
    settings.update(kwargs)
    return GpioBus("test", **settings)


@pytest.fixture
async def bus(factory):
    b = make_bus(factory)
    yield b
    await b.close()


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def settled(gpio_input, value: bool) -> None:
    async with asyncio.timeout(WAIT):
        await gpio_input.wait_for(value)


def state(factory, number: int) -> float:
    return factory.pin(number).state


def changes_of(factory, name: str) -> list[tuple[float, float]]:
    return [(t, v) for t, n, v in factory.changes if n == name]


# -------------------------------------------------------------------- parse_pin


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (17, PinSpec(17, False, False)),
        (0, PinSpec(0, False, False)),
        ("17", PinSpec(17, False, False)),
        ("GPIO17", PinSpec(17, False, False)),
        ("gpio5", PinSpec(5, False, False)),
        ("^5", PinSpec(5, True, False)),
        ("!5", PinSpec(5, False, True)),
        ("^!5", PinSpec(5, True, True)),
        ("!^GPIO5", PinSpec(5, True, True)),
        (" ^GPIO27 ", PinSpec(27, True, False)),
        ("53", PinSpec(53, False, False)),
    ],
)
def test_parse_pin(spec, expected):
    assert parse_pin(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [True, -1, 54, "54", "", "GPIO", "GP17", "^^5", "!!5", "5!", "BOARD11", "GPIO 17",
     "+5", "-5", "^", 1.5, None],
)  # fmt: skip
def test_parse_pin_rejects(spec):
    with pytest.raises(ValueError):
        parse_pin(spec)


def test_pin_spec_prints_as_a_spec():
    assert str(parse_pin("!^5")) == "^!GPIO5"
    assert parse_pin(str(parse_pin("!^5"))) == parse_pin("^!5")


# -------------------------------------------------------------------- debouncer


def test_debouncer_level_held_for_stable_s_changes():
    d = Debouncer(0.05, initial=False)
    assert d.value is False and d.due() is None
    d.feed(True, 1.0)
    assert d.due() == pytest.approx(1.05)
    assert d.poll(1.049) is None
    assert d.value is False
    assert d.poll(1.05) is True
    assert d.value is True and d.due() is None
    assert d.poll(2.0) is None  # reported once


def test_debouncer_return_within_window_cancels():
    d = Debouncer(0.05, initial=True)
    d.feed(False, 0.0)
    d.feed(True, 0.03)
    assert d.due() is None
    assert d.poll(1.0) is None
    assert d.value is True


def test_debouncer_each_edge_restarts_the_window():
    d = Debouncer(0.05, initial=False)
    d.feed(True, 0.0)
    d.feed(False, 0.02)
    d.feed(True, 0.04)
    assert d.poll(0.06) is None
    assert d.due() == pytest.approx(0.09)
    assert d.poll(0.09) is True


def test_debouncer_same_level_again_keeps_its_start():
    d = Debouncer(0.05, initial=False)
    d.feed(True, 0.0)
    d.feed(True, 0.03)  # a level report, not a new edge
    assert d.due() == pytest.approx(0.05)
    assert d.poll(0.05) is True


def test_debouncer_bounces_shorter_than_stable_s_never_change():
    d = Debouncer(0.05, initial=False)
    now, raw = 0.0, False
    for _ in range(200):  # a switch chattering every 10-40 ms
        raw = not raw
        d.feed(raw, now)
        for step in range(4):
            assert d.poll(now + step * 0.01) is None
        now += 0.01 + (now * 1000 % 3) * 0.01
    assert d.value is False
    d.feed(True, now)
    assert d.poll(now + 0.049) is None
    assert d.poll(now + 0.05) is True


def test_debouncer_zero_window():
    d = Debouncer(0.0, initial=False)
    d.feed(True, 5.0)
    assert d.poll(5.0) is True


# ------------------------------------------------------------------------ inputs


@pytest.mark.parametrize(
    ("spec", "pull", "active_high"),
    [
        ("5", "floating", True),
        ("!5", "floating", False),
        ("^5", "up", True),
        ("^!5", "up", False),
    ],
)
async def test_input_polarity_and_pull(factory, bus, spec, pull, active_high):
    seen: list[bool] = []
    inp = bus.input(spec, seen.append)
    pin = factory.pin(5)
    assert pin.pull == pull
    # A pulled-up pin idles high, a floating mock pin low.
    assert inp.value == (bool(pin.state) == active_high)

    def drive(active: bool) -> None:
        if active == active_high:
            pin.drive_high()
        else:
            pin.drive_low()

    drive(False)
    await settled(inp, False)
    drive(True)
    await settled(inp, True)
    assert inp.value is True
    drive(False)
    await settled(inp, False)
    assert seen[-2:] == [True, False]


async def test_input_bounce_gives_no_change(factory, bus):
    seen: list[bool] = []
    inp = bus.input("^!5", seen.append)
    pin = factory.pin(5)
    for _ in range(5):  # chatter, faster than the debounce window
        pin.drive_low()
        pin.drive_high()
    await asyncio.sleep(bus.debounce_s * 5)
    assert seen == []
    assert inp.value is False


async def test_input_held_level_settles_once(factory, bus):
    seen: list[bool] = []
    inp = bus.input("^!5", seen.append)
    factory.pin(5).drive_low()
    await settled(inp, True)
    await asyncio.sleep(bus.debounce_s * 3)
    assert seen == [True]


async def test_callbacks_from_another_thread_run_on_the_loop(factory, bus):
    loop_thread = threading.get_ident()
    calls: list[tuple[bool, int, asyncio.AbstractEventLoop]] = []

    def on_change(value: bool) -> None:
        calls.append((value, threading.get_ident(), asyncio.get_running_loop()))

    inp = bus.input("^!5", on_change)
    pin = factory.pin(5)
    edge_threads: list[int] = []

    def drive_from_worker() -> None:
        # Mock pins call gpiozero's callbacks on the thread that drives them,
        # as lgpio calls them on its own thread.
        edge_threads.append(threading.get_ident())
        pin.drive_low()

    await asyncio.to_thread(drive_from_worker)
    await settled(inp, True)
    assert edge_threads and edge_threads[0] != loop_thread
    assert calls == [(True, loop_thread, asyncio.get_running_loop())]


async def test_lost_edge_is_caught_when_settling(factory, bus):
    # The pin library reports the edge to active but loses the way back: the
    # re-read at settle time keeps us from settling on a level that is gone.
    seen: list[bool] = []
    inp = bus.input("5", seen.append)
    pin = factory.pin(5)
    pin.edges = "rising"
    pin.drive_high()
    pin.drive_low()  # not reported
    await asyncio.sleep(bus.debounce_s * 5)
    assert seen == []
    assert inp.value is False


async def test_wait_for_returns_at_once_when_already_there(bus):
    inp = bus.input("^!5")
    async with asyncio.timeout(WAIT):
        await inp.wait_for(False)


async def test_failing_callback_does_not_stop_later_changes(factory, bus):
    seen: list[bool] = []

    def on_change(value: bool) -> None:
        seen.append(value)
        raise RuntimeError("callback bug")

    inp = bus.input("^!5", on_change)
    factory.pin(5).drive_low()
    await settled(inp, True)
    factory.pin(5).drive_high()
    await settled(inp, False)
    assert seen == [True, False]


def test_input_needs_the_running_loop(factory):
    b = make_bus(factory)
    with pytest.raises(RuntimeError):
        b.input("^!5", lambda value: None)
    asyncio.run(_claim_again(b))


async def _claim_again(b: GpioBus) -> None:
    b.input("^!5")  # the failed call above did not keep the pin
    await b.close()


# ------------------------------------------------------------------------ relays


async def test_pulse_default_length(factory, bus):
    relay = bus.relay(17)
    assert state(factory, 17) == 0
    task = asyncio.create_task(relay.pulse())
    await eventually(lambda: relay.is_on)
    assert state(factory, 17) == 1
    async with asyncio.timeout(WAIT):
        await task
    assert state(factory, 17) == 0 and not relay.is_on
    (t_on, on), (t_off, off) = changes_of(factory, "GPIO17")
    assert (on, off) == (1, 0)
    assert t_off - t_on >= bus.pulse_s


async def test_pulse_is_capped_at_pulse_max(factory, bus):
    relay = bus.relay(17)
    async with asyncio.timeout(WAIT):  # asked for 30 s
        await relay.pulse(30)
    (t_on, _), (t_off, _) = changes_of(factory, "GPIO17")
    assert t_off - t_on >= bus.pulse_max_s
    assert state(factory, 17) == 0


async def test_cancelled_pulse_switches_off(factory, bus):
    relay = bus.relay(17)
    task = asyncio.create_task(relay.pulse(0.05))
    await eventually(lambda: relay.is_on)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(factory, 17) == 0


async def test_active_low_relay_physical_levels(factory, bus):
    relay = bus.relay("!18")
    assert state(factory, 18) == 1  # off = high
    task = asyncio.create_task(relay.pulse())
    await eventually(lambda: relay.is_on)
    assert state(factory, 18) == 0
    await task
    assert state(factory, 18) == 1


@pytest.mark.parametrize("seconds", [0, -1])
async def test_pulse_rejects_nonsense(bus, seconds):
    relay = bus.relay(17)
    with pytest.raises(ValueError):
        await relay.pulse(seconds)


async def test_pulses_respect_max_concurrent(factory):
    bus = make_bus(factory, max_concurrent=1)
    try:
        relays = [bus.relay(n) for n in (17, 18, 19)]
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(r.pulse() for r in relays))
        on_now = 0
        for _, _, value in factory.changes:
            on_now += 1 if value else -1
            assert on_now <= 1
    finally:
        await bus.close()


async def test_pulse_starts_are_staggered(factory):
    bus = make_bus(factory, max_concurrent=3, stagger_s=0.03)
    try:
        relays = [bus.relay(n) for n in (17, 18, 19)]
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(r.pulse() for r in relays))
        starts = sorted(t for t, _, value in factory.changes if value)
        assert len(starts) == 3
        for earlier, later in itertools.pairwise(starts):
            # The pin switches just after the grant, unless another thread (a pulse's
            # backstop timer) takes the GIL in between: at most one switch interval.
            assert later - earlier >= 0.03 - sys.getswitchinterval() - 1e-3
    finally:
        await bus.close()


async def test_backstop_switches_off_when_the_loop_hangs(factory, bus, monkeypatch):
    monkeypatch.setattr(outputs, "_BACKSTOP_MARGIN_S", 0.01)
    relay = bus.relay(17)
    task = asyncio.create_task(relay.pulse(0.02))
    await eventually(lambda: relay.is_on)
    # Block the loop: the pulse's own sleep cannot end, only the thread timer can.
    deadline = time.monotonic() + WAIT
    while state(factory, 17) and time.monotonic() < deadline:
        time.sleep(0.005)  # noqa: ASYNC251 - hanging the loop on purpose
    assert state(factory, 17) == 0
    await task
    assert state(factory, 17) == 0


# ------------------------------------------------------------------------ motors


@pytest.fixture
async def door(factory, bus):
    """A motorised door: motor on 22 (open) / 23 (close), end switches to ground."""
    motor = bus.motor(22, 23)
    opened = bus.input("^!24")
    blocked = bus.input("^!25")
    return motor, opened, blocked


async def test_motor_runs_until_the_end_switch(factory, door):
    motor, opened, _ = door
    task = asyncio.create_task(motor.run(True, until=opened))
    await eventually(lambda: motor.direction == "forward")
    assert (state(factory, 22), state(factory, 23)) == (1, 0)
    factory.pin(24).drive_low()
    async with asyncio.timeout(WAIT):
        assert await task is True
    assert (state(factory, 22), state(factory, 23)) == (0, 0)
    assert motor.direction is None


async def test_motor_already_at_the_end_does_not_move(factory, door):
    motor, opened, _ = door
    factory.pin(24).drive_low()
    await settled(opened, True)
    assert await motor.run(True, until=opened) is True
    assert changes_of(factory, "GPIO22") == []


async def test_motor_run_is_capped_at_motor_max(factory, bus, door):
    motor, opened, _ = door
    start = time.monotonic()
    async with asyncio.timeout(WAIT):
        assert await motor.run(True, until=opened, max_s=1000) is False
    assert time.monotonic() - start >= bus.motor_max_s
    (t_on, _), (t_off, _) = changes_of(factory, "GPIO22")
    assert t_off - t_on >= bus.motor_max_s
    assert state(factory, 22) == 0


async def test_motor_run_honours_a_shorter_max_s(factory, door):
    motor, opened, _ = door
    assert await motor.run(False, until=opened, max_s=0.03) is False
    (t_on, _), (t_off, _) = changes_of(factory, "GPIO23")
    assert t_off - t_on >= 0.03
    assert state(factory, 23) == 0


async def test_cancelled_motor_run_stops(factory, door):
    motor, opened, _ = door
    task = asyncio.create_task(motor.run(True, until=opened))
    await eventually(lambda: motor.direction == "forward")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (state(factory, 22), state(factory, 23)) == (0, 0)


async def test_motor_abort_input_stops_it(factory, door):
    motor, opened, blocked = door
    task = asyncio.create_task(motor.run(True, until=opened, abort=blocked))
    await eventually(lambda: motor.direction == "forward")
    factory.pin(25).drive_low()
    async with asyncio.timeout(WAIT):
        assert await task is False
    assert (state(factory, 22), state(factory, 23)) == (0, 0)
    # Still blocked: a new run does not even start.
    assert await motor.run(True, until=opened, abort=blocked) is False
    assert len(changes_of(factory, "GPIO22")) == 2


def assert_never_both(factory, a: str, b: str) -> None:
    on = {a: 0, b: 0}
    for _, name, value in factory.changes:
        if name in on:
            on[name] = value
            assert not (on[a] and on[b]), "both motor sides on"


async def test_motor_reversal_pauses_and_never_drives_both(factory, door, monkeypatch):
    monkeypatch.setattr(outputs, "_REVERSE_PAUSE_S", 0.05)
    motor, opened, _ = door
    assert await motor.run(True, until=opened, max_s=0.02) is False
    assert await motor.run(False, until=opened, max_s=0.02) is False
    assert_never_both(factory, "GPIO22", "GPIO23")
    (_, _), (fwd_off, _) = changes_of(factory, "GPIO22")
    (bwd_on, _), (_, _) = changes_of(factory, "GPIO23")
    assert bwd_on - fwd_off >= 0.05


async def test_second_run_waits_for_the_first(factory, door):
    motor, opened, _ = door
    first = asyncio.create_task(motor.run(True, until=opened, max_s=10))
    await eventually(lambda: motor.direction == "forward")
    second = asyncio.create_task(motor.run(False, until=opened, max_s=0.02))
    await asyncio.sleep(0.02)
    assert motor.direction == "forward"  # the second run has not touched the motor
    first.cancel()
    async with asyncio.timeout(WAIT):
        assert await second is False
    assert_never_both(factory, "GPIO22", "GPIO23")
    assert len(changes_of(factory, "GPIO23")) == 2


async def test_motor_run_holds_a_power_slot(factory):
    bus = make_bus(factory, max_concurrent=1)
    try:
        motor = bus.motor(22, 23)
        opened = bus.input("^!24")
        relay = bus.relay(17)
        run = asyncio.create_task(motor.run(True, until=opened, max_s=0.05))
        await eventually(lambda: motor.direction == "forward")
        async with asyncio.timeout(WAIT):
            await relay.pulse()
            await run
        (_, _), (motor_off, _) = changes_of(factory, "GPIO22")
        (relay_on, _), _ = changes_of(factory, "GPIO17")
        assert relay_on >= motor_off
    finally:
        await bus.close()


# --------------------------------------------------------------------- indicator


@pytest.mark.parametrize(
    ("pattern", "color"),
    [
        ("off", OFF),
        ("about_to_open", BLUE),
        ("open", GREEN),
        ("no_internet", DULL_RED),
        ("disabled", DIM_WHITE),
    ],
)
async def test_indicator_steady_colours(factory, bus, pattern, color):
    led = bus.rgb(10, 11, 12)
    led.show(pattern)
    assert led.pattern == pattern
    assert led.color == pytest.approx(color)
    assert (state(factory, 10), state(factory, 11), state(factory, 12)) == pytest.approx(color)


async def sample(indicator, until: Callable[[list], bool]) -> list:
    """Distinct consecutive colours as the loop sees them, until `until(seen)`."""
    seen: list = []
    async with asyncio.timeout(WAIT):
        while not until(seen):
            color = indicator.color
            if not seen or seen[-1] != color:
                seen.append(color)
            await asyncio.sleep(0.001)
    return seen


async def test_indicator_closing_flashes_yellow_then_stays_red(bus):
    led = bus.rgb(10, 11, 12, flash_s=0.02, closing_warn_s=0.1)
    led.show("closing")
    seen = await sample(led, lambda s: len(s) > 2 and s[-1] == RED)
    assert YELLOW in seen and OFF in seen
    assert set(seen) == {YELLOW, OFF, RED}
    assert seen.index(RED) == len(seen) - 1  # red only at the end
    await asyncio.sleep(0.1)
    assert led.color == RED and led.pattern == "closing"
    led.show("closing")  # the same again: not restarted
    await asyncio.sleep(0.05)
    assert led.color == RED


async def test_indicator_cloud_unreachable_flashes_red(bus):
    led = bus.rgb(10, 11, 12, flash_s=0.01)
    led.show("cloud_unreachable")
    seen = await sample(led, lambda s: len(s) >= 5)
    assert set(seen) == {RED, OFF}


async def test_indicator_ready_cycles_colours(bus):
    led = bus.rgb(10, 11, 12, cycle_s=0.3)
    led.show("ready")
    seen = await sample(led, lambda s: len({tuple(round(c, 1) for c in x) for x in s}) >= 4)
    for color in seen[1:]:
        assert max(color) == pytest.approx(1.0)  # full brightness, changing hue


async def test_show_replaces_a_running_pattern(bus):
    led = bus.rgb(10, 11, 12, flash_s=0.01)
    led.show("cloud_unreachable")
    await sample(led, lambda s: RED in s)
    led.show("open")
    assert led.color == GREEN
    await asyncio.sleep(0.05)  # several flash periods of the old pattern
    assert led.color == GREEN and led.pattern == "open"
    led.show("ready")
    led.show("no_internet")
    await asyncio.sleep(0.1)
    assert led.color == pytest.approx(DULL_RED)


async def test_indicator_rejects_unknown_pattern(bus):
    led = bus.rgb(10, 11, 12)
    with pytest.raises(ValueError):
        led.show("party")


async def test_indicator_close_stops_and_darkens(factory, bus):
    led = bus.rgb(10, 11, 12, cycle_s=0.1)
    led.show("ready")
    await sample(led, lambda s: len(s) >= 3)
    await led.close()
    assert [factory.pin(n).released for n in (10, 11, 12)] == [0, 0, 0]
    await asyncio.sleep(0.1)  # no animation step comes after
    assert [factory.pin(n).state for n in (10, 11, 12)] == [0, 0, 0]
    assert led.pattern == "off" and led.color == OFF
    led.show("open")  # late updates during shutdown are ignored
    assert led.pattern == "off"
    await led.close()  # idempotent


async def test_indicator_without_pwm_keeps_every_pattern_visible():
    factory = MockFactory(pin_class=MockPin)
    bus = GpioBus("plain", pin_factory=factory)
    try:
        led = bus.rgb(10, 11, 12)
        led.show("no_internet")
        assert led.color == RED
        led.show("disabled")
        assert led.color == (1, 1, 1)
        led.show("open")
        assert led.color == GREEN
    finally:
        await bus.close()
        factory.reset()


async def test_common_anode_indicator(factory, bus):
    led = bus.rgb("!10", "!11", "!12")
    assert (state(factory, 10), state(factory, 11), state(factory, 12)) == (1, 1, 1)
    led.show("open")
    assert (state(factory, 10), state(factory, 11), state(factory, 12)) == (1, 0, 1)


@pytest.mark.parametrize("pins", [("!10", "11", "12"), ("^10", "^11", "^12")])
async def test_indicator_rejects_bad_pins(bus, pins):
    with pytest.raises(ValueError):
        bus.rgb(*pins)
    bus.rgb(10, 11, 12)  # nothing claimed by the failed call


# ------------------------------------------------------------------ bus lifecycle


async def test_close_leaves_every_output_physically_off(factory):
    bus = make_bus(factory, max_concurrent=3, pulse_max_s=1.0, motor_max_s=1.0)
    relay, relay_low = bus.relay(17), bus.relay("!18")
    motor = bus.motor(22, "!23")
    opened = bus.input("^!24")
    led = bus.rgb(10, 11, 12)
    await bus.start()
    led.show("open")
    busy = [
        asyncio.create_task(relay.pulse(1.0)),
        asyncio.create_task(relay_low.pulse(1.0)),
        asyncio.create_task(motor.run(False, until=opened, max_s=1.0)),
    ]
    await eventually(lambda: relay.is_on and relay_low.is_on and motor.direction == "backward")
    await bus.close()
    off = {17: 0, 18: 1, 22: 0, 23: 1, 10: 0, 11: 0, 12: 0}
    assert {n: factory.pin(n).released for n in off} == off
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*busy, return_exceptions=True)
    assert results[2] is False  # the motor run ended with the bus
    assert all(factory.pin(n).function == "input" for n in off)  # released, not driven
    await bus.close()  # idempotent
    with pytest.raises(RuntimeError):
        bus.relay(19)
    with pytest.raises(RuntimeError):
        await relay.pulse()


async def test_start_clears_outputs_a_crash_left_on():
    factory = MockFactory(pin_class=MockPin)  # keeps its level when released
    # A dead process left a relay on (physically: high, and low for active-low).
    for number, active_high in ((17, True), (18, False)):
        leftover = DigitalOutputDevice(number, active_high=active_high, pin_factory=factory)
        leftover.on()
        leftover.close()
    assert (state(factory, 17), state(factory, 18)) == (1, 0)
    bus = make_bus(factory)
    try:
        bus.relay(17)
        bus.relay("!18")
        await bus.start()
        assert (state(factory, 17), state(factory, 18)) == (0, 1)
    finally:
        await bus.close()
        factory.reset()


async def test_pins_are_claimed_once(bus):
    bus.relay(17)
    with pytest.raises(ValueError, match="GPIO17"):
        bus.input("^17")
    with pytest.raises(ValueError):
        bus.relay("^18")  # pull-up on an output
    with pytest.raises(ValueError):
        bus.motor(22, 17)
    bus.motor(22, 23)  # the failed motor released 22


@pytest.mark.parametrize(
    "kwargs",
    [{"pulse_s": 0}, {"pulse_s": 3.0, "pulse_max_s": 2.0}, {"motor_max_s": 0},
     {"debounce_s": -1}, {"max_concurrent": 0}],
)  # fmt: skip
def test_bus_rejects_bad_settings(factory, kwargs):
    with pytest.raises(ValueError):
        GpioBus("bad", pin_factory=factory, **kwargs)


# ------------------------------------------------------- pins the board constrains


async def test_pulled_up_active_high_input_on_a_fixed_pull_up_pin(factory, bus):
    # GPIO2/3 have a pull-up soldered on: gpiozero refuses any other pull, so "^2"
    # must never pass through "floating" on its way to "up".
    seen: list[bool] = []
    inp = bus.input("^2", seen.append)
    pin = factory.pin(2)
    assert pin.pull == "up"
    assert inp.value is True  # idles high = active
    pin.drive_low()
    await settled(inp, False)
    pin.drive_high()
    await settled(inp, True)
    assert seen == [False, True]


async def test_the_factory_refusing_a_pin_says_which(factory, bus):
    with pytest.raises(PinRefused, match="GPIO2: refused by the pin factory") as caught:
        bus.input("!2")  # floating on a fixed pull-up
    assert caught.value.pin == PinSpec(2, False, True)
    with pytest.raises(PinRefused) as caught:
        bus.relay(40)  # not on this (Pi 3B) mock board
    assert caught.value.pin.number == 40
    bus.input("^!2")  # the failed calls kept nothing
    bus.relay(17)


async def test_pin_refusals_are_value_errors_with_the_pin(bus):
    bus.relay(17)
    with pytest.raises(PinRefused) as caught:
        bus.motor(22, "!17")
    assert caught.value.pin == PinSpec(17, False, True)
    assert isinstance(caught.value, ValueError)


# ---------------------------------------------- outputs know nothing of the bus


async def test_a_relay_needs_only_what_it_is_handed(factory):
    budget = PowerBudget(1, 0)
    closing = asyncio.Event()
    device = DigitalOutputDevice(17, initial_value=False, pin_factory=factory)
    relay = Relay(
        outputs._Output(device, PinSpec(17, False, False)),
        pulse_s=0.02,
        pulse_max_s=0.05,
        budget=budget,
        closing=closing,
    )
    try:
        task = asyncio.create_task(relay.pulse(1.0))  # capped at pulse_max_s
        await eventually(lambda: relay.is_on)
        assert budget.in_use == 1
        async with asyncio.timeout(WAIT):
            await task
        (t_on, _), (t_off, _) = changes_of(factory, "GPIO17")
        assert 0.05 <= t_off - t_on < 1.0
        assert budget.in_use == 0
        closing.set()
        with pytest.raises(BusClosed):
            await relay.pulse()
        assert state(factory, 17) == 0
    finally:
        device.close()


def test_outputs_do_not_import_the_bus():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(outputs))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "drivers.gpio.bus" not in imported


async def test_the_all_pins_mock_factory_has_every_pin_the_grammar_takes():
    from drivers.gpio.mock import mock_factory

    wide = mock_factory()
    bus = GpioBus("wide", pin_factory=wide)
    try:
        for number in (0, 27, 28, MAX_PIN):
            bus.relay(number)
        with pytest.raises(PinRefused):
            bus.input(2)  # the header's fixed pull-up is kept
        bus.input("^3")
        led = bus.rgb(40, 41, 42)
        led.show("no_internet")
        assert led.color == pytest.approx(DULL_RED)  # PWM pins
    finally:
        await bus.close()
        wide.close()
