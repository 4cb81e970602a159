"""Pickup codes: held codes, readers, opening; imports locker, storage, config, drivers."""
