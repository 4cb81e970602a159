"""A dry build: every driver of a config constructed on mock pins, no port opened.

``check-config`` and ``doctor`` run it, so what a driver would refuse at ``run``
(a pin its factory lacks, an output with a pull-up) is named before it starts.
"""

from __future__ import annotations

from agent.config import Config, ConfigError, Side


class _NoSink:
    """Readings of a dry build go nowhere (nothing is started, so none come)."""

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        pass

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        pass

    def item_sensed(self, key: int, present: bool) -> None:
        pass

    def board_health(self, bus: str, board: int, online: bool) -> None:
        pass

    def bus_health(self, bus: str, online: bool) -> None:
        pass


async def build_dry(config: Config) -> list[str]:
    """Build every driver of ``config`` on mock pins without opening a port, then close
    them; the ``key.path: message`` lines of what a driver refused (empty: it builds)."""
    from agent.hardware.bridge import Hardware
    from drivers.gpio.mock import mock_factory

    factory = mock_factory()
    hardware = Hardware(config, _NoSink(), gpio_factory=factory)
    try:
        hardware.build()
    except ConfigError as err:
        return err.problems
    finally:
        await hardware.close()
        factory.close()
    return []
