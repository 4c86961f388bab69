"""Pure intake: one input record -> valid models and dead letters with their source."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from engine.codecs import InputCodec
from engine.intake import Source, intake
from schemas import DeadLetterReason, Event, TagUpdate

NOW = datetime(2024, 5, 1, 10, 0, 3, 512000, tzinfo=UTC)
SOURCE = Source(topic="reach.events", partition=2, offset=41, key=b"user-0001")
EVENTS = InputCodec(Event, 1_000_000)
GOOD = {"user_id": "user-0001", "name": "ApplicationOpen", "timestamp": "2024-05-01T10:00:00Z"}


def test_valid_record_gives_its_model_and_no_dead_letters() -> None:
    result = intake(EVENTS, orjson.dumps(GOOD), SOURCE, NOW)
    assert result.valid == [Event.model_validate(GOOD)]
    assert result.dead == []


def test_rejected_record_becomes_a_dead_letter_with_its_source() -> None:
    raw = b'{"user_id": "user-0001", "name": "ApplicationOpen"}'
    result = intake(EVENTS, raw, SOURCE, NOW)
    assert result.valid == []
    [letter] = result.dead
    assert letter.raw == raw
    assert letter.key == b"user-0001"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "reach.events",
        2,
        41,
    )
    assert letter.source_index is None
    assert letter.reason is DeadLetterReason.MISSING_FIELD
    assert "timestamp" in letter.detail
    assert letter.at == NOW


def test_mixed_batch_splits_into_valid_items_and_indexed_dead_letters() -> None:
    items = [GOOD, {"user_id": 1}, dict(GOOD, name="Second"), "x"]
    result = intake(EVENTS, orjson.dumps(items), Source("reach.events", 0, 7, None), NOW)
    assert [event.name for event in result.valid] == ["ApplicationOpen", "Second"]
    assert [(d.source_index, d.reason) for d in result.dead] == [
        (1, DeadLetterReason.WRONG_TYPE),  # the first problem found: user_id is a number
        (3, DeadLetterReason.NOT_AN_OBJECT),
    ]
    assert [d.raw for d in result.dead] == [b'{"user_id":1}', b'"x"']
    assert all(d.key is None and d.source_offset == 7 for d in result.dead)


def test_dead_letters_survive_the_header_round_trip() -> None:
    result = intake(EVENTS, b"not json", SOURCE, NOW)
    [letter] = result.dead
    assert type(letter).from_record(letter.raw, letter.key, letter.headers()) == letter


def test_intake_works_for_any_contract() -> None:
    codec = InputCodec(TagUpdate, 1_000_000)
    raw = b'[{"user_id": "u", "op": "explode", "tags": {"a": 1}, "timestamp": 0}]'
    result = intake(codec, raw, Source("reach.tags", 1, 0, None), NOW)
    assert result.valid == []
    [letter] = result.dead
    assert (letter.source_topic, letter.source_index, letter.reason) == (
        "reach.tags",
        0,
        DeadLetterReason.UNKNOWN_OPERATION,
    )
