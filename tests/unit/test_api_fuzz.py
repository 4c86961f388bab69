"""The HTTP API against generated and hostile requests, on a real loopback socket with
the real route table, scopes and server settings: the served OpenAPI document, the
scope matrix (every route x every kind of caller) and schemathesis generating requests
from the document, valid and invalid, asserting that none is answered with a 5xx and
that every answer is one the document lists (status, content type, body).

No broker or ClickHouse: produced records are folded or kept (FoldingProducer), the
segment preview runs over an in-memory table. The routes that need ClickHouse answer
503 "not open" here, which is the one 5xx allowed, and only for them.

``REACH_FUZZ_EXAMPLES`` sets the examples per operation (default 20; e.g. 500 for a
longer run: ``REACH_FUZZ_EXAMPLES=500 pytest tests/unit/test_api_fuzz.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from agents.segments.agent import SegmentRuntime
from api import clock as http_clock
from api import server as http_api
from api.auth import Scope
from api.openapi import openapi, scope_markdown
from api.routes import ROUTES, Route
from api.server import HttpApi
from files import presets as preset_files
from files import segments as segment_files
from schemas.forget import ForgetUser
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from streams.state import CoalescingTable, MemoryChangelog, MemoryStore
from streams.ticks import Ticked
from tests.unit.test_journey_routes import EXAMPLES, JOURNEYS, FoldingProducer

ROOT = Path(__file__).parents[2]
KEYS = {
    "admin": "admin-key-0123456789",
    "read": "read-key-01234567890",
    "ingest": "ingest-key-012345678",
    "inapp": "inapp-key-0123456789",
}
WRONG_KEY = "wrong-key-0123456789"
EXAMPLES_PER_OPERATION = int(os.environ.get("REACH_FUZZ_EXAMPLES", "20"))
NEEDS_CLICKHOUSE = {
    ("POST", "/v1/query"),
    ("GET", "/v1/journeys/{journey_id}/stats"),
    ("GET", "/v1/users/{user_id}/explain"),
}
"""Routes that answer 503 here: this test runs no ClickHouse."""
PARTITIONS = 4
NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)


@dataclass
class Served:
    url: str
    session: requests.Session

    def call(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> requests.Response:
        if method == "POST":  # without keys, also a POST without a body must say JSON
            headers = {"Content-Type": "application/json", **headers}
        return self.session.request(method, self.url + path, data=body, headers=headers, timeout=30)


async def _start(settings_: Settings) -> tuple[web.AppRunner, CoalescingTable]:
    engine = Engine.from_settings(settings_, "127.0.0.1:1")
    engine.clock.advance(NOW)
    registry = engine.definitions.registry
    for segment in segment_files.load(EXAMPLES / "seed-segments.yaml"):
        registry.fold(registry.prepare(segment, datetime(2026, 10, 1, tzinfo=UTC)))
    for preset in preset_files.load(EXAMPLES / "seed-presets.yaml"):
        registry.fold(registry.prepare_preset(preset, datetime(2026, 10, 1, tzinfo=UTC)))
    engine.definitions.ready.set()
    table = CoalescingTable(MemoryChangelog(PARTITIONS), MemoryStore())
    await table.start()
    await table.recover(range(PARTITIONS))
    runtime = SegmentRuntime(table, "127.0.0.1:1", "memberships", timedelta(days=90))

    async def preview(condition: Any, sample: int) -> tuple[int, int, list[str]]:
        return await runtime.preview(condition, sample, engine.clock.now())

    http = HttpApi(engine, previewer=preview)
    producer = FoldingProducer(engine)
    http._producer = cast(IngestProducer, producer)
    runner = http.runner()
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, table


async def _stop(runner: web.AppRunner, table: CoalescingTable) -> None:
    await runner.cleanup()
    await table.stop()


@contextmanager
def serve(settings_: Settings) -> Iterator[Served]:
    """The API on a loopback port, served by a loop of its own in a thread (schemathesis
    and hypothesis call it synchronously)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    started_parts: list[tuple[web.AppRunner, CoalescingTable]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        started_parts.append(loop.run_until_complete(_start(settings_)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the API did not start"
    runner, table = started_parts[0]
    port = runner.addresses[0][1]
    with requests.Session() as session:
        served = Served(f"http://127.0.0.1:{port}", session)
        admin = {"Authorization": f"Bearer {KEYS['admin']}"} if settings_.api_keys else {}
        # The example journeys, applied through the API itself, one launched.
        answer = served.call("POST", "/v1/journeys", admin, _json(JOURNEYS))
        assert answer.status_code == 200, answer.text
        answer = served.call("POST", "/v1/journeys/follow-up-email-sms-whatsapp/launch", admin)
        assert answer.status_code == 200, answer.text
        yield served
    asyncio.run_coroutine_threadsafe(_stop(runner, table), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


def _json(value: Any, big_ints: bool = False) -> bytes:
    """JSON of ``value``; ``big_ints``: integers of any size (orjson stops at 64 bits)."""
    if big_ints:
        return json.dumps(value).encode()
    return orjson.dumps(value)


def _settings(tmp: Path, api_keys: str) -> Settings:
    return Settings(
        api_keys=api_keys,
        clock="simulated",
        data_dir=tmp,
        tracking_secret="tracking-secret-for-tests-0123456789",
        max_record_bytes=8192,
        max_batch_items=50,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    keys = ",".join(f"{key}:{scope}" for scope, key in KEYS.items())
    with serve(_settings(tmp_path_factory.mktemp("fuzz"), keys)) as api:
        yield api


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forgetting a user and ticking the clock produce straight to the broker; here,
    to nowhere."""

    async def send_forget(bootstrap: str, topic: str, request: ForgetUser) -> int:
        return 0

    monkeypatch.setattr(http_api, "send_forget", send_forget)
    monkeypatch.setattr(http_clock, "TickDriver", _Ticks)


class _Ticks:
    """The tick driver, minus the broker: a tick is applied at once everywhere."""

    def __init__(self, bootstrap: str, topics: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def tick(self, now: datetime, wait: bool, timeout: float) -> Ticked:
        return Ticked(now, PARTITIONS, wait)


# --- the document and the route table ---------------------------------------------------


def test_the_document_is_served_without_a_key_and_is_valid_openapi_3_1(served: Served) -> None:
    answer = served.call("GET", "/v1/openapi.json", {})
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document == openapi()
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()
    operations = _operations(schema)
    assert {(op.method.upper(), op.path) for op in operations} == {
        (route.method, route.path) for route in ROUTES
    }


def test_every_route_states_its_scope_and_errors() -> None:
    paths = openapi()["paths"]
    for route in ROUTES:
        operation = paths[route.path][route.method.lower()]
        wanted = [{"apiKey": [route.scope.value]}] if route.scope else []
        assert operation["security"] == wanted, route
        statuses = set(operation["responses"])
        if route.scope is not None:
            assert "401" in statuses, route
        if route.scope is not None and route.method == "POST":
            assert {"400", "408", "413", "415"} <= statuses, route
        if "{" in route.path:
            assert "404" in statuses, route


def test_the_registered_routes_are_the_route_table(tmp_path: Path) -> None:
    """The aiohttp router holds exactly the table's routes (GET with HEAD): a route
    added by hand, outside the table, fails here."""
    engine = Engine.from_settings(_settings(tmp_path, ""), "127.0.0.1:1")
    app = HttpApi(engine).build()
    registered = set()
    for resource in app.router.resources():
        for route in resource:
            path = resource.canonical
            registered.add((route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    wanted: set[tuple[str, str]] = {(route.method, route.path) for route in ROUTES}
    wanted |= {("HEAD", path) for method, path in wanted if method == "GET"}
    assert registered == wanted


def test_the_scope_table_in_the_security_doc_is_current() -> None:
    assert scope_markdown() in (ROOT / "docs" / "security.md").read_text(encoding="utf-8")


# --- the scope matrix ---------------------------------------------------------------------

CALLERS = {
    "no key": {},
    "wrong key": {"Authorization": f"Bearer {WRONG_KEY}"},
    "ingest": {"Authorization": f"Bearer {KEYS['ingest']}"},
    "read": {"Authorization": f"Bearer {KEYS['read']}"},
    "inapp": {"Authorization": f"Bearer {KEYS['inapp']}"},
    "admin": {"Authorization": f"Bearer {KEYS['admin']}"},
}


def _fits(route: Route, caller: str) -> bool:
    if route.scope is None:
        return True
    return caller == "admin" or caller == route.scope.value


def _concrete(route: Route) -> str:
    """The route's path with harmless values: an item that does not exist."""
    values = {"action": "pause", "user_id": "nobody"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], "no-such-item"), route.path)


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
def test_scope_matrix(served: Served, route: Route, caller: str) -> None:
    body = b"{}" if route.method == "POST" else None
    answer = served.call(route.method, _concrete(route), CALLERS[caller], body)
    if _fits(route, caller):
        assert answer.status_code != 401, answer.text
    else:
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"error": f"an API key with scope '{route.scope}' is required"}
    assert answer.status_code < 500 or (route.method, route.path) in NEEDS_CLICKHOUSE, answer.text


def test_x_api_key_and_bearer_give_the_same_scopes(served: Served) -> None:
    for scope, key in KEYS.items():
        for route in ROUTES:
            if route.scope is None or route.method != "GET":
                continue
            answer = served.call(route.method, _concrete(route), {"X-Api-Key": key})
            assert (answer.status_code == 401) == (not _fits(route, scope)), (scope, route)


def test_without_keys_no_route_asks_for_one(tmp_path: Path) -> None:
    with serve(_settings(tmp_path, "")) as keyless:
        for route in ROUTES:
            body = b"{}" if route.method == "POST" else None
            answer = keyless.call(route.method, _concrete(route), {}, body)
            # Nor do the keyless checks refuse a local client that sends JSON.
            assert answer.status_code not in (401, 403, 415), (route, answer.text)
            assert answer.status_code < 500 or (route.method, route.path) in NEEDS_CLICKHOUSE


# --- what the fuzzer found -----------------------------------------------------------------


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [1, {"deep": 10**30}]])
def test_an_entry_with_an_integer_json_cannot_carry_is_refused_per_item(
    tmp_path: Path, value: Any
) -> None:
    """Integers past 64 bits made deriving the entry id raise (500); a Kafka consumer
    would read them back as floats. They are an invalid item now, like NaN."""
    keys = ",".join(f"{key}:{scope}" for scope, key in KEYS.items())
    with serve(_settings(tmp_path, keys)) as api:
        body = {"users": [{"user_id": "u1"}, {"user_id": "u2", "properties": {"n": value}}]}
        answer = api.call(
            "POST",
            f"/v1/journeys/{KNOWN_ITEMS['journey_id']}/entries",
            CALLERS["ingest"],
            _json(body, big_ints=True),
        )
        assert answer.status_code == 400, answer.text
        [error] = answer.json()["errors"]
        assert error["index"] == 1
        assert "integer outside 64 bits" in error["detail"], error


