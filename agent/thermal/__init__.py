"""Thermal control of food lockers (``shared/DESIGN.md``, "Thermal").

Where things live:

    config.py    [thermal], [[thermal.compressors]] and a cabinet's ``thermal`` unit
    bands.py     the food codes: alarm lines, default bands, time limits
    control.py   pure decisions: the band's hysteresis, verification, compressor
                 timers, the heater's duty limit, the food clock
    outputs.py   the heater, cooler and compressor switches on the drivers
    records.py   the temperature records (SQLite) and their CSV export
    service.py   the loop: read, judge, decide, actuate, show, alarm, record

Nothing is imported here: ``agent.config`` imports ``config.py`` alone.
"""
