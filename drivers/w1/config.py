"""The config types of 1-wire sensors: ``SensorId``, a DS18B20 as the kernel names it.

```toml
thermal = { sensor = "28-00000a1b2c3d", ... }
```
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from drivers.w1.ds18b20 import check_sensor_id

SensorId = Annotated[str, AfterValidator(check_sensor_id)]
"""A DS18B20 id: ``28-`` and 12 lowercase hex digits (``SENSOR_ID_PATTERN``), the name of
its directory under ``[thermal] w1_dir``. The error says what is wrong with it."""
