"""The system through its real broker and ClickHouse engine: records in, rows and dead
letters out, nothing valid lost or reordered, bad input refused with reasons."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from client.system import HttpClient
from streams.settings import Settings
from streams.topics import Topics
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())


def event(user: str, name: str, ms: int, **attributes: Any) -> dict[str, Any]:
    return {"user_id": user, "name": name, "timestamp": ms, "attributes": attributes}


async def wait_rows(api: HttpClient, sql: str, expected: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        _, rows = await api.query(sql)
        if int(rows[0][0]) >= expected or time.monotonic() > deadline:
            return int(rows[0][0])
        await asyncio.sleep(0.1)


async def read_dead_letters(bootstrap: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [
            TopicPartition(TOPICS.dead_letters, p)
            for p in consumer.partitions_for_topic(TOPICS.dead_letters) or []
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: list[Any] = []
        deadline = time.monotonic() + 30
        while len(found) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(messages)
        return found
    finally:
        await consumer.stop()


def test_dead_letters_keep_bytes_and_origin_and_spare_the_neighbours(system: SystemProcess) -> None:
    assert system.info is not None
    bootstrap, api = system.info.broker, system.http
    bad_records = [
        b"{not json",
        orjson.dumps({"name": "ApplicationOpen", "timestamp": 1}),  # no user id
        orjson.dumps({"user_id": ["u"], "name": "ApplicationOpen", "timestamp": 1}),
        orjson.dumps({"user_id": "dl-u", "name": "ApplicationOpen", "timestamp": "soon"}),
        orjson.dumps(event("dl-u", "Huge", 1, blob="x" * 30_000)),
        None,  # a tombstone
    ]
    expected_reasons = [
        "not_json",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "too_large",
        "tombstone",
    ]
    batch_with_bad_item = orjson.dumps(
        [
            event("dl-u", "Seq", 1_700_000_000_001, n=2),
            {"user_id": "dl-u", "name": "Seq", "timestamp": 1, "attributes": "nope"},
            event("dl-u", "Seq", 1_700_000_000_002, n=3),
        ]
    )

    async def produce() -> list[tuple[int, str]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        sent: list[tuple[int, str]] = []
        try:
            # valid, bad, valid, bad, ... all in one partition: order must survive.
            first = await producer.send_and_wait(
                TOPICS.events,
                orjson.dumps(event("dl-u", "Seq", 1_700_000_000_000, n=1)),
                partition=0,
            )
            sent.append((first.offset, "valid"))
            for raw in bad_records:
                meta = await producer.send_and_wait(TOPICS.events, raw, key=b"k", partition=0)
                sent.append((meta.offset, "bad"))
            meta = await producer.send_and_wait(TOPICS.events, batch_with_bad_item, partition=0)
            sent.append((meta.offset, "batch"))
            last = await producer.send_and_wait(
                TOPICS.events,
                orjson.dumps(event("dl-u", "Seq", 1_700_000_000_003, n=4)),
                partition=0,
            )
            sent.append((last.offset, "valid"))
        finally:
            await producer.stop()
        return sent

    sent = asyncio.run(produce())
    letters = asyncio.run(read_dead_letters(bootstrap, len(bad_records) + 1))
    assert len(letters) == len(bad_records) + 1

    by_origin = {}
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        by_origin[(int(headers["reach.dlq.source.offset"]), headers["reach.dlq.source.index"])] = (
            headers,
            letter.value,
            letter.key,
        )
    bad_offsets = [offset for offset, kind in sent if kind == "bad"]
    for offset, raw, reason in zip(bad_offsets, bad_records, expected_reasons, strict=True):
        headers, value, key = by_origin[(offset, "")]
        assert headers["reach.dlq.reason"] == reason
        assert headers["reach.dlq.source.topic"] == TOPICS.events
        assert headers["reach.dlq.source.partition"] == "0"
        if reason == "too_large":  # a prefix, with the size and hash of the whole
            assert raw is not None
            assert raw.startswith(value)
            assert len(value) == 16_384
            assert headers["reach.dlq.original.size"] == str(len(raw))
            assert headers["reach.dlq.original.sha256"] == hashlib.sha256(raw).hexdigest()
        elif reason == "tombstone":
            assert value == b""
        else:
            assert value == raw  # the original bytes, untouched
        assert key == b"k"
    batch_offset = next(offset for offset, kind in sent if kind == "batch")
    headers, value, _ = by_origin[(batch_offset, "1")]
    assert headers["reach.dlq.reason"] == "wrong_type"
    assert orjson.loads(value)["attributes"] == "nope"

    async def projected() -> list[list[Any]]:
        await wait_rows(api, "SELECT count() FROM events FINAL WHERE name = 'Seq'", 4)
        await wait_rows(api, "SELECT count() FROM dead_letters FINAL", len(letters))
        _, rows = await api.query(
            "SELECT JSONExtractInt(attributes, 'n'), source_offset FROM events FINAL "
            "WHERE name = 'Seq' ORDER BY source_offset, ts"
        )
        return rows

    rows = asyncio.run(projected())
    assert [row[0] for row in rows] == [1, 2, 3, 4]  # nothing lost, nothing reordered


def test_http_ingest_refuses_mixed_batches_whole_unless_partial(system: SystemProcess) -> None:
    api = system.http
    good = [event("http-u1", "HttpGood", 1_700_000_000_000 + n) for n in range(3)]
    mixed = [*good, {"user_id": "http-u1", "name": "HttpGood", "timestamp": "when?"}]

    async def scenario() -> None:
        status, body = await api.call("POST", "/v1/events", mixed)
        assert status == 400
        assert body["accepted"] == 0
        assert body["errors"] == [
            {"index": 3, "reason": "bad_timestamp", "detail": body["errors"][0]["detail"]}
        ]
        status, body = await api.call("POST", "/v1/events?partial=true", mixed)
        assert (status, body["accepted"], len(body["errors"])) == (200, 3, 1)
        assert (
            await wait_rows(api, "SELECT count() FROM events FINAL WHERE name = 'HttpGood'", 3) == 3
        )
        # Re-sending the same events (a client retry) adds no rows: ids are derived.
        status, _ = await api.call("POST", "/v1/events", good)
        assert status == 200
        await asyncio.sleep(1.0)
        _, rows = await api.query("SELECT count() FROM events FINAL WHERE name = 'HttpGood'")
        assert rows[0][0] == 3

    asyncio.run(scenario())


def test_http_limits_and_scopes(system: SystemProcess) -> None:
    assert system.info is not None
    api = system.http
    no_key = HttpClient(system.info.http)
    ingest_only = HttpClient(system.info.http, "ingest-only-key-012345")

    async def scenario() -> None:
        status, body = await api.call(
            "POST", "/v1/events", [event("u", "E", 1) for _ in range(101)]
        )
        assert status == 400
        assert "limit of 100" in body["error"]
        status, body = await api.call("POST", "/v1/events", [event("u", "E", 1, pad="x" * 300_000)])
        assert status == 413
        assert "200000 bytes" in body["error"]
        assert (await no_key.call("POST", "/v1/events", [event("u", "E", 1)]))[0] == 401
        assert (await ingest_only.call("POST", "/v1/events", [event("u", "E", 1)]))[0] == 200
        assert (await ingest_only.call("POST", "/v1/query", {"sql": "SELECT 1"}))[0] == 401
        assert (await no_key.call("GET", "/healthz"))[0] == 200

    asyncio.run(scenario())


def test_tags_and_feedback_are_projected(system: SystemProcess) -> None:
    api = system.http

    async def scenario() -> None:
        tags = [
            {
                "user_id": "t-u",
                "op": "set",
                "timestamp": "2026-11-01T10:00:00Z",
                "tags": {"Country": "PT", "App Version": {"type": "version", "value": "2.4"}},
            },
            {
                "user_id": "t-u",
                "op": "unset",
                "timestamp": "2026-11-02T10:00:00Z",
                "tags": ["Country"],
            },
        ]
        feedback = [
            {
                "command_id": "cmd-1",
                "user_id": "t-u",
                "status": "opened",
                "timestamp": "2026-11-03T10:00:00Z",
                "channel": "email",
            }
        ]
        assert (await api.call("POST", "/v1/tags", tags))[0] == 200
        assert (await api.call("POST", "/v1/feedback", feedback))[0] == 200
        assert (
            await wait_rows(api, "SELECT count() FROM tag_updates FINAL WHERE user_id = 't-u'", 2)
            == 2
        )
        assert (
            await wait_rows(api, "SELECT count() FROM feedback FINAL WHERE status = 'opened'", 1)
            == 1
        )
        _, rows = await api.query(
            "SELECT op, tags FROM tag_updates FINAL WHERE user_id = 't-u' ORDER BY ts"
        )
        assert rows[0][0] == "set"
        assert orjson.loads(rows[0][1])["App Version"] == {"type": "version", "value": "2.4"}
        assert rows[1] == ["unset", '{"Country":null}']

    asyncio.run(scenario())


def test_queries_are_read_only(system: SystemProcess) -> None:
    async def scenario() -> None:
        # Refused by the query door before ClickHouse sees them (docs/security.md).
        with pytest.raises(RuntimeError, match="only a SELECT is allowed, not DROP"):
            await system.http.query("DROP TABLE events")
        with pytest.raises(RuntimeError, match="only a SELECT is allowed, not INSERT"):
            await system.http.query("INSERT INTO events (event_id) VALUES ('x')")

    asyncio.run(scenario())
