"""The route table of the HTTP API: one entry per route (method, path, scope, request
and response bodies, summary). ``api.server`` registers its routes from this
table, and ``api.openapi.openapi()`` turns the same table into the OpenAPI 3.1 document
served at ``GET /v1/openapi.json``, so the two cannot drift.

The bodies are the pydantic models the routes validate with (``schemas/``), plus small
models below for the bodies that routes read field by field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.auth import Scope
from api.messaging import TokenAnswer, TokenRequest
from delivery.sms import STATUS_PATH as SMS_STATUS_PATH
from delivery.tracking import CLICK_PATH, OPEN_PATH, UNSUBSCRIBE_PATH
from schemas.devices import DeviceUpdate
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.journeys import JourneyDefinition
from schemas.presets import PresetDefinition
from schemas.segments import Condition, SegmentDefinition
from schemas.tags import TagUpdate

Method = Literal["GET", "POST", "DELETE"]
OPENAPI_PATH = "/v1/openapi.json"
JOURNEY_ACTIONS = ("launch", "pause", "resume", "stop", "rename")
WHATSAPP_PATH = "/t/whatsapp"

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


class Moment(_Body):
    at: str
    kind: Literal["input", "membership", "journey", "send"]
    what: str
    why: str
    id: str
    """The row's identity (event, feedback, change, activity or command id), to cite."""


class WhyAnswer(_Body):
    """``answer``: sent, capped, opted_out, unreachable, entry_refused, goal_reached,
    left_segment, journey_stopped, other_branch, waiting, not_in_segment, not_entered,
    never_entered."""

    answer: str
    step: str
    text: str
    cites: list[str]
    conditions: list[str] | SkipJsonSchema[None] = None
    """For ``not_in_segment``: the entry segment's condition values at the run."""


class ExplainAnswer(_Body):
    """``?journey=J`` (with ``&step=S``), ``&from=``, ``&to=`` (ISO 8601): all optional."""

    user_id: str
    timeline: list[Moment]
    journey_id: str | SkipJsonSchema[None] = None
    why: WhyAnswer | SkipJsonSchema[None] = None


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
    Route("GET", "/v1/users/{user_id}/explain", "users.explain", Scope.READ,
          "A user's timeline (inputs, memberships and why, journey steps, sends) and,"
          " with ?journey=, why they did or did not get a step's message",
          response=ExplainAnswer, errors=(400, 404, 503), patterns={"user_id": ".+"}),
    Route("POST", "/v1/events", "ingest", Scope.INGEST, "Send events (JSON, a list or NDJSON)",
          Event, request_list=True, response=IngestAnswer, ndjson=True),
    Route("POST", "/v1/tags", "ingest", Scope.INGEST, "Send tag updates (JSON, a list or NDJSON)",
          TagUpdate, request_list=True, response=IngestAnswer, ndjson=True),
    Route("POST", "/v1/feedback", "ingest", Scope.INGEST,
          "Send delivery feedback (JSON, a list or NDJSON)",
          Feedback, request_list=True, response=IngestAnswer, ndjson=True),
    Route("POST", "/v1/devices", "ingest", Scope.INGEST,
          "Register and unregister users' devices and addresses, and their opt-outs"
          " (JSON, a list or NDJSON)",
          DeviceUpdate, request_list=True, response=IngestAnswer, ndjson=True),
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
    # SMS, WhatsApp and in-app (api/messaging.py).
    Route("POST", SMS_STATUS_PATH, "messaging.sms_status", None,
          "SMS provider status callback (X-Twilio-Signature)", response_type="text/plain",
          errors=(403, 404, 503)),
    Route("GET", WHATSAPP_PATH, "messaging.whatsapp_verify", None,
          "WhatsApp webhook verification (hub.challenge)", response_type="text/plain",
          errors=(403, 404)),
    Route("POST", WHATSAPP_PATH, "messaging.whatsapp_webhook", None,
          "WhatsApp status webhook (X-Hub-Signature-256)", response_type="text/plain",
          errors=(400, 403, 404, 503)),
    Route("GET", "/v1/users/{user_id}/inapp", "messaging.inapp_list", Scope.INAPP,
          "A user's in-app messages (key with scope inapp, or the user's token)",
          patterns={"user_id": ".+"}),
    Route("POST", "/v1/users/{user_id}/inapp/token", "messaging.inapp_token", Scope.INAPP,
          "A token for one user's app to read its in-app messages (a key only)",
          TokenRequest, response=TokenAnswer, patterns={"user_id": ".+"}),
    Route("POST", "/v1/users/{user_id}/inapp/{command_id}/{action}", "messaging.inapp_report",
          Scope.INAPP, "Report an in-app message's impression, click or dismissal (feedback)",
          errors=(404, 503),
          patterns={"user_id": ".+"}),
)  # fmt: skip
"""Every route of the API. 503 means a part this worker does not run or has not
opened yet (ClickHouse, segment previews), or a broker that did not take a record."""
