"""Thermal control of food lockers (ADR 0007); imports locker, config, storage, drivers."""
