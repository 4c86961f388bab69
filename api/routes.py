"""The route table of the HTTP API: one entry per route (method, path, scope, request
and response bodies, summary). ``api.server`` registers its routes from this
table, and ``openapi()`` turns the same table into the OpenAPI 3.1 document served at
``GET /v1/openapi.json``, so the two cannot drift.

The bodies are the pydantic models the routes validate with (``schemas/``), plus small
models below for the bodies that routes read field by field.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.auth import Scope
from delivery.tracking import CLICK_PATH, OPEN_PATH, UNSUBSCRIBE_PATH
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.journeys import JourneyDefinition
from schemas.json_schema import _InputSchemas, json_schema
from schemas.presets import PresetDefinition
from schemas.segments import Condition, SegmentDefinition
from schemas.tags import TagUpdate

Method = Literal["GET", "POST", "DELETE"]
OPENAPI_PATH = "/v1/openapi.json"
JOURNEY_ACTIONS = ("launch", "pause", "resume", "stop", "rename")

# --- bodies the routes read field by field -----------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorAnswer(BaseModel):
    """What every refusal carries: one line (or a few) saying why."""

    error: str


class HealthAnswer(_Body):
    status: Literal["ok"]


class TickRequest(_Body):
    """Only with ``REACH_CLOCK=simulated``: the new instant of simulated time, and
    whether to answer only once every partition has applied it."""

    now: str | int
    wait: bool = False
    timeout: float = Field(default=120, gt=0, le=600)


class TickAnswer(_Body):
    now: str
    partitions: int
    applied: bool


class QueryRequest(_Body):
    """A read-only SQL query for ClickHouse, values bound by name (``{name:Type}``)."""

    sql: str
    parameters: dict[str, Any] | None = None


class QueryAnswer(_Body):
    """Streamed: a query that fails after its first rows went out ends with ``error``,
    and the rows are then not the whole answer."""

    columns: list[str]
    rows: list[list[Any]]
    error: str | SkipJsonSchema[None] = None


class IngestAnswer(_Body):
    """How many items went onto the topic, and the problems of the others (by index,
    or by line for NDJSON); with any problem and no ``?partial=true``, none went."""

    accepted: int
    errors: list[dict[str, Any]]


class PreviewRequest(_Body):
    """A condition, as an expression of the segment language or as JSON, and how many
    matching user ids to list (at most 1000)."""

    expression: str | SkipJsonSchema[None] = None
    condition: Condition | SkipJsonSchema[None] = None
    sample: int = Field(default=10, ge=0, le=1000)


class PreviewAnswer(_Body):
    members: int
    users: int
    sample: list[str]


class Applied(_Body):
    id: str
    version: int


class AppliedAnswer(_Body):
    applied: list[Applied]


class DeletedAnswer(_Body):
    deleted: str
    version: int


class ForgetAnswer(_Body):
    """The request to forget is on the broker, in the user's partition."""

    user_id: str
    topic: str
    partition: int


class RenameRequest(_Body):
    """Only for ``rename``; the other actions take no body."""

    name: str = Field(min_length=1, max_length=256)


class RenderRequest(_Body):
    tags: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    user_id: str = ""


class EntryUser(_Body):
    user_id: str = Field(min_length=1, max_length=256)
    properties: dict[str, Any] = Field(default_factory=dict)
    entry_id: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=128)


class EntriesRequest(_Body):
    users: list[EntryUser]


class EntriesAnswer(_Body):
    accepted: int
    entry_ids: list[str]


# --- the table --------------------------------------------------------------------------

Body = type[BaseModel] | tuple[type[BaseModel], ...]
"""A model, or several (one of them, or a list of the first: a definition or a list)."""


@dataclass(frozen=True)
class Route:
    method: Method
    path: str
    """As OpenAPI writes it: ``/v1/segments/{segment_id}``."""
    handler: str
    """The name the API registers the handler under, e.g. ``segments.apply``."""
    scope: Scope | None
    """The scope an API key needs; None: no key (tracking links, health, this document)."""
    summary: str
    request: Body | None = None
    request_list: bool = False
    """Whether the body may also be a list of ``request`` (ingest, definitions)."""
    response: type[BaseModel] | None = None
    response_type: str = "application/json"
    success: int = 200
    errors: tuple[int, ...] = ()
    """Statuses besides success and those every route of its kind can give."""
    patterns: dict[str, str] = field(default_factory=dict)
    """Path parameters with a pattern of their own (aiohttp's ``{name:regex}``)."""
    ndjson: bool = False

    @property
    def aiohttp_path(self) -> str:
        return re.sub(
            r"\{(\w+)\}",
            lambda m: f"{{{m[1]}:{self.patterns[m[1]]}}}" if m[1] in self.patterns else m[0],
            self.path,
        )

    @property
    def statuses(self) -> tuple[int, ...]:
        """Every status the route can answer."""
        common: tuple[int, ...] = (404,) if "{" in self.path else ()
        if not self.path.startswith("/t/"):
            common += (403,)  # without API keys: a Host or Origin not the API's own
        if self.scope is not None:
            common += (401,)
            if self.method == "POST":
                common += (400, 408, 413, 415)
        return tuple(sorted({self.success, *common, *self.errors}))

    @property
    def batch(self) -> bool:
        """Whether a refusal lists the invalid items (``{"accepted": 0, "errors": [...]}``)."""
        return self.response in (IngestAnswer, EntriesAnswer)


