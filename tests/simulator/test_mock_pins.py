"""The simulated world's mock pins: held inputs, watched outputs, the full BCM bank."""

import pytest
from gpiozero import PWMLED, DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import PinInvalidPin
from gpiozero.pins.mock import MockFactory

from simulator.mock_pins import WorldPins, mock_factory


@pytest.fixture
def factory():
    factory = mock_factory()
    yield factory
    factory.close()


def test_the_full_bank_reaches_gpio53(factory):
    line = WorldPins(factory).input(53)
    button = DigitalInputDevice(53, pin_factory=factory)
    line.set(True)
    assert button.is_active
    button.close()
    with pytest.raises(PinInvalidPin):
        MockFactory().pin(53)  # gpiozero's own mock board stops at the header


def test_an_active_low_switch_holds_the_line_against_the_pull_up(factory):
    line = WorldPins(factory).input("^!5")
    line.set(True)  # the switch shorts the line to ground
    door_shut = DigitalInputDevice(5, pull_up=True, pin_factory=factory)
    assert door_shut.is_active and factory.pin(5).state == 0
    line.set(False)
    assert not door_shut.is_active
    door_shut.close()


def test_outputs_count_energising_edges_with_polarity(factory):
    pins = WorldPins(factory)
    relay, led = pins.output("!8"), pins.output(10)
    assert not relay.on and relay.edges == 0  # no device yet: not an output
    device = DigitalOutputDevice(8, active_high=False, pin_factory=factory)
    for _ in range(2):
        device.on()
        assert relay.on and factory.pin(8).state == 0
        device.off()
    device.close()  # going back to input is no pulse
    assert relay.edges == 2 and not relay.on

    light = PWMLED(10, pin_factory=factory)
    light.value = 0.25
    assert led.brightness == pytest.approx(0.25)
    light.close()
    assert led.brightness == 0.0


def test_claims_are_checked(factory):
    pins = WorldPins(factory)
    pins.input(5)
    with pytest.raises(ValueError, match="wired twice"):
        pins.output("GPIO5")
    DigitalOutputDevice(6, pin_factory=factory).close()  # a device used it first
    with pytest.raises(RuntimeError, match="fresh factory"):
        pins.output(6)
    with pytest.raises(ValueError, match="mock_factory"):
        WorldPins(MockFactory()).input(40)
    with pytest.raises(TypeError):
        WorldPins(object())  # type: ignore[arg-type]
    assert pins.claimed == 2
