"""The HTTP API: ingest, read-only queries and status, served by aiohttp in the worker
(a plain object with ``start`` and ``stop``: the worker factory runs it with the app).

Ingest validates each item; a batch with any invalid item is refused whole with a
400 listing every error, so a client can fix and resend it without duplicates
(``?partial=true`` instead sends the valid items and reports the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from api.auth import Scope, allowed, check_binding, parse_api_keys, presented_key
from api.clock import ClockRoutes
from api.ingest import check_items
from api.journeys import JourneyRoutes
from api.keyless import keyless_refusal
from api.messaging import MessagingRoutes
from api.openapi import openapi
from api.presets import PresetRoutes
from api.routes import ROUTES
from api.segments import Previewer, SegmentRoutes
from api.tracking import TrackingRoutes
from api.users import UserRoutes
from engine.codecs import InputCodec
from projections.clickhouse import AnalystClients, AnalystQuery, QueryLimits
from projections.query_guard import QueryRefused
from projections.store import Projections
from schemas import Event, Feedback, TagUpdate
from schemas.devices import DeviceUpdate
from streams.engine import Engine
from streams.forget import BadUser, forget_request, send_forget
from streams.ingest import IngestProducer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _nothing_assigned() -> Iterable[str]:
    return ()


class HttpApi:
    """``projections``: the ClickHouse side this worker writes (its client answers
    journey stats and queries); ``previewer``: who matches a condition, over this
    worker's segment state; ``assigned``: the ``topic:partition`` names this worker
    consumes now."""

    def __init__(
        self,
        engine: Engine,
        projections: Projections | None = None,
        previewer: Previewer | None = None,
        assigned: Callable[[], Iterable[str]] = _nothing_assigned,
    ) -> None:
        self.engine = engine
        self.projections = projections or Projections(engine.settings)
        self.previewer = previewer
        self._assigned = assigned
        self.url = ""
        """Where the API listens, once started."""
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
            "devices": (topics.devices, InputCodec(DeviceUpdate, limit)),
        }
        self._runner: web.AppRunner | None = None
        self._analysts = AnalystClients(
            settings.query_clickhouse,
            settings.clickhouse_database,
            QueryLimits(
                seconds=settings.query_timeout_seconds,
                memory_bytes=settings.query_max_memory_bytes,
                result_rows=settings.query_max_result_rows,
                result_bytes=settings.query_max_result_bytes,
            ),
            settings.query_concurrency,
        )
        self._query_slots = asyncio.Semaphore(settings.query_concurrency)
        self._clock = ClockRoutes(engine, _json)
        self._openapi: bytes | None = None
        self._messaging: MessagingRoutes | None = None

    def build(self) -> web.Application:
        api = web.Application(
            client_max_size=self.engine.settings.max_request_bytes,
            middlewares=[self._limits_middleware]
            + ([] if self._keys else [self._keyless_middleware]),
        )
        handlers = self._handlers()
        for route in ROUTES:
            handler = handlers[route.handler]
            if route.scope is not None:
                # An app may also read its user's in-app messages with the user's token.
                user_token = route.scope is Scope.INAPP and not route.path.endswith("/token")
                also = self._messaging.user_token_allows if self._messaging and user_token else None
                handler = self._scoped(route.scope, handler, also)
            # A GET also answers HEAD (link checkers look at tracking links that way).
            api.router.add_route(route.method, route.aiohttp_path, handler)
            if route.method == "GET":
                api.router.add_route("HEAD", route.aiohttp_path, handler)
        return api

    def _handlers(self) -> dict[str, Handler]:
        """The handler of each name the route table (api/routes.py) uses."""
        segments = SegmentRoutes(
            self.engine.definitions,
            self._ready_producer,
            self.engine.topics.definitions,
            _json,
            self.previewer,
            timedelta(days=self.engine.settings.segment_horizon_days),
            self.engine.settings.max_record_bytes,
        )
        presets = PresetRoutes(self.engine, self._ready_producer, _json)
        journeys = JourneyRoutes(self.engine, self.projections, self._ready_producer, _json)
        # No API key: recipients' mail clients (and mailbox providers' one-click
        # unsubscribe) call these; a signed token is the check.
        tracking = TrackingRoutes(self.engine, self._ready_producer)
        self._messaging = MessagingRoutes(self.engine, self._ready_producer, _json)
        users = UserRoutes(self.engine, self.projections, _json)
        handlers: dict[str, Handler] = {
            "healthz": self.healthz,
            "openapi": self.openapi,
            "status": self.status,
            "query": self.query,
            "forget_user": self.forget_user,
            "ingest": self.ingest,
            "clock.tick": self._clock.tick,
        }
        for prefix, routes in (
            ("segments", segments),
            ("presets", presets),
            ("journeys", journeys),
            ("tracking", tracking),
            ("messaging", self._messaging),
            ("users", users),
        ):
            for route in ROUTES:
                name = route.handler
                if name.startswith(prefix + "."):
                    handlers[name] = getattr(routes, name.removeprefix(prefix + "."))
        return handlers

    def runner(self) -> web.AppRunner:
        """The server of the API, not yet set up. A connection that has not sent a whole
        request head within ``http_header_timeout`` of connecting (or of its previous
        answer) is closed: slow clients cannot hold connections open."""
        return web.AppRunner(
            self.build(),
            access_log=None,
            keepalive_timeout=self.engine.settings.http_header_timeout,
        )

    def _ready_producer(self) -> IngestProducer:
        assert self._producer is not None, "the API has not started"
        return self._producer

    async def start(self) -> None:
        settings = self.engine.settings
        # aiokafka clients must be created inside the running loop.
        self._producer = IngestProducer(
            self.engine.bootstrap, settings.max_record_bytes, settings.events_per_record
        )
        await self._producer.start()
        self._runner = self.runner()
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        await self._clock.close()
        if self._messaging is not None:
            await self._messaging.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._producer is not None:
            await self._producer.stop()
        await asyncio.to_thread(self._analysts.close)

    def _scoped(
        self, scope: Scope, handler: Handler, also: Callable[[web.Request], bool] | None = None
    ) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            presented = presented_key(
                request.headers.get("Authorization"), request.headers.get("X-Api-Key")
            )
            if not allowed(self._keys, presented, scope) and not (also and also(request)):
                return _json({"error": f"an API key with scope '{scope}' is required"}, 401)
            if request.body_exists:
                # Read here, within the time allowed; the handler gets it from the request.
                timeout = self.engine.settings.http_body_timeout
                try:
                    async with asyncio.timeout(timeout):
                        await request.read()
                except TimeoutError:
                    late = _json({"error": f"request body not received within {timeout:g}s"}, 408)
                    late.force_close()
                    return late
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

    async def forget_user(self, request: web.Request) -> web.Response:
        """Forget a user (docs/security.md#personal-data): 202 once the request is on
        the broker; the workers apply it in the user's partition."""
        try:
            forget = forget_request(request.match_info["user_id"], dt.datetime.now(dt.UTC))
        except BadUser as error:
            return _json({"error": str(error)}, 400)
        topic = self.engine.topics.tags
        partition = await send_forget(self.engine.bootstrap, topic, forget)
        if self._messaging is not None and self.engine.settings.inapp:
            await self._messaging.forget(forget.user_id)
        return _json({"user_id": forget.user_id, "topic": topic, "partition": partition}, 202)

    @web.middleware
    async def _keyless_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Without API keys, anything that reaches the port is served, so a web page in
        the operator's browser must not reach it: see ``keyless_refusal``."""
        refusal = keyless_refusal(request, self.engine.settings.http_host)
        if refusal is not None:
            status, reason = refusal
            return _json({"error": reason}, status)
        return await handler(request)

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI 3.1 description of this API. No key: it is the same for every
        deployment and holds no data (docs/security.md)."""
        if self._openapi is None:
            self._openapi = orjson.dumps(openapi())
        return web.Response(body=self._openapi, content_type="application/json")

    async def status(self, request: web.Request) -> web.Response:
        engine = self.engine
        return _json(
            {
                "broker": engine.bootstrap,
                "topics": list(engine.topics.all()),
                "partitions": engine.settings.partitions,
                "assigned": sorted(self._assigned()),
                "counters": dict(engine.counters),
                "projected": dict(self.projections.sink.written),
                "acked_records": engine.checkpoint.acked,
                "clock": engine.clock.status(),
                **{name: part() for name, part in engine.status_parts.items()},
            }
        )

    async def ingest(self, request: web.Request) -> web.Response:
        kind = request.path.rsplit("/", 1)[-1]
        topic, codec = self._inputs[kind]
        body = await request.read()
        settings = self.engine.settings
        # Parsing and validating up to the request limit takes a while: not on the loop.
        checked = await asyncio.to_thread(
            check_items,
            body,
            request.content_type,
            codec,
            settings.max_batch_items,
            settings.max_record_bytes,
        )
        if isinstance(checked, str):
            return _json({"error": checked}, 400)
        encoded, errors = checked
        partial = request.query.get("partial", "").lower() in ("1", "true", "yes")
        if errors and not partial:
            return _json({"accepted": 0, "errors": errors}, 400)
        assert self._producer is not None, "ingest before the API started"
        await self._producer.send_encoded(topic, encoded)
        return _json({"accepted": len(encoded), "errors": errors}, 200)

    async def query(self, request: web.Request) -> web.StreamResponse:
        """An analyst's query through the query door (projections/query_guard.py), on a
        ClickHouse client of its own with limits; rows are streamed as
        ``{"columns": [...], "rows": [...]}``, with an ``"error"`` member last if the
        query fails after the first rows went out."""
        try:
            body = orjson.loads(await request.read())
            sql = body["sql"]
            parameters = body.get("parameters") or None
            if not isinstance(sql, str) or not isinstance(parameters, dict | None):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return _json({"error": 'body must be {"sql": "...", "parameters": {...}}'}, 400)
        if not self.engine.settings.projects:
            return _json({"error": "this worker's role does not run projections"}, 503)
        if self.projections.client is None:
            return _json({"error": "ClickHouse is not open yet"}, 503)
        wait = self.engine.settings.query_timeout_seconds
        try:
            await asyncio.wait_for(self._query_slots.acquire(), timeout=wait)
        except TimeoutError:
            return _json({"error": f"every query slot stayed busy for {wait:g}s"}, 503)
        try:
            return await self._run_query(request, sql, parameters)
        finally:
            self._query_slots.release()

    async def _run_query(
        self, request: web.Request, sql: str, parameters: dict[str, Any] | None
    ) -> web.StreamResponse:
        analysts = self._analysts
        try:
            client = await asyncio.to_thread(analysts.take)
        except Exception as error:
            return _json({"error": f"cannot open a query client: {_first_line(error)}"}, 503)
        try:
            control = await asyncio.to_thread(analysts.control)
        except Exception as error:
            await asyncio.to_thread(analysts.give_back, client)
            return _json({"error": f"cannot open a query client: {_first_line(error)}"}, 503)
        running = AnalystQuery(client, control)
        try:
            try:
                columns = await _until_gone(request, running, running.start, sql, parameters)
                block = await _until_gone(request, running, running.next_block)
            except QueryRefused as refused:
                return _json({"error": str(refused)}, 400)
            except ConnectionResetError:
                raise
            except Exception as error:  # ClickHouse's message is the useful answer here
                return _json({"error": _first_line(error)}, 400)
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"columns":' + orjson.dumps(columns) + b',"rows":[')
            separator = b""
            try:
                while block is not None:
                    # One dumps per block: "[[...],[...]]" without its outer brackets.
                    chunk = orjson.dumps(block, default=_default)[1:-1]
                    if chunk:
                        await response.write(separator + chunk)
                        separator = b","
                    block = await _until_gone(request, running, running.next_block)
            except (ConnectionResetError, asyncio.CancelledError):
                raise
            except Exception as error:
                # Rows went out already: the status stays 200, the answer says why it
                # stopped, and a client must not take it as complete.
                await response.write(b'],"error":' + orjson.dumps(_first_line(error)) + b"}")
                await response.write_eof()
                return response
            await response.write(b"]}")
            await response.write_eof()
            return response
        finally:
            # Shielded: a client that went away cancels this handler, and its query must
            # still be stopped and its client handed back.
            await asyncio.shield(asyncio.to_thread(_finish, analysts, client, running))


def _finish(analysts: AnalystClients, client: Any, running: AnalystQuery) -> None:
    running.close()
    analysts.give_back(client)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:2000]


async def _until_gone(
    request: web.Request, running: AnalystQuery, call: Callable[..., Any], *args: Any
) -> Any:
    """Run a blocking step of a query in a thread; if the client goes away meanwhile,
    kill the query in ClickHouse rather than let it run to its time limit."""
    task = asyncio.ensure_future(asyncio.to_thread(call, *args))
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.2)
        if done:
            return task.result()
        transport = request.transport
        if transport is None or transport.is_closing():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(running.kill)
            with contextlib.suppress(Exception):
                await task
            raise ConnectionResetError("the client went away")