# --- generated requests -------------------------------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(openapi())


def _operations(schema: Any) -> list[Any]:
    """The operations of a loaded schema; every one must have loaded."""
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        found.append(result.ok())
    return found


OPERATIONS = {f"{op.method.upper()} {op.path}": op for op in _operations(SCHEMA)}


DOCUMENT_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
KNOWN_ITEMS = {
    "journey_id": "follow-up-email-sms-whatsapp",  # launched, with an API entry
    "segment_id": "inactive-7d",
    "preset_id": "we-miss-you",
}


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_input_gets_a_server_error(served: Served, label: str) -> None:
    operation = OPERATIONS[label]
    media = "application/json" if operation.body else None
    # Also on items that exist, so that requests get past the 404 into the handler.
    known = {name: value for name, value in KNOWN_ITEMS.items() if name in operation.path}
    cases = st.one_of(
        *(
            operation.as_strategy(mode, media_type=media, path_parameters=fixed)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for fixed in ([None, known] if known else [None])
        )
    )
    allowed_503 = (operation.method.upper(), operation.path) in NEEDS_CLICKHOUSE

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Any) -> None:
        response = case.call(
            base_url=served.url,
            session=served.session,
            headers={"Authorization": f"Bearer {KEYS['admin']}"},
            timeout=30,
        )
        status = response.status_code
        assert status < 500 or (status == 503 and allowed_503), (
            f"{status} for {case.method} {case.formatted_path} "
            f"query={case.query!r} body={case.body!r}: {response.text[:500]}"
        )
        # The document tells the truth: the status, its content type and body are those
        # it lists for the operation.
        case.validate_response(response, checks=DOCUMENT_CHECKS)

    check()


