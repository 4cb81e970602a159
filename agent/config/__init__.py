"""Configuration: the TOML file a field technician writes, validated strictly.

The file format is a contract (``shared/DESIGN.md``, "Config file"); this package turns
it into frozen pydantic models or into a :class:`ConfigError` that lists *every*
problem at once, one line each, as ``key.path[index]: what is wrong``. A technician on
a ladder fixes the file in one go instead of one error per restart, and
``locker-agent check-config`` prints those lines as they are.

Where things live:

    schema.py    the agent's sections, Config composing the drivers' sections
    entries.py   each [[buses]] / [[cabinets]] entry validated on its own
    checks.py    cross checks between entries, on what is valid of each
    secrets.py   api_key / api_key_file, token / token_file -> SecretStr
    messages.py  pydantic errors -> ``key.path: message`` lines
    load.py      parse_config, load_config, ConfigError; summary

The drivers own their sections (``drivers/kerong/config.py``: ``KerongBusConfig``,
``KerongDoorWiring``; ``drivers/gpio/config.py``: ``GpioBusConfig``,
``GpioDoorWiring``, ``GpioInputWiring``, ``IndicatorWiring``), with the bounds and
the pin grammar the drivers themselves use; they are exported here too.

Decisions worth knowing:

- Like Klipper's typed getters, every value is typed (no silent ``"1"`` -> ``1`` or
  ``true`` -> ``1``) and bounded, and an unknown key is an error naming the nearest
  valid key: a typo must stop start-up, not fall back to a default.
- ``[locker]`` and ``[storage]`` may be left out (defaults below). ``[cloud]`` needs
  ``url`` and a key. The local HTTP API always runs, so ``[api]`` may be left out
  only in the sense that ``listen`` defaults to ``127.0.0.1:8080``: a token is always
  required (``api.token`` or ``api.token_file``), because the local API must never be
  open without auth. Without one the config is invalid.
- Secrets: exactly one of ``api_key`` / ``api_key_file`` (and ``token`` /
  ``token_file``). Files are read at load, whitespace stripped; a relative path is
  taken from the config file's directory (the directory of the path given, symlinks
  not followed), as is a relative ``storage.dir``. Secrets end up as ``SecretStr``;
  no problem line or repr ever contains one, and unknown keys never echo their
  value (a misspelt ``api_kye = "..."`` carries the secret).
- Cross checks (undeclared bus or board, two doors on one channel, duplicate cabinet
  keys, bus names or ports, a GPIO pin used twice, a door on the wrong kind of bus,
  buses on one ``supply`` that disagree) run even when other parts of the file are
  invalid, on whatever parts are valid, so they are reported together.
- A config that passes ``parse_config`` also builds: ``locker-agent check-config``
  then builds every driver dry (``agent.hardware.Hardware.build``, no port opened).
- ``load_config`` raises only :class:`ConfigError`; ``parse_config`` does the same
  checks on an already-parsed dict (the simulator embeds its own config).
"""

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
from drivers.gpio.config import GpioBusConfig, GpioDoorWiring, GpioInputWiring, IndicatorWiring
from drivers.kerong.config import BAUD_RATES, KerongBusConfig, KerongDoorWiring

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
