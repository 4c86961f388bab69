"""Segments through the real broker and ClickHouse, in simulated time: the seed's
segments defined from a file, members entering and leaving on events, on tag updates
and on the passing of time alone, a deletion leaving no member behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from client.system import HttpClient, send_tick
from files.segments import load
from schemas.values import parse_timestamp
from streams.settings import Settings
from streams.topics import Topics
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"
TOPICS = Topics.from_settings(Settings())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemProcess]:
    folder = tmp_path_factory.mktemp("segments")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
    }
    with SystemProcess(folder, env) as running:
        yield running


async def memberships(api: HttpClient, expected: int, timeout: float = 30) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    while True:
        _, rows = await api.query(
            "SELECT segment_id, user_id, change, toString(at) FROM segment_memberships FINAL "
            "ORDER BY at, segment_id, user_id"
        )
        if len(rows) >= expected or time.monotonic() > deadline:
            return [tuple(row) for row in rows]
        await asyncio.sleep(0.1)


async def topic_records(bootstrap: str, count: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [
            TopicPartition(TOPICS.memberships, p)
            for p in consumer.partitions_for_topic(TOPICS.memberships) or []
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(found) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                for message in messages:
                    found.extend(orjson.loads(message.value))
        return found
    finally:
        await consumer.stop()


def test_seed_segments_in_simulated_time(simulated: SystemProcess) -> None:
    assert simulated.info is not None
    api = simulated.http
    settings = Settings(data_dir=simulated.data_dir)
    definitions = [d.model_dump(mode="json") for d in load(EXAMPLES / "seed-segments.yaml")]
    install = {"type": "date", "value": "2026-11-01T09:00:00Z"}

    async def scenario() -> None:
        status, body = await api.call("POST", "/v1/segments", definitions)
        assert status == 200, body
        assert [item["version"] for item in body["applied"]] == [1] * len(definitions)
        tags = [
            {
                "user_id": "u1",
                "op": "set",
                "timestamp": "2026-11-01T09:00:00Z",
                "tags": {"Country": "PT", "Language": "pt", "First Install": install},
            },
            {
                "user_id": "u2",
                "op": "set",
                "timestamp": "2026-11-01T09:00:00Z",
                "tags": {"Country": "IN", "Language": "hi", "First Install": install},
            },
        ]
        assert (await api.call("POST", "/v1/tags", tags))[0] == 200
        await memberships(api, 5)
        events = [
            {"user_id": "u1", "name": "ApplicationOpen", "timestamp": "2026-11-01T10:00:00Z"},
            {"user_id": "u2", "name": "ApplicationOpen", "timestamp": "2026-11-01T10:00:00Z"},
            {"user_id": "u2", "name": "InAppPurchase", "timestamp": "2026-11-02T10:00:00Z"},
            {"user_id": "u2", "name": "InAppPurchase", "timestamp": "2026-11-03T10:00:00Z"},
        ]
        assert (await api.call("POST", "/v1/events", events))[0] == 200
        await memberships(api, 9)
        # Seven days after the last open, time alone makes both users inactive.
        await send_tick(settings, TOPICS.clock, parse_timestamp("2026-11-08T10:00:00Z"))
        rows = await memberships(api, 12)
        assert rows == [
            ("country-portugal", "u1", "entered", "2026-11-01 09:00:00.000"),
            ("inactive-7d", "u1", "entered", "2026-11-01 09:00:00.000"),
            ("inactive-7d", "u2", "entered", "2026-11-01 09:00:00.000"),
            ("language-hindi", "u2", "entered", "2026-11-01 09:00:00.000"),
            ("lapsed-portuguese", "u1", "entered", "2026-11-01 09:00:00.000"),
            ("inactive-7d", "u1", "exited", "2026-11-01 10:00:00.000"),
            ("inactive-7d", "u2", "exited", "2026-11-01 10:00:00.000"),
            ("lapsed-portuguese", "u1", "exited", "2026-11-01 10:00:00.000"),
            ("buyers-2-in-30d", "u2", "entered", "2026-11-03 10:00:00.000"),
            ("inactive-7d", "u1", "entered", "2026-11-08 10:00:00.000"),
            ("inactive-7d", "u2", "entered", "2026-11-08 10:00:00.000"),
            ("lapsed-portuguese", "u1", "entered", "2026-11-08 10:00:00.000"),
        ]
        # 30 days after the first purchase only one is left in the window: no longer a
        # buyer, at exactly that instant whatever the tick's.
        await send_tick(settings, TOPICS.clock, parse_timestamp("2026-12-03T10:00:01Z"))
        rows = await memberships(api, 13)
        assert rows[-1] == ("buyers-2-in-30d", "u2", "exited", "2026-12-02 10:00:00.000")

        # The memberships topic carries the same changes as the ClickHouse log.
        records = await topic_records(simulated.info.broker, 13)
        assert sorted((r["segment_id"], r["user_id"], r["change"]) for r in records) == sorted(
            (row[0], row[1], row[2]) for row in rows
        )

        # Deleting a segment leaves no member behind (references block it first).
        status, body = await api.call("DELETE", "/v1/segments/inactive-7d")
        assert status == 400
        assert "lapsed-portuguese" in body["error"]
        assert (await api.call("DELETE", "/v1/segments/lapsed-portuguese"))[0] == 200
        rows = await memberships(api, 14)
        assert rows[-1][:3] == ("lapsed-portuguese", "u1", "exited")

        _, sizes = await api.query(
            "SELECT segment_id, argMax(members, hour) FROM segment_sizes "
            "GROUP BY segment_id ORDER BY segment_id"
        )
        assert [tuple(row) for row in sizes] == [
            ("buyers-2-in-30d", 0),
            ("country-portugal", 1),
            ("inactive-7d", 2),
            ("language-hindi", 1),
            ("lapsed-portuguese", 0),
        ]

        status, body = await api.call(
            "POST", "/v1/segments/preview", {"expression": 'T("Language", in, ["hi", "pt"])'}
        )
        assert (status, body["members"], body["users"]) == (200, 2, 2)

    asyncio.run(scenario())


def test_invalid_definitions_are_refused_with_where(simulated: SystemProcess) -> None:
    api = simulated.http

    async def scenario() -> None:
        status, body = await api.call(
            "POST",
            "/v1/segments",
            {"id": "bad", "name": "bad", "expression": 'T("Age", gt, "old")'},
        )
        assert status == 400
        assert "column" in body["error"].lower() or "^" in body["error"]
        status, body = await api.call(
            "POST", "/v1/segments", {"id": "loop", "name": "loop", "expression": 'S("loop")'}
        )
        assert status == 400
        assert "cycle" in body["error"]
        status, body = await api.call(
            "POST",
            "/v1/segments",
            {
                "id": "w",
                "name": "w",
                "condition": {"kind": "event", "event": "E", "window": {"kind": "last"}},
            },
        )
        assert status == 400
        assert "window" in body["error"]
        status, _ = await api.call("GET", "/v1/segments/bad")
        assert status == 404

    asyncio.run(scenario())
