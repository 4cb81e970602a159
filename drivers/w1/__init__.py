"""DS18B20 temperature sensors on the kernel's 1-wire files, and whether to trust them.

Where things live:

    ds18b20.py   parse_w1_slave, read_ds18b20, read_all (one bulk conversion, then
                 every sensor; blocking: use asyncio.to_thread),
                 SensorFault, POWER_ON_C, SENSOR_ID_PATTERN
    config.py    SensorId: the pydantic type of a configured sensor id
    trust.py     SensorTrust, Verdict: pure rules (power-on value, stuck, jumps,
                 recovery after several good reads)
"""

from drivers.w1.config import SensorId
from drivers.w1.ds18b20 import (
    MAX_C,
    MIN_C,
    POWER_ON_C,
    SENSOR_ID_PATTERN,
    FaultReason,
    SensorFault,
    check_sensor_id,
    parse_w1_slave,
    read_all,
    read_ds18b20,
    start_conversions,
)
from drivers.w1.trust import SensorTrust, Status, Verdict

__all__ = [
    "MAX_C",
    "MIN_C",
    "POWER_ON_C",
    "SENSOR_ID_PATTERN",
    "FaultReason",
    "SensorFault",
    "SensorId",
    "SensorTrust",
    "Status",
    "Verdict",
    "check_sensor_id",
    "parse_w1_slave",
    "read_all",
    "read_ds18b20",
    "start_conversions",
]
