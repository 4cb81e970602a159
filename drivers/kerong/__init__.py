"""Kerong KR-CU16 lock boards on RS-485: the codec, the bus, their config section."""