def test_the_matrix_covers_every_scope() -> None:
    assert {scope.value for scope in Scope} == set(KEYS)


def _line(case: Any) -> bytes:
    """One NDJSON line from a generated JSON body (its first item when a list)."""
    body = case.body
    if isinstance(body, list) and body:
        body = body[0]
    try:
        return json.dumps(body).encode()
    except (TypeError, ValueError):  # no body, or none JSON can carry
        return b"{}"


@pytest.mark.parametrize("path", ["/v1/events", "/v1/tags", "/v1/feedback", "/v1/devices"])
def test_no_ndjson_body_gets_a_server_error(served: Served, path: str) -> None:
    """NDJSON bodies of generated items, raw bytes and blank lines, whole or partial."""
    operation = OPERATIONS[f"POST {path}"]
    items = st.one_of(
        [
            operation.as_strategy(mode, media_type="application/json").map(_line)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    )
    lines = st.one_of(items, st.binary(max_size=64), st.just(b""), st.just(b"  "))

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=st.lists(lines, max_size=6).map(b"\n".join), partial=st.booleans())
    def check(body: bytes, partial: bool) -> None:
        headers = {**CALLERS["ingest"], "Content-Type": "application/x-ndjson"}
        answer = served.session.post(
            served.url + path + ("?partial=true" if partial else ""),
            data=body,
            headers=headers,
            timeout=30,
        )
        assert answer.status_code in (200, 400), (body, answer.text[:500])
        assert "accepted" in answer.json() or "error" in answer.json()

    check()
