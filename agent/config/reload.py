"""SIGHUP: what of a config read again can change live, and what needs a restart.

A technician edits ``agent.toml`` and sends ``systemctl reload locker-agent`` (the
unit's ``ExecReload`` sends SIGHUP). The file is loaded and checked as at start:

- invalid, or with a problem ``check-config`` and ``run`` refuse (a placeholder left:
  ``agent/field/verdict.py``): refused with one log line per problem; the running
  config stays (``Agent.reload`` does the reading and the applying);
- valid: the ``[locker]`` timings (``timer_s``, ``left_open_s``, ``confirm_s``,
  ``jam_retry_s``, ``announce_s``, ``health_interval_s``) and ``[cloud]
  heartbeat_s`` take effect at once; any other change (buses, cabinets, the cloud's
  address or key, the API, storage) is named in one ``config.restart_needed``
  line and waits for a restart, so the hardware is never half rebuilt.
"""

from __future__ import annotations

from typing import Any

from agent.config import Config

LIVE = {
    "locker": {
        "timer_s",
        "left_open_s",
        "confirm_s",
        "jam_retry_s",
        "announce_s",
        "health_interval_s",
        "min_pulse_gap_s",
    },
    "cloud": {"heartbeat_s"},
}


def differences(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(live keys that changed, other keys that changed), as ``section.key``."""
    live: list[str] = []
    frozen: list[str] = []
    for section in Config.model_fields:
        before: Any = getattr(old, section)
        after: Any = getattr(new, section)
        if before == after:
            continue
        if section not in LIVE:
            frozen.append(section)
            continue
        for key in type(before).model_fields:
            if getattr(before, key) != getattr(after, key):
                (live if key in LIVE[section] else frozen).append(f"{section}.{key}")
    return live, frozen
