"""The local API's OpenAPI 3.1 document, from the models the handlers use.

Request bodies are the models ``parse_command`` and ``parse_open_all`` validate with;
answers are the models of ``agent.api.answers`` (``Cabinet.as_cloud()``, the health check,
open-all, ``agent.locker.commands.problem``). Every route lists every status it can answer;
``GET /openapi.json`` serves this; ``tests/agent/api/test_openapi.py`` holds the API to it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agent import __version__
from agent.api import thermal as api_thermal
from agent.api.answers import CabinetView, ErrorBody, Health, OpenAllResult
from agent.locker.commands import CabinetCommand, OpenAll
from agent.locker.idempotency import MAX_ID_LENGTH

_SINCE = {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}}
_REF = "#/components/schemas/{model}"
_MODELS: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (CabinetCommand, "validation"),
    (OpenAll, "validation"),
    (CabinetView, "serialization"),
    (ErrorBody, "serialization"),
    (Health, "serialization"),
    (OpenAllResult, "serialization"),
    *((model, "serialization") for _, _, model in api_thermal.LOGS.values()),
    (api_thermal.ThermalReset, "validation"),
    (api_thermal.ResetAnswer, "serialization"),
]

# Why each error status happens; every route names the ones it can answer.
_WHY = {
    400: "a malformed request head, Host or body (not JSON)",
    401: "the token is missing or wrong (requests that act: Bearer only)",
    403: "a request that acts came from a web page (a foreign Origin)",
    404: "no such cabinet",
    408: "the body did not arrive in time",
    409: "the command does not fit the cabinet as it is (CONFLICT), or the lock jammed"
    " (LOCK_JAMMED) or the door was obstructed (DOOR_OBSTRUCTED): type says which",
    411: "a chunked body (send Content-Length)",
    413: "the body is over 16 KiB",
    415: "a body with a Content-Encoding, or a request that acts whose body is not "
    "application/json",
    417: "an Expect other than 100-continue",
    421: "the Host is not one this agent serves",
    422: "the body is JSON but not a valid command; errors names the fields",
    429: "too many actions, on this cabinet or in all; retry after Retry-After seconds",
    503: "the agent is starting, the hardware cannot act, or too many connections",
}
_EVERY = (400, 411, 415, 417, 421, 503)  # the connection's own answers among them
_READ = (*_EVERY, 401)
_ACT = (*_READ, 403, 408, 413, 429)


def _schema(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any], statuses: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for status in sorted(set(statuses)):
        error = _json(_schema("ErrorBody"))
        answer: dict[str, Any] = {"description": _WHY[status], "content": error}
        if status == 429:
            answer["headers"] = {
                "Retry-After": {
                    "description": "seconds until the action is taken again",
                    "schema": {"type": "integer", "minimum": 1},
                    "required": True,
                }
            }
        out[str(status)] = answer
    return out


_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "the cloud's cabinet key",
    "schema": {"type": "integer"},
}
_READ_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"secretToken": []}]
_ACT_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _logs() -> dict[str, Any]:
    """The thermal records' routes (``agent.api.thermal.LOGS``)."""
    return {
        f"/api/lockers/cabinets/{{key}}/{name}": {
            "parameters": [_KEY],
            "get": {
                "operationId": operation,
                "summary": summary,
                "security": _READ_AUTH,
                "parameters": [_SINCE],
                "responses": _responses(
                    {"description": summary, "content": _json(_list_of(model.__name__))},
                    (*_READ, 404, 422),
                ),
            },
        }
        for name, (operation, summary, model) in api_thermal.LOGS.items()
    }


