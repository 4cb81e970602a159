"""The TOML config: schema, load, checks, reload; imports drivers, thermal.config, thermal.bands."""

from agent.config.load import ConfigError, load_config, parse_config, summary
from agent.config.schema import (
    ApiConfig,
    CabinetConfig,
    CloudConfig,
    Config,
    LockerConfig,
    Side,
    StorageConfig,
)
from drivers.config import BAUD_RATES
from drivers.gpio.config import GpioBusConfig, GpioDoorWiring, GpioInputWiring, IndicatorWiring
from drivers.kerong.config import KerongBusConfig, KerongDoorWiring

__all__ = [
    "BAUD_RATES",
    "ApiConfig",
    "CabinetConfig",
    "CloudConfig",
    "Config",
    "ConfigError",
    "GpioBusConfig",
    "GpioDoorWiring",
    "GpioInputWiring",
    "IndicatorWiring",
    "KerongBusConfig",
    "KerongDoorWiring",
    "LockerConfig",
    "Side",
    "StorageConfig",
    "load_config",
    "parse_config",
    "summary",
]
