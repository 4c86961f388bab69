"""The real intake agents of ``create_app``, driven through Faust's test context."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic_core import to_json

from projections import rows
from schemas import DeadLetter, DeadLetterReason, Event
from tests.agents.conftest import Worker

EVENT_A = {"user_id": "user-1", "name": "page_view", "timestamp": "2024-05-01T10:00:00Z"}
EVENT_B = {
    "user_id": "user-1",
    "name": "add_to_cart",
    "timestamp": 1714557600000,
    "attributes": {"sku": "A-1", "price": {"type": "price", "amount": "9.99", "currency": "EUR"}},
}
EVENT_C = {"user_id": "user-1", "name": "checkout", "timestamp": "2024-05-01T10:05:00+02:00"}
MISSING_NAME = {"user_id": "user-1", "timestamp": "2024-05-01T10:00:00Z"}


def batch(*items: Any) -> bytes:
    # pydantic-core's encoder, as orjson refuses integers beyond 64 bits.
    return to_json(list(items))


def letters(worker: Worker) -> list[DeadLetter]:
    return [DeadLetter.from_record(s.value, s.key, s.headers) for s in worker.dead_letters()]


async def test_valid_batch_becomes_event_rows_and_no_dead_letters(
    worker: Worker, drive: Callable[..., Any]
) -> None:
    async with drive(worker, "intake-events") as driver:
        await driver.put(batch(EVENT_A, EVENT_B, EVENT_C), partition=2)

    assert worker.engine.counters["events.valid"] == 3
    assert worker.engine.counters["events.dead"] == 0
    assert worker.system.projections.sink.pending == 3
    assert worker.dead_letters() == []

    await worker.flush()
    written = worker.clickhouse.rows("events")
    assert [row["name"] for row in written] == ["page_view", "add_to_cart", "checkout"]
    assert {row["source_partition"] for row in written} == {2}
    assert {row["source_offset"] for row in written} == {0}
    expected_ids = [Event.model_validate(item).event_id for item in (EVENT_A, EVENT_B, EVENT_C)]
    assert [row["event_id"] for row in written] == expected_ids
    assert worker.clickhouse.inserts[0][2] == list(rows.EVENTS.columns)


async def test_not_json_record_goes_to_dead_letters_untouched(
    worker: Worker, drive: Callable[..., Any]
) -> None:
    raw = b'{"user_id": "user-1", "name": '
    async with drive(worker, "intake-events") as driver:
        await driver.put(raw, key=b"user-1", partition=1)

    assert worker.engine.counters["events.valid"] == 0
    assert worker.engine.counters["events.dead"] == 1
    assert worker.system.projections.sink.pending == 0
    [sent] = worker.dead_letters()
    assert sent.value == raw
    assert sent.key == b"user-1"
    assert sent.partition == 1  # the dead letter stays on the input's partition
    [letter] = letters(worker)
    assert letter.reason is DeadLetterReason.NOT_JSON
    assert letter.source_topic == worker.engine.topics.events
    assert (letter.source_partition, letter.source_offset, letter.source_index) == (1, 0, None)


async def test_mixed_batch_keeps_valid_items_and_dead_letters_the_rest(
    worker: Worker, drive: Callable[..., Any]
) -> None:
    bad_timestamp = {**EVENT_A, "timestamp": "last tuesday"}
    record = batch(EVENT_A, MISSING_NAME, EVENT_B, bad_timestamp, EVENT_C)
    async with drive(worker, "intake-events") as driver:
        await driver.put(b"not json at all")  # offset 0
        await driver.put(record, partition=3)  # offset 1

    assert worker.engine.counters["events.valid"] == 3
    assert worker.engine.counters["events.dead"] == 3
    assert worker.system.projections.sink.pending == 3

    in_batch = [letter for letter in letters(worker) if letter.source_offset == 1]
    assert [(x.source_index, x.reason) for x in in_batch] == [
        (1, DeadLetterReason.MISSING_FIELD),
        (3, DeadLetterReason.BAD_TIMESTAMP),
    ]
    assert [orjson.loads(x.raw) for x in in_batch] == [MISSING_NAME, bad_timestamp]
    assert {x.source_partition for x in in_batch} == {3}

    await worker.flush()
    written = worker.clickhouse.rows("events")
    assert [row["name"] for row in written] == ["page_view", "add_to_cart", "checkout"]
    assert {(row["source_partition"], row["source_offset"]) for row in written} == {(3, 1)}


@pytest.mark.parametrize(
    ("agent_name", "table", "valid", "invalid", "reason"),
    [
        (
            "intake-tag_updates",
            rows.TAG_UPDATES,
            {"user_id": "u", "op": "increment", "tags": {"visits": 1}, "timestamp": 0},
            {"user_id": "u", "op": "multiply", "tags": {"visits": 2}, "timestamp": 0},
            DeadLetterReason.UNKNOWN_OPERATION,
        ),
        (
            "intake-feedback",
            rows.FEEDBACK,
            {"command_id": "c-1", "user_id": "u", "status": "opened", "timestamp": 0},
            {"command_id": "c-1", "user_id": "u", "status": "opened", "timestamp": True},
            DeadLetterReason.BAD_TIMESTAMP,
        ),
    ],
)
async def test_other_input_topics_share_the_same_intake(
    worker: Worker,
    drive: Callable[..., Any],
    agent_name: str,
    table: rows.Table,
    valid: dict[str, Any],
    invalid: dict[str, Any],
    reason: DeadLetterReason,
) -> None:
    async with drive(worker, agent_name) as driver:
        await driver.put(batch(valid, invalid))

    assert worker.engine.counters[f"{table.name}.valid"] == 1
    assert worker.engine.counters[f"{table.name}.dead"] == 1
    [letter] = letters(worker)
    assert (letter.reason, letter.source_index) == (reason, 1)
    await worker.flush()
    [row] = worker.clickhouse.rows(table.name)
    assert row["user_id"] == "u"


async def test_records_are_acked_only_after_their_rows_are_written(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    # A flush threshold of two rows: the second record makes the checkpoint due, and
    # the agent asks the checkpoint service (not running here) to commit.
    worker = make_worker(projection_flush_rows=2)
    checkpoint = worker.engine.checkpoint
    acked_when_inserting: list[list[bool]] = []
    async with drive(worker, "intake-events") as driver:
        worker.clickhouse.on_insert = lambda: acked_when_inserting.append(
            [event.message.acked for event in driver.held]
        )
        first = await driver.put(batch(EVENT_A))
        assert not first.message.acked
        assert not checkpoint.wanted.is_set()
        second = await driver.put(batch(EVENT_B))
        assert checkpoint.wanted.is_set()
        assert worker.clickhouse.inserts == []  # the agent went on: no insert awaited
        await checkpoint.commit()  # what the service does when asked
        await driver.until(lambda: second.message.acked)
        assert not checkpoint.wanted.is_set()

    assert acked_when_inserting == [[False, False]]
    assert first.message.acked
    assert len(worker.clickhouse.rows("events")) == 2
    assert worker.engine.checkpoint.acked == 2


async def test_too_large_record_is_dead_lettered_with_a_prefix_its_size_and_hash(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(max_record_bytes=1024)
    record = batch(*[EVENT_A] * 400)
    assert len(record) > 16 * 1024
    async with drive(worker, "intake-events") as driver:
        await driver.put(record, key=None, partition=0)

    assert worker.engine.counters["events.valid"] == 0
    assert worker.engine.counters["events.dead"] == 1
    [sent] = worker.dead_letters()
    assert sent.key is None
    assert record.startswith(sent.value)
    assert len(sent.value) <= 1024
    [letter] = letters(worker)
    assert (letter.reason, letter.source_index) == (DeadLetterReason.TOO_LARGE, None)
    assert letter.original_size == len(record)
    assert letter.original_sha256 == hashlib.sha256(record).hexdigest()


async def test_a_tombstone_is_dead_lettered_and_the_agent_goes_on(
    worker: Worker, drive: Callable[..., Any]
) -> None:
    async with drive(worker, "intake-events") as driver:
        await driver.put(None, key=b"user-1", partition=2)
        await driver.put(batch(EVENT_A))

    assert worker.engine.counters["events.dead"] == 1
    assert worker.engine.counters["events.valid"] == 1
    [sent] = worker.dead_letters()
    assert (sent.key, sent.value, sent.partition) == (b"user-1", b"", 2)
    [letter] = letters(worker)
    assert (letter.reason, letter.source_index) == (DeadLetterReason.TOMBSTONE, None)


async def test_poison_record_becomes_a_dead_letter_not_a_crash(
    worker: Worker, drive: Callable[..., Any]
) -> None:
    huge = {**EVENT_A, "attributes": {"n": 10**30}}
    async with drive(worker, "intake-events") as driver:
        await driver.put(batch(huge, EVENT_B))
        await driver.put(batch(EVENT_C))

    assert worker.engine.counters["events.valid"] == 2
    assert [letter.source_index for letter in letters(worker)] == [0]


async def test_addresses_reach_clickhouse_only_as_keyed_hashes(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(pii_key="k" * 32)
    update = {
        "user_id": "u",
        "tags": {"Email": "ana@example.com", "Phone": "+15550100", "Plan": "gold"},
        "timestamp": 0,
    }
    async with drive(worker, "intake-tag_updates") as driver:
        await driver.put(batch(update))

    await worker.flush()
    [row] = worker.clickhouse.rows("tag_updates")
    assert "ana@example.com" not in row["tags"]
    assert "+15550100" not in row["tags"]
    tags = orjson.loads(row["tags"])
    assert tags["Plan"] == "gold"
    expected = hmac.new(b"k" * 32, b"ana@example.com", hashlib.sha256).hexdigest()
    assert tags["Email"] == f"hmac-sha256:{expected}"


async def test_addresses_stay_in_clear_when_the_setting_says_so(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(pii_clear_text=True)
    update = {"user_id": "u", "tags": {"Email": "ana@example.com"}, "timestamp": 0}
    async with drive(worker, "intake-tag_updates") as driver:
        await driver.put(batch(update))
    await worker.flush()
    [row] = worker.clickhouse.rows("tag_updates")
    assert orjson.loads(row["tags"]) == {"Email": "ana@example.com"}


async def test_a_dead_letter_in_simulated_time_is_stamped_with_the_clock(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    # The data of a simulated run lives in simulated time: a dead letter stamped with
    # the wall clock could not be put beside the rows around it.
    from datetime import UTC, datetime

    worker = make_worker(clock="simulated")
    tick = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    worker.engine.clock.learn(tick)
    async with drive(worker, "intake-events") as driver:
        await driver.put(b"not json", key=b"user-1", partition=0)
    [letter] = letters(worker)
    assert letter.at == tick