def _reset() -> dict[str, Any]:
    """A technician's reset of a cabinet's latched thermal unit (ADR 0011)."""
    summary = "Technicians: clear a cabinet's latched thermal safety shut-offs"
    answer = {
        "description": "what was cleared, and the cabinet",
        "content": _json(_schema("ResetAnswer")),
    }
    return {
        "/api/lockers/cabinets/{key}/thermal/reset": {
            "parameters": [_KEY],
            "post": {
                "operationId": "resetThermal",
                "summary": summary,
                "security": _ACT_AUTH,
                "requestBody": {"required": True, "content": _json(_schema("ThermalReset"))},
                "responses": _responses(answer, (*_ACT, 404, 422)),
            },
        }
    }


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _schema(name)}


def _paths() -> dict[str, Any]:
    cabinet = {"description": "the cabinet", "content": _json(_schema("CabinetView"))}
    health_503 = {
        "description": "degraded (reasons say why), starting, or too many connections",
        "content": _json({"anyOf": [_schema("Health"), _schema("ErrorBody")]}),
    }
    healthz = _responses({"description": "ready", "content": _json(_schema("Health"))}, _EVERY)
    healthz["503"] = health_503
    return {
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Ready (200) or degraded (503, with reasons); no token",
                "security": [],
                "responses": healthz,
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": _READ_AUTH,
                "responses": _responses(
                    {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}, _READ
                ),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format)",
                "security": _READ_AUTH,
                "responses": _responses(
                    {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    _READ,
                ),
            }
        },
        "/api/lockers/cabinets": {
            "get": {
                "operationId": "listCabinets",
                "summary": "Every cabinet",
                "security": _READ_AUTH,
                "responses": _responses(
                    {
                        "description": "every cabinet, by key",
                        "content": _json({"type": "array", "items": _schema("CabinetView")}),
                    },
                    _READ,
                ),
            }
        },
        "/api/lockers/cabinets/{key}": {
            "parameters": [_KEY],
            "get": {
                "operationId": "getCabinet",
                "summary": "One cabinet",
                "security": _READ_AUTH,
                "responses": _responses(cabinet, (*_READ, 404)),
            },
            "put": {
                "operationId": "commandCabinet",
                "summary": "A command, with the body of the cloud's cabinet update",
                "security": _ACT_AUTH,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "a retry with the same key answers the first "
                        "answer without acting again",
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                    }
                ],
                "requestBody": {"required": True, "content": _json(_schema("CabinetCommand"))},
                "responses": _responses(cabinet, (*_ACT, 404, 409, 422)),
            },
        },
        "/api/lockers/open-all": {
            "post": {
                "operationId": "openAll",
                "summary": "Technicians: open every enabled cabinet, one power slot at a time",
                "security": _ACT_AUTH,
                "requestBody": {"required": True, "content": _json(_schema("OpenAll"))},
                "responses": _responses(
                    {
                        "description": "each cabinet's outcome, by key",
                        "content": _json({"type": "array", "items": _schema("OpenAllResult")}),
                    },
                    (*_ACT, 422),
                ),
            }
        },
    }


# CabinetCommand's own rule (a model validator), in JSON Schema's words.
_NEEDS = {"resize": "size", "set_thermal_mode": "thermal_mode"}


def _command_rules(schema: dict[str, Any]) -> dict[str, Any]:
    rules = [
        {
            "if": {"properties": {"command": {"const": command}}, "required": ["command"]},
            "then": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
        }
        for command, field in _NEEDS.items()
    ]
    return schema | {"allOf": rules}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the local API, as a JSON-ready dict."""
    _, defs = models_json_schema(_MODELS, ref_template=_REF)
    defs["$defs"]["CabinetCommand"] = _command_rules(defs["$defs"]["CabinetCommand"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "locker-agent local API",
            "version": __version__,
            "description": "The agent's own API on the locker (DESIGN.md, Local HTTP API). "
            "Every request names a Host the agent serves; a request that acts "
            "(PUT, POST) carries the token as Bearer, its body as application/json, "
            "and no foreign Origin.",
        },
        "paths": _paths() | _logs() | _reset(),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "secretToken": {"type": "apiKey", "in": "query", "name": "secret_token"},
            },
        },
    }
