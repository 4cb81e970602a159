"""The ``[[readers]]`` config sections: a serial reader and a keyboard (evdev) reader.

```toml
[[readers]]
name = "front-scanner"
driver = "serial"        # a QR/barcode scanner or keypad in serial mode: one code a line
port = "/dev/serial/by-id/usb-..."   # any pyserial URL
baud = 9600

[[readers]]
name = "usb-scanner"
driver = "evdev"         # a scanner that types as a USB keyboard, grabbed
device = "/dev/input/by-id/usb-..."
```
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from drivers.config import Baud, Name, StrictModel

Where = Annotated[str, Field(min_length=1, max_length=1000)]


class SerialReaderConfig(StrictModel):
    """A reader on a serial port (``port``: a pyserial URL) at ``baud`` bit/s."""

    name: Name
    driver: Literal["serial"]
    port: Where
    baud: Baud = 9600


class EvdevReaderConfig(StrictModel):
    """A reader that types as a keyboard: the input ``device`` (``/dev/input/by-id/...``)."""

    name: Name
    driver: Literal["evdev"]
    device: Where


AnyReader = Annotated[SerialReaderConfig | EvdevReaderConfig, Field(discriminator="driver")]
"""A ``[[readers]]`` entry: its ``driver`` key picks the model."""
