"""Placeholders: a value left from an example or from install.sh, which no locker can work with.

A config holding one is valid TOML of the right shape, so it loads; but the locker it
describes cannot work (the publicly known key, an adapter or a cloud named
``REPLACE-...``). ``check-config`` exits 78 on each, ``run`` refuses to start, and
``doctor`` calls it FAIL: all three ask ``placeholders()`` (``agent/field/verdict.py``).
A documentation host or address (``lockers.example.com``, ``192.0.2.10``) is a warning
(``documentation_hosts``), never a stop: DESIGN.md's own config contract uses one, and
tests outside this repo run the agent on it. Each line names the key and, for a secret
kept in a file, the file; never the value of a secret.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from agent.config.schema import Config

# REPLACE- or REPLACE_ in capitals (the examples' and install.sh's mark), or a whole
# "changeme": case-sensitive, so a locker named "Your-Shop Replacement Parts" is a name.
_MARK = re.compile(r"REPLACE[-_]|\bchangeme\b")
EXAMPLE_HOSTS = ("example.com", "example.org", "example.net")


def is_placeholder(text: str) -> bool:
    """Whether ``text`` carries an example's mark (``REPLACE-WITH-...``, ``changeme``)."""
    return _MARK.search(text) is not None


# Addresses reserved for documentation (RFC 5737, RFC 3849): never routed, so never a
# real cloud or gateway.
EXAMPLE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def example_host(url: str) -> str | None:
    """The host of ``url`` when it is a documentation domain (``example.com``) or
    address (``192.0.2.10``), else None."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:  # not a URL at all (a device path with a stray bracket)
        return None
    if host in EXAMPLE_HOSTS or host.endswith(tuple(f".{h}" for h in EXAMPLE_HOSTS)):
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return host if any(address in net for net in EXAMPLE_NETWORKS) else None


def placeholders(config: Config) -> list[str]:
    """One ``key.path: what is left and what to put there`` line per placeholder."""
    out = _cloud_lines({k: getattr(config.cloud, k) for k in ("url", "commands_url")})
    for key, secret, file in (
        ("cloud.api_key", config.cloud.api_key, config.cloud.api_key_file),
        ("api.token", config.api.token, config.api.token_file),
    ):
        if is_placeholder(secret.get_secret_value()):
            if file is not None:
                out.append(
                    f"{key}_file: {file} still holds the placeholder install.sh wrote:"
                    f" put the real value in it, alone ({_what(key)})"
                )
            else:
                out.append(
                    f"{key}: still the example's placeholder: set the real value, best in a"
                    f' file: {key}_file = "{_FILES[key]}" ({_what(key)})'
                )
    out += _left(_strings(config, {"cloud", "api"}))
    return out


def documentation_hosts(config: Config) -> list[str]:
    """A warning line per address that is a documentation domain or address (never
    routed: feedback to it, or a gateway there, reaches nothing)."""
    out = []
    for key in ("url", "commands_url"):
        url = getattr(config.cloud, key)
        if url is not None and not is_placeholder(url) and (host := example_host(url)):
            out.append(f"cloud.{key}: {host} is a documentation host: set the cloud's address")
    for path, value in _strings(config, {"cloud", "api"}):
        if "://" in value and not is_placeholder(value) and (host := example_host(value)):
            out.append(f"{path}: {host} is a documentation address: {_hint(path, value)}")
    return out


def raw_placeholders(data: dict[str, Any]) -> list[str]:
    """``placeholders`` of a document that does not load (its secrets unreadable, an
    entry wrong): the same lines for the cloud's addresses and every other string, so a
    technician sees all that is left in one round, not the rest after the first fix.
    Secrets are not looked at (their own problems say what is wrong with them)."""
    cloud = data.get("cloud")
    out = []
    if isinstance(cloud, dict):
        out += _cloud_lines({k: cloud.get(k) for k in ("url", "commands_url")})
    pairs = (
        pair for key, value in data.items() if key not in ("cloud", "api")
        for pair in _walk(value, key)
    )  # fmt: skip
    return out + _left(pairs)


def _cloud_lines(urls: dict[str, Any]) -> list[str]:
    return [
        f"cloud.{key}: still the example's placeholder ({url!r}): set the cloud's address"
        for key, url in urls.items()
        if isinstance(url, str) and is_placeholder(url)
    ]


def _left(pairs: Iterator[tuple[str, str]]) -> list[str]:
    """The placeholder lines of (key path, string value) pairs."""
    return [
        f"{path}: still the example's placeholder ({value!r}): {_hint(path, value)}"
        for path, value in pairs
        if is_placeholder(value)
    ]


_FILES = {"cloud.api_key": "api.key", "api.token": "api.token"}


def _what(key: str) -> str:
    if key == "cloud.api_key":
        return "the locker's api-key, from the cloud's locker page"
    return "a long random token: openssl rand -hex 24"


def _hint(path: str, value: str = "") -> str:
    if value.startswith("socket://"):
        return "set the gateway's own address and port (socket://ADDRESS:PORT)"
    if path.startswith("readers["):
        return "ls -l /dev/serial/by-id/ /dev/input/by-id/; no scanner: delete [[readers]]"
    if path.endswith(".port"):
        return "ls -l /dev/serial/by-id/ lists the adapters plugged in"
    if path.endswith(".sensor"):
        return "ls /sys/bus/w1/devices/ lists the 1-wire sensors (28-...)"
    return "set the real value"


def _strings(model: BaseModel, skip: set[str], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every string value of ``model`` with its key path (``buses[0].port``); secrets
    and the top-level sections in ``skip`` are left out."""
    for name in type(model).model_fields:
        if not prefix and name in skip:
            continue
        yield from _walk(getattr(model, name), f"{prefix}{name}")


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, SecretStr):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        yield from _strings(value, set(), f"{path}.")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
