"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /v1/openapi.json``, and
the scope table of docs/security.md: both made from the route table (``api/routes.py``),
so neither can drift from the routes the server registers."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

from api.routes import ROUTES, Body, ErrorAnswer, IngestAnswer, Route
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.json_schema import _InputSchemas, json_schema
from schemas.tags import TagUpdate

_REASONS = {
    200: "OK",
    202: "Accepted: on the broker, applied by the workers",
    302: "Found: the link's target",
    400: "The request is invalid: the error says why",
    401: "No API key, an unknown key, or a key without the scope this route needs",
    403: "Without API keys: a Host or Origin header that is not the API's own address",
    404: "No such item, a token this system did not sign, or a path no route matches",
    408: "The request body did not arrive in time",
    409: "The item's state does not allow this",
    413: "The request body or a definition is over its size limit",
    415: "Without API keys: a body that is not JSON or NDJSON",
    422: "The item cannot be rendered: the error says what is missing",
    503: "A part this worker does not run or has not opened yet; try again or elsewhere",
    504: "Written, but not read back in time by this worker",
}


def scope_markdown() -> str:
    """The table of docs/security.md: who may call each route (a test keeps it current)."""
    lines = ["| Method | Path | Scope | What it does |", "| --- | --- | --- | --- |"]
    for route in ROUTES:
        scope = f"`{route.scope}`" if route.scope else "none (no key)"
        lines.append(f"| {route.method} | `{route.path}` | {scope} | {route.summary} |")
    return "\n".join(lines) + "\n"


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route in ``ROUTES``."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reachstream HTTP API",
            "version": "1",
            "description": (
                "Ingest, definitions, previews and read-only queries. Send the API key "
                "as `Authorization: Bearer KEY` (or `X-Api-Key: KEY`); a key with the "
                "admin scope may call every route. Without configured keys (loopback "
                "only) no route needs one. See docs/security.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{_slug(route.path)}",
        "summary": route.summary,
        "security": [{"apiKey": [route.scope.value]}] if route.scope else [],
    }
    parameters = [
        _parameter(name, route.patterns.get(name)) for name in re.findall(r"\{(\w+)\}", route.path)
    ]
    if route.handler == "journeys.show":
        parameters.append(
            {"name": "version", "in": "query", "required": False, "schema": {"type": "integer"}}
        )
    if route.ndjson:
        parameters.append(
            {
                "name": "partial",
                "in": "query",
                "required": False,
                "description": "true: send the valid items and report the others",
                "schema": {"type": "boolean"},
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        schema = _ref(route.request, components)
        if route.request_list:
            schema = {"anyOf": [schema, {"type": "array", "items": schema}]}
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if route.ndjson:
            content["application/x-ndjson"] = {"schema": {"type": "string"}}
        # Journey actions other than rename take no body.
        required = route.handler != "journeys.change" and route.handler != "presets.render"
        operation["requestBody"] = {"required": required, "content": content}
    operation["responses"] = {
        str(status): _response(route, status, components) for status in route.statuses
    }
    return operation


def _response(route: Route, status: int, components: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": _REASONS[status]}
    text = {"text/plain": {"schema": {"type": "string"}}}
    if status == route.success:
        if route.response is not None:
            answer["content"] = {"application/json": {"schema": _ref(route.response, components)}}
        elif route.response_type == "application/json":
            answer["content"] = {"application/json": {"schema": {"type": "object"}}}
        elif route.response_type:
            answer["content"] = {route.response_type: {"schema": {"type": "string"}}}
        return answer
    if not route.path.startswith("/v1/"):
        answer["content"] = text  # the tracking links answer people, in plain text
        return answer
    error = _ref(ErrorAnswer, components)
    if status == 400 and route.batch:
        error = {"anyOf": [error, _ref(IngestAnswer, components)]}
    answer["content"] = {"application/json": {"schema": error}}
    if status == 404 and "{" in route.path:
        answer["content"].update(text)  # a path that matches no route: the server's own
    return answer


def _parameter(name: str, pattern: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern is not None and "|" in pattern:
        schema = {"type": "string", "enum": pattern.split("|")}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


def _ref(model: Body, components: dict[str, Any]) -> dict[str, Any]:
    if isinstance(model, tuple):
        return {"anyOf": [_ref(one, components) for one in model]}
    name = model.__name__
    if name not in components:
        _add(model, components)
    return {"$ref": f"#/components/schemas/{name}"}


_CONTRACTS = {Event: "event", TagUpdate: "tag-update", Feedback: "feedback"}


def _add(model: type[BaseModel], components: dict[str, Any]) -> None:
    """Put the schema of ``model`` and those it uses into ``components``."""
    if model in _CONTRACTS:
        # The input contracts as docs/schemas has them (timestamps, tag rules).
        schema = json_schema(model, _CONTRACTS[model] + ".schema.json")
        for key in ("$schema", "$id", "$comment"):
            schema.pop(key, None)
    else:
        schema = copy.deepcopy(
            model.model_json_schema(mode="validation", schema_generator=_InputSchemas)
        )
    definitions = schema.pop("$defs", {})
    # A name another model already gave a different schema (the input contracts read
    # timestamps their own way) is kept apart under this model's name.
    names = {
        name: name
        if components.get(name, _rebase(definition, {})) == _rebase(definition, {})
        else f"{model.__name__}.{name}"
        for name, definition in definitions.items()
    }
    for name, definition in definitions.items():
        components[names[name]] = _rebase(definition, names)
    components[model.__name__] = _rebase(schema, names)


def _rebase(schema: Any, names: dict[str, str]) -> Any:
    """``#/$defs/X`` -> ``#/components/schemas/`` + ``names[X]`` throughout."""
    if isinstance(schema, dict):
        return {
            key: (
                "#/components/schemas/" + names.get(value[8:], value[8:])
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                else _rebase(value, names)
            )
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(item, names) for item in schema]
    return schema
