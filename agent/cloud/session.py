"""The HTTP session every conversation with the cloud goes through.

The api-key opens every door the cloud knows, so it goes to the cloud and nowhere
else: TLS is always verified (against the system's CAs, or ``[cloud] ca_file``),
and a redirect is never followed: aiohttp follows them by default, headers and
all, and ``ws_connect`` offers no way to say no, so a trace hook ends the request
before the redirect is taken (``RedirectRefused``).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp


class RedirectRefused(aiohttp.ClientError):
    """The cloud answered with a redirect, which is never followed."""


async def _refuse(
    _session: aiohttp.ClientSession, _context: Any, params: aiohttp.TraceRequestRedirectParams
) -> None:
    raise RedirectRefused(
        f"cloud answers HTTP {params.response.status} (redirects are not followed)"
    )


def cloud_session(
    timeout: aiohttp.ClientTimeout, ssl_context: ssl.SSLContext | None
) -> aiohttp.ClientSession:
    """A session for the cloud: ``ssl_context`` (a private CA) or the system's trust,
    verified either way; a redirect raises ``RedirectRefused``."""
    no_redirects = aiohttp.TraceConfig()
    no_redirects.on_request_redirect.append(_refuse)
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, trace_configs=[no_redirects])
