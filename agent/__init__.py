"""locker-agent: the edge agent inside a smart locker (see README.md and DESIGN.md)."""

__version__ = "0.1.0"
