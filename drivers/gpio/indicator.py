"""A cabinet's RGB indicator: the ``PATTERNS`` it shows and their colours.

Dim colours (dull red, dim white) need PWM pins; without them ``Indicator`` shows
every lit component fully. Tests get PWM from ``MockFactory(pin_class=MockPWMPin)``.
"""

from __future__ import annotations

import asyncio
import colorsys
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from gpiozero import RGBLED
from gpiozero.exc import DeviceClosed

log = structlog.get_logger(__name__)

RGB = tuple[float, float, float]

PATTERNS = (
    "off",
    "ready",  # multi-colour cycling
    "about_to_open",  # blue
    "open",  # green: open or opening
    "closing",  # flashing yellow, then red
    "cloud_unreachable",  # flashing red
    "no_internet",  # dull red
    "disabled",  # dim white, steady
    "food_unsafe",  # red, steady: food past its time out of temperature
    "code_refused",  # flashing red, for a moment: a pickup code refused at this cabinet
)
OFF: RGB = (0.0, 0.0, 0.0)
RED: RGB = (1.0, 0.0, 0.0)
GREEN: RGB = (0.0, 1.0, 0.0)
BLUE: RGB = (0.0, 0.0, 1.0)
YELLOW: RGB = (1.0, 1.0, 0.0)
DULL_RED: RGB = (0.15, 0.0, 0.0)
DIM_WHITE: RGB = (0.15, 0.15, 0.15)
_STEADY: dict[str, RGB] = {
    "off": OFF,
    "about_to_open": BLUE,
    "open": GREEN,
    "no_internet": DULL_RED,
    "disabled": DIM_WHITE,
    "food_unsafe": RED,
}
_CYCLE_STEP_S = 0.05  # colour update interval of "ready"


class Indicator:
    """An RGB LED showing one of ``PATTERNS``; animated patterns are loop tasks.

    Without PWM pins every colour component that is lit at all is shown fully
    (dull red becomes red, dim white white), so every pattern stays visible.
    """

    def __init__(
        self,
        led: RGBLED,
        name: str,
        *,
        pwm: bool,
        flash_s: float,
        closing_warn_s: float,
        cycle_s: float,
    ) -> None:
        self._led = led
        self.name = name
        self._pwm = pwm
        self._flash_s = flash_s
        self._closing_warn_s = closing_warn_s
        self._cycle_s = cycle_s
        self._pattern = "off"
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pattern(self) -> str:
        """The pattern shown (one of ``PATTERNS``)."""
        return self._pattern

    @property
    def color(self) -> RGB:
        """What the LED shows right now (as written, 0-1 per component)."""
        if self._closed:
            return OFF
        red, green, blue = self._led.value
        return (float(red), float(green), float(blue))

    def show(self, pattern: str) -> None:
        """Switch to ``pattern``, replacing the running one. Showing the pattern
        already shown changes nothing (a "closing" is not restarted). Animated
        patterns need to be called from the event loop. Ignored once closed: a
        late status update during shutdown must not fail the caller."""
        if pattern not in PATTERNS:
            raise ValueError(f"unknown indicator pattern {pattern!r}; known: {PATTERNS}")
        if self._closed:
            log.debug("gpio.indicator_closed", indicator=self.name, pattern=pattern)
            return
        if pattern == self._pattern and (pattern in _STEADY or self._task is not None):
            return
        self._stop_task()
        self._pattern = pattern
        log.debug("gpio.indicator", indicator=self.name, pattern=pattern)
        if pattern in _STEADY:
            self._set(_STEADY[pattern])
            return
        if pattern == "ready":
            body = self._cycle
        elif pattern == "closing":
            body = self._closing
        else:  # cloud_unreachable, code_refused
            body = self._flash_red
        self._task = asyncio.get_running_loop().create_task(
            self._guard(body), name=f"indicator-{self.name}-{pattern}"
        )

    def off(self) -> None:
        """Dark now, animation stopped (the bus's emergency path)."""
        self._stop_task()
        self._pattern = "off"
        with contextlib.suppress(DeviceClosed):
            self._set(OFF)

    async def close(self) -> None:
        """Stop the animation, switch the LED off and release its pins. Idempotent."""
        if self._closed:
            return
        task = self._task
        self.off()
        self._closed = True
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        self._led.close()

    def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _set(self, color: RGB) -> None:
        if not self._pwm:
            top = max(color)
            color = (
                _on_off(color[0], top),
                _on_off(color[1], top),
                _on_off(color[2], top),
            )
        self._led.value = color

    async def _guard(self, body: Callable[[], Awaitable[None]]) -> None:
        # The coroutine is made here, not in show(): a task cancelled before it
        # ever ran must not leave a never-awaited coroutine behind.
        try:
            await body()
        except DeviceClosed:
            pass  # closed under us during shutdown
        except Exception:
            log.exception("gpio.indicator_error", indicator=self.name, pattern=self._pattern)

    async def _flash(self, color: RGB, until: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        while until is None or loop.time() < until:
            self._set(color)
            await asyncio.sleep(self._flash_s)
            self._set(OFF)
            await asyncio.sleep(self._flash_s)

    async def _flash_red(self) -> None:
        await self._flash(RED)

    async def _closing(self) -> None:
        loop = asyncio.get_running_loop()
        await self._flash(YELLOW, until=loop.time() + self._closing_warn_s)
        self._set(RED)  # and stays red until the next show()

    async def _cycle(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            hue = ((loop.time() - start) / self._cycle_s) % 1.0
            self._set(colorsys.hsv_to_rgb(hue, 1.0, 1.0))
            await asyncio.sleep(_CYCLE_STEP_S)


def _on_off(component: float, top: float) -> float:
    """A colour component for a non-PWM LED: lit if bright, or if it is the colour."""
    return 1.0 if component >= 0.5 or (component > 0 and component == top) else 0.0
