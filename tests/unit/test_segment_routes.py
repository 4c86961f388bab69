"""The segment routes of the HTTP API on a loopback socket, with the real route table,
scopes and server settings and a real segment runtime over an in-memory table (no broker):
limits on what a condition may hold, and a large preview that leaves the event loop
free for other requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest
from aiohttp import ClientSession, web

from agents.segments.agent import SegmentRuntime
from api.server import HttpApi
from schemas.segment_language import MAX_DEPTH, MAX_TERMS
from schemas.tags import TagUpdate
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from streams.state import CoalescingTable, MemoryChangelog, MemoryStore
from tests.unit.test_journey_routes import ADMIN, INGEST, READ, FoldingProducer

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
PARTITIONS = 4


@dataclass
class Api:
    client: ClientSession
    engine: Engine
    runtime: SegmentRuntime
    producer: FoldingProducer
    previews: list[asyncio.Task[Any]]
    """The task of each preview, as it starts."""

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] = ADMIN
    ) -> tuple[int, Any]:
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, await response.json()


async def add_users(runtime: SegmentRuntime, count: int) -> None:
    """``count`` users over the partitions, each with a ``Country`` tag (C0..C49)."""
    for partition in range(PARTITIONS):
        items = [
            TagUpdate(user_id=f"u{partition}-{n}", tags={"Country": f"C{n % 50}"}, timestamp=NOW)
            for n in range(count // PARTITIONS)
        ]
        await runtime.apply(partition, 0, "t", items, lambda _: NOW)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    settings = Settings(
        api_keys=(
            f"{ADMIN['Authorization'][7:]}:admin,{READ['Authorization'][7:]}:read,"
            f"{INGEST['Authorization'][7:]}:ingest"
        ),
        clock="simulated",
        max_record_bytes=8192,
    )
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    engine.clock.advance(NOW)
    engine.definitions.ready.set()
    table = CoalescingTable(MemoryChangelog(PARTITIONS), MemoryStore())
    await table.start()
    await table.recover(range(PARTITIONS))
    runtime = SegmentRuntime(table, "127.0.0.1:1", "memberships", timedelta(days=90))

    previews: list[asyncio.Task[Any]] = []

    async def preview(condition: Any, sample: int) -> tuple[int, int, list[str]]:
        task = asyncio.current_task()
        assert task is not None
        previews.append(task)
        return await runtime.preview(condition, sample, engine.clock.now())

    producer = FoldingProducer(engine)
    http = HttpApi(engine, previewer=preview)
    http._producer = cast(IngestProducer, producer)
    # The server as the worker runs it (aiohttp's test server cancels handlers when
    # their client leaves, which the worker's does not).
    runner = http.runner()
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ClientSession(base_url=f"http://127.0.0.1:{port}") as client:
        yield Api(client, engine, runtime, producer, previews)
    await runner.cleanup()
    await table.stop()


def terms(count: int, joiner: str = " + ") -> str:
    return joiner.join(f'T("Country", eq, "X{n}")' for n in range(count))


async def test_preview_counts_members(api: Api) -> None:
    await add_users(api.runtime, 200)
    status, body = await api.call(
        "POST", "/v1/segments/preview", {"expression": 'T("Country", in, ["C1", "C2"])'}, READ
    )
    assert status == 200, body
    assert (body["members"], body["users"], len(body["sample"])) == (8, 200, 8)


async def test_a_large_preview_leaves_the_event_loop_free(api: Api) -> None:
    await add_users(api.runtime, 24_000)
    # As many terms as allowed, none matching: every term is evaluated for every user.
    expression = terms(MAX_TERMS)
    preview = asyncio.create_task(
        api.call("POST", "/v1/segments/preview", {"expression": expression}, READ)
    )
    started = time.perf_counter()
    await asyncio.sleep(0.3)  # the preview is under way
    health = await api.client.get("/healthz")
    # Beyond the sleep itself: a loop held by the preview delays both.
    late = time.perf_counter() - started - 0.3
    assert health.status == 200
    assert late < 0.5, f"/healthz answered {late:.2f}s late while a preview ran"
    assert not preview.done(), "the preview ended too soon to show anything"
    status, body = await preview
    assert (status, body["members"], body["users"]) == (200, 0, 24_000)


async def test_a_preview_sees_users_that_arrive_while_it_runs(api: Api) -> None:
    # The lock is held per chunk: inputs go on between chunks, and nothing breaks.
    await add_users(api.runtime, 8_000)
    preview = asyncio.create_task(
        api.call("POST", "/v1/segments/preview", {"expression": terms(MAX_TERMS)}, READ)
    )
    await asyncio.sleep(0.05)
    more = [
        TagUpdate(user_id=f"late-{n}", tags={"Country": "C1"}, timestamp=NOW) for n in range(50)
    ]
    await api.runtime.apply(0, 1, "t", more, lambda _: NOW)
    status, body = await preview
    assert status == 200
    assert 8_000 <= body["users"] <= 8_050


async def test_expressions_over_the_term_limit_are_refused(api: Api) -> None:
    status, body = await api.call(
        "POST", "/v1/segments/preview", {"expression": terms(MAX_TERMS + 1)}, READ
    )
    assert status == 400
    assert f"over the limit of {MAX_TERMS}" in body["error"]
    status, body = await api.call(
        "POST",
        "/v1/segments",
        {"id": "big", "name": "big", "expression": terms(MAX_TERMS + 1)},
    )
    assert status == 400
    assert f"over the limit of {MAX_TERMS}" in body["error"]
    assert api.producer.keyed == []


async def test_json_conditions_have_the_same_limits(api: Api) -> None:
    leaf = {"kind": "segment", "segment": "s"}  # short: the document stays under 8 KiB
    wide = {"kind": "or", "conditions": [leaf] * (MAX_TERMS + 1)}
    deep: dict[str, Any] = leaf
    for _ in range(MAX_DEPTH + 1):
        deep = {"kind": "and", "conditions": [deep]}
    for condition, message in ((wide, f"limit of {MAX_TERMS}"), (deep, f"limit of {MAX_DEPTH}")):
        status, body = await api.call(
            "POST", "/v1/segments/preview", {"condition": condition}, READ
        )
        assert status == 400, body
        assert message in body["error"]
        status, body = await api.call(
            "POST", "/v1/segments", {"id": "big", "name": "big", "condition": condition}
        )
        assert status == 400, body
        assert message in body["error"]
    assert api.producer.keyed == []


async def test_a_definition_over_the_record_limit_is_413(api: Api) -> None:
    # The expression is short enough, but its condition as a record (JSON) is not.
    definition = {"id": "big", "name": "big", "expression": terms(MAX_TERMS)}
    assert len(orjson.dumps(definition)) < 8192
    status, body = await api.call("POST", "/v1/segments", definition)
    assert status == 413, body
    assert "as a record, over the limit of 8192 bytes" in body["error"]
    assert api.producer.keyed == []


async def test_a_definition_too_large_is_413_before_it_is_parsed(api: Api) -> None:
    # Far over the record limit, and over the expression limit too: the size answers.
    expression = " + ".join(['T("Country", eq, "PT")'] * 4000)
    status, body = await api.call(
        "POST", "/v1/segments", [{"id": "big", "name": "big", "expression": expression}]
    )
    assert status == 413, body
    assert body["error"].startswith("segment 'big' is ")
    assert body["error"].endswith("bytes, over the limit of 8192 bytes")


async def test_a_preview_stops_when_its_client_leaves(api: Api) -> None:
    await add_users(api.runtime, 24_000)
    request = asyncio.create_task(
        api.call("POST", "/v1/segments/preview", {"expression": terms(MAX_TERMS)}, READ)
    )
    for _ in range(100):
        await asyncio.sleep(0.05)
        if api.previews:
            break
    assert len(api.previews) == 1, "the preview has not started"
    await asyncio.sleep(0.1)
    assert not api.previews[0].done()
    request.cancel()  # the client gives up and closes its connection
    await asyncio.sleep(1.0)
    assert api.previews[0].cancelled(), "the preview went on without its client"
    assert not api.runtime.lock.locked()


@pytest.mark.parametrize("sample", ["1e400", "NaN", '"ten"', "[]", "-5"])
async def test_odd_sample_sizes_are_refused_or_bounded(api: Api, sample: str) -> None:
    body = b'{"expression": "T(\\"Country\\", exists)", "sample": ' + sample.encode() + b"}"
    response = await api.client.post(
        "/v1/segments/preview", data=body, headers={**READ, "Content-Type": "application/json"}
    )
    assert response.status in (200, 400), await response.text()
