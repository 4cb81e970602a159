"""The OpenAPI document is the live API: schemathesis holds every answer to it.

The API runs on loopback over the ``locker`` and ``actuator`` fixtures, its event
loop serving while schemathesis calls it from a worker thread, with its default
limits: every answer, 429s included, must be one the document lists, in its shape.
"""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from agent.api import openapi
from agent.api.server import LocalApi
from agent.locker.idempotency import MAX_ID_LENGTH

TOKEN = "schema-t0ken"


@pytest.fixture
def live_api(locker, actuator):
    """A started, ready LocalApi and its event loop, which runs while a request is
    out (``call``): schemathesis calls synchronously, from a worker thread."""
    loop = asyncio.new_event_loop()
    api = LocalApi(locker, SecretStr(TOKEN), list, "127.0.0.1", 0)
    loop.run_until_complete(api.start())
    api.ready = True
    yield api, loop
    loop.run_until_complete(api.close())
    loop.close()


def call(live_api, blocking: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``blocking`` in a thread while the API's loop serves."""
    _, loop = live_api
    return loop.run_until_complete(asyncio.to_thread(blocking, *args, **kwargs))


# The document the API serves (test_the_document_is_served_with_the_token_only).
schema = schemathesis.openapi.from_dict(openapi.document())


@schema.parametrize()
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_answer_is_as_documented(case, live_api):
    # Every check schemathesis has: no 5xx, no dropped connection, documented
    # statuses, headers, content types and bodies, auth not ignored, 405 for
    # methods not served, schema-valid data accepted.
    api, _ = live_api
    key = (case.headers or {}).get("Idempotency-Key")
    if key and 0 < len(key) <= MAX_ID_LENGTH:
        # Generated keys repeat ("0"), and a key reused for another command is a 422
        # by design (test_an_id_reused_for_another_command_is_refused): one key a case.
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    call(
        live_api,
        case.call_and_validate,
        base_url=f"http://127.0.0.1:{api.port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def test_the_document_is_openapi_3_1_over_every_route(live_api):
    api, _ = live_api
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    served = {
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.method != "HEAD"
    }
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == served
    schemas = document["components"]["schemas"]
    assert {"CabinetCommand", "OpenAll", "CabinetView", "ErrorBody", "Health"} <= set(schemas)
    put = document["paths"]["/api/lockers/cabinets/{key}"]["put"]
    assert {"401", "403", "404", "409", "415", "422", "429", "503"} <= set(put["responses"])
    assert "504" not in put["responses"]  # a jam is a 409 LOCK_JAMMED, not a gateway's timeout


def test_the_document_is_served_with_the_token_only(live_api):
    api, _ = live_api
    url = f"http://127.0.0.1:{api.port}/openapi.json"
    assert call(live_api, requests.get, url, timeout=10).status_code == 401
    answer = call(live_api, requests.get, url, params={"secret_token": TOKEN}, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == openapi.document()