_ACTIONS = "|".join(JOURNEY_ACTIONS)
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "healthz", None, "Whether the worker answers", None,
          response=HealthAnswer),
    Route("GET", OPENAPI_PATH, "openapi", None, "The OpenAPI 3.1 description of this API"),
    Route("GET", "/v1/status", "status", Scope.READ,
          "The worker: broker, topics, assigned partitions, counters, clock"),
    Route("POST", "/v1/clock/tick", "clock.tick", Scope.ADMIN,
          "Write a tick of simulated time (and wait for it to be applied)",
          TickRequest, response=TickAnswer, errors=(409, 504)),
    Route("POST", "/v1/query", "query", Scope.READ,
          "Run a read-only SQL query on the ClickHouse projections",
          QueryRequest, response=QueryAnswer, errors=(503,)),
    Route("DELETE", "/v1/users/{user_id}", "forget_user", Scope.ADMIN,
          "Forget a user: their tags, state and ClickHouse rows",
          response=ForgetAnswer, success=202, errors=(400,), patterns={"user_id": ".+"}),
    Route("POST", "/v1/events", "ingest", Scope.INGEST, "Send events (JSON, a list or NDJSON)",
          Event, request_list=True, response=IngestAnswer, ndjson=True),
    Route("POST", "/v1/tags", "ingest", Scope.INGEST, "Send tag updates (JSON, a list or NDJSON)",
          TagUpdate, request_list=True, response=IngestAnswer, ndjson=True),
    Route("POST", "/v1/feedback", "ingest", Scope.INGEST,
          "Send delivery feedback (JSON, a list or NDJSON)",
          Feedback, request_list=True, response=IngestAnswer, ndjson=True),
    Route("POST", "/v1/segments/preview", "segments.preview", Scope.READ,
          "Count and sample the users matching a condition now; nothing is saved",
          PreviewRequest, response=PreviewAnswer, errors=(503,)),
    Route("POST", "/v1/segments", "segments.apply", Scope.ADMIN,
          "Apply segment definitions (one or a list)",
          SegmentDefinition, request_list=True, response=AppliedAnswer),
    Route("GET", "/v1/segments", "segments.list", Scope.READ, "List the segments"),
    Route("GET", "/v1/segments/{segment_id}", "segments.show", Scope.READ, "Show a segment",
          errors=(404,)),
    Route("DELETE", "/v1/segments/{segment_id}", "segments.delete", Scope.ADMIN,
          "Delete a segment", response=DeletedAnswer, errors=(400, 404)),
    Route("POST", "/v1/presets", "presets.apply", Scope.ADMIN,
          "Apply message presets (one or a list)",
          PresetDefinition, request_list=True, response=AppliedAnswer, errors=(409, 504)),
    Route("GET", "/v1/presets", "presets.list", Scope.READ, "List the presets"),
    Route("GET", "/v1/presets/{preset_id}", "presets.show", Scope.READ, "Show a preset",
          errors=(404,)),
    Route("DELETE", "/v1/presets/{preset_id}", "presets.delete", Scope.ADMIN,
          "Delete a preset no journey uses", response=DeletedAnswer, errors=(404, 409, 504)),
    Route("POST", "/v1/presets/{preset_id}/render", "presets.render", Scope.READ,
          "Render a preset for given tags and properties; nothing is sent",
          RenderRequest, errors=(404, 422)),
    Route("POST", "/v1/journeys", "journeys.apply", Scope.ADMIN,
          "Apply journey definitions (one or a list)",
          JourneyDefinition, request_list=True, response=AppliedAnswer, errors=(504,)),
    Route("GET", "/v1/journeys", "journeys.list", Scope.READ, "List the journeys"),
    Route("GET", "/v1/journeys/{journey_id}", "journeys.show", Scope.READ,
          "Show a journey (?version=N for an earlier version)", errors=(400, 404)),
    Route("GET", "/v1/journeys/{journey_id}/stats", "journeys.stats", Scope.READ,
          "A journey's counts per step, from ClickHouse", errors=(404, 503)),
    Route("POST", "/v1/journeys/{journey_id}/{action}", "journeys.change", Scope.ADMIN,
          "Launch, pause, resume, stop or rename a journey",
          RenameRequest, errors=(404, 409, 504), patterns={"action": _ACTIONS}),
    Route("POST", "/v1/journeys/{journey_id}/entries", "journeys.enter", Scope.INGEST,
          "Put users into a launched journey with an API entry",
          EntriesRequest, response=EntriesAnswer, errors=(404, 409)),
    Route("GET", OPEN_PATH + "{token}", "tracking.opened", None,
          "Email open pixel (signed token; a 1x1 GIF)", response_type="image/gif",
          errors=(404,)),
    Route("GET", CLICK_PATH + "{token}", "tracking.clicked", None,
          "Email link click (signed token; redirects to the link)", success=302,
          response_type="", errors=(404,)),
    Route("GET", UNSUBSCRIBE_PATH + "{token}", "tracking.unsubscribe_page", None,
          "Unsubscribe page (signed token; a button that posts)", response_type="text/html",
          errors=(404,)),
    Route("POST", UNSUBSCRIBE_PATH + "{token}", "tracking.unsubscribed", None,
          "One-click unsubscribe, RFC 8058 (signed token)", response_type="text/plain",
          errors=(404, 503)),
)  # fmt: skip
"""Every route of the API. 503 means a part this worker does not run or has not
opened yet (ClickHouse, segment previews), or a broker that did not take a record."""

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
