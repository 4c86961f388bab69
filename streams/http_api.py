"""The HTTP API: ingest, read-only queries and status, served by aiohttp in the worker.

Ingest validates each item; a batch with any invalid item is refused whole with a
400 listing every error, so a client can fix and resend it without duplicates
(``?partial=true`` instead sends the valid items and reports the rest).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import faust
import orjson
from aiohttp import web
from mode import Service
from pydantic import BaseModel
from pydantic_core import from_json

from projections.clickhouse import query_read_only
from schemas import Event, Feedback, TagUpdate
from streams.auth import Scope, allowed, parse_api_keys
from streams.codecs import InputCodec
from streams.engine import Engine
from streams.http_clock import ClockRoutes
from streams.http_journeys import JourneyRoutes
from streams.http_presets import PresetRoutes
from streams.http_segments import SegmentRoutes
from streams.http_tracking import TrackingRoutes
from streams.ingest import IngestProducer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InsecureBinding(ValueError):
    """The API would listen beyond loopback without API keys."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=_default), status=status, content_type="application/json"
    )


def _default(value: Any) -> Any:
    if isinstance(value, Decimal | dt.date | dt.time | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(type(value).__name__)


def check_binding(host_is_loopback: bool, api_keys: str) -> None:
    parse_api_keys(api_keys)
    if not host_is_loopback and not api_keys:
        raise InsecureBinding(
            "refusing to serve the HTTP API beyond loopback without API keys: "
            "set REACH_API_KEYS (KEY:SCOPE[+SCOPE],...)"
        )


class HttpApi(Service):
    def __init__(self, engine: Engine, app: faust.App, **kwargs: Any) -> None:
        self.engine = engine
        self.faust_app = app
        settings = engine.settings
        check_binding(settings.http_is_loopback, settings.api_keys)
        self._keys = parse_api_keys(settings.api_keys)
        self._producer: IngestProducer | None = None
        limit = settings.max_record_bytes
        topics = engine.topics
        self._inputs: dict[str, tuple[str, InputCodec[Any]]] = {
            "events": (topics.events, InputCodec(Event, limit)),
            "tags": (topics.tags, InputCodec(TagUpdate, limit)),
            "feedback": (topics.feedback, InputCodec(Feedback, limit)),
        }
        self._runner: web.AppRunner | None = None
        self._clock = ClockRoutes(engine, _json)
        super().__init__(**kwargs)

    def build(self) -> web.Application:
        api = web.Application(
            client_max_size=self.engine.settings.max_request_bytes,
            middlewares=[self._limits_middleware],
        )
        api.router.add_get("/healthz", self.healthz)
        api.router.add_get("/v1/status", self._scoped(Scope.READ, self.status))
        api.router.add_post("/v1/query", self._scoped(Scope.READ, self.query))
        for kind in self._inputs:
            api.router.add_post(f"/v1/{kind}", self._scoped(Scope.INGEST, self.ingest))
        segments = SegmentRoutes(
            self.engine.definitions,
            self._ready_producer,
            self.engine.topics.definitions,
            _json,
            self.engine.previewer,
            timedelta(days=self.engine.settings.segment_horizon_days),
        )
        api.router.add_post("/v1/segments/preview", self._scoped(Scope.READ, segments.preview))
        api.router.add_post("/v1/segments", self._scoped(Scope.ADMIN, segments.apply))
        api.router.add_get("/v1/segments", self._scoped(Scope.READ, segments.list))
        api.router.add_get("/v1/segments/{segment_id}", self._scoped(Scope.READ, segments.show))
        api.router.add_delete(
            "/v1/segments/{segment_id}", self._scoped(Scope.ADMIN, segments.delete)
        )
        self._add_preset_routes(api)
        self._add_journey_routes(api)
        self._clock.add_to(api.router, partial(self._scoped, Scope.ADMIN))
        # No API key: recipients' mail clients (and mailbox providers' one-click
        # unsubscribe) call these; a signed token is the check.
        TrackingRoutes(self.engine, self._ready_producer).add_to(api.router)
        return api

    def _add_preset_routes(self, api: web.Application) -> None:
        presets = PresetRoutes(self.engine, self._ready_producer, _json)
        route = "/v1/presets/{preset_id}"
        api.router.add_post("/v1/presets", self._scoped(Scope.ADMIN, presets.apply))
        api.router.add_get("/v1/presets", self._scoped(Scope.READ, presets.list))
        api.router.add_get(route, self._scoped(Scope.READ, presets.show))
        api.router.add_delete(route, self._scoped(Scope.ADMIN, presets.delete))
        # A preview: reads the registry, sends nothing.
        api.router.add_post(f"{route}/render", self._scoped(Scope.READ, presets.render))

    def _add_journey_routes(self, api: web.Application) -> None:
        journeys = JourneyRoutes(self.engine, self._ready_producer, _json)
        route = "/v1/journeys/{journey_id}"
        api.router.add_post("/v1/journeys", self._scoped(Scope.ADMIN, journeys.apply))
        api.router.add_get("/v1/journeys", self._scoped(Scope.READ, journeys.list))
        api.router.add_get(route, self._scoped(Scope.READ, journeys.show))
        api.router.add_get(f"{route}/stats", self._scoped(Scope.READ, journeys.stats))
        api.router.add_post(
            route + "/{action:launch|pause|resume|stop|rename}",
            self._scoped(Scope.ADMIN, journeys.change),
        )
        api.router.add_post(f"{route}/entries", self._scoped(Scope.INGEST, journeys.enter))

    def _ready_producer(self) -> IngestProducer:
        assert self._producer is not None, "the API has not started"
        return self._producer

    async def on_start(self) -> None:
        settings = self.engine.settings
        # aiokafka clients must be created inside the running loop.
        self._producer = IngestProducer(
            self.engine.bootstrap, settings.max_record_bytes, settings.events_per_record
        )
        await self._producer.start()
        self._runner = web.AppRunner(self.build(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.engine.http_url = f"http://{host}:{port}"

    async def on_stop(self) -> None:
        await self._clock.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._producer is not None:
            await self._producer.stop()

    def _scoped(self, scope: Scope, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            presented = header.removeprefix("Bearer ").strip() or request.headers.get("X-Api-Key")
            if not allowed(self._keys, presented, scope):
                return _json({"error": f"an API key with scope '{scope}' is required"}, 401)
            return await handler(request)

        return guarded

    @web.middleware
    async def _limits_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        limit = self.engine.settings.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return _json({"error": f"request body over the limit of {limit} bytes"}, 413)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": f"request body over the limit of {limit} bytes"}, 413)

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        engine = self.engine
        return _json(
            {
                "broker": engine.bootstrap,
                "topics": list(engine.topics.all()),
                "partitions": engine.settings.partitions,
                "assigned": sorted(
                    f"{tp.topic}:{tp.partition}" for tp in self.faust_app.consumer.assignment()
                ),
                "counters": dict(engine.counters),
                "projected": dict(engine.sink.written),
                "acked_records": engine.checkpoint.acked,
                "clock": engine.clock.status(),
                **{name: part() for name, part in engine.status_parts.items()},
            }
        )

    async def ingest(self, request: web.Request) -> web.Response:
        kind = request.path.rsplit("/", 1)[-1]
        topic, codec = self._inputs[kind]
        body = await request.read()
        try:
            items = _parse_items(body, request.content_type)
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        limit = self.engine.settings.max_batch_items
        if len(items) > limit:
            return _json({"error": f"batch has {len(items)} items, over the limit of {limit}"}, 400)
        decoded = codec.validate_items(items)
        errors: list[dict[str, Any]] = [
            {"index": rejected.index, "reason": rejected.reason.value, "detail": rejected.detail}
            for rejected in decoded.rejected
        ]
        refused = {error["index"] for error in errors}
        record_limit = self.engine.settings.max_record_bytes
        encoded: list[tuple[str, bytes]] = []
        for index, item in enumerate(items):
            if index in refused:
                continue
            raw = orjson.dumps(item)
            if len(raw) > record_limit:
                detail = f"item is {len(raw)} bytes, over the limit of {record_limit}"
                errors.append({"index": index, "reason": "too_large", "detail": detail})
            else:
                encoded.append((str(item["user_id"]), raw))
        errors.sort(key=lambda error: error["index"])
        partial = request.query.get("partial", "").lower() in ("1", "true", "yes")
        if errors and not partial:
            return _json({"accepted": 0, "errors": errors}, 400)
        assert self._producer is not None, "ingest before the API started"
        await self._producer.send_encoded(topic, encoded)
        return _json({"accepted": len(encoded), "errors": errors}, 200)

    async def query(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            sql = body["sql"]
            parameters = body.get("parameters") or None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return _json({"error": 'body must be {"sql": "...", "parameters": {...}}'}, 400)
        client = self.engine.clickhouse
        if not self.engine.settings.projects:
            return _json({"error": "this worker's role does not run projections"}, 503)
        if client is None:
            return _json({"error": "ClickHouse is not open yet"}, 503)
        try:
            columns, rows = await asyncio.to_thread(query_read_only, client, sql, parameters)
        except Exception as error:  # ClickHouse's message is the useful answer here
            return _json({"error": str(error).strip()[:2000]}, 400)
        return _json({"columns": columns, "rows": rows})


def _parse_items(body: bytes, content_type: str) -> list[Any]:
    """A JSON array, ``{"items": [...]}``, or NDJSON (one object per line)."""
    # pydantic-core's parser keeps integers beyond 64 bits exact (orjson rounds them to
    # floats), so validation refuses them instead of accepting a rounded number.
    try:
        if content_type == "application/x-ndjson":
            return [from_json(line) for line in body.splitlines() if line.strip()]
        parsed = from_json(body)
    except ValueError as error:
        raise ValueError(f"body is not JSON: {error}") from None
    if isinstance(parsed, dict):
        parsed = parsed.get("items", [parsed])
    if not isinstance(parsed, list):
        raise ValueError("body must be a JSON array of objects")
    return parsed
