"""Technicians' tools: doctor, bus scan, status; imports hardware, thermal, config, drivers, api."""
