"""Cabinets to drivers: address map, GPIO parts; imports locker, thermal, config, drivers."""
