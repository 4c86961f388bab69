"""The contract models: events, tag updates, feedback, dead letters, derived ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    DeadLetter,
    DeadLetterReason,
    Event,
    Feedback,
    FeedbackStatus,
    PriceValue,
    TagOp,
    TagUpdate,
)
from schemas.dead_letters import HEADER_PREFIX
from schemas.identity import content_id

AT = datetime(2024, 5, 1, 10, 0, 3, 512000, tzinfo=UTC)
BASE_EVENT: dict[str, Any] = {
    "user_id": "user-0001",
    "name": "Purchase",
    "timestamp": "2024-05-01T10:00:00Z",
    "attributes": {
        "sku": "A-1",
        "quantity": 2,
        "price": {"type": "price", "amount": "19.90", "currency": "EUR"},
        "shipped": {"type": "date", "value": "2024-05-03"},
    },
}


def event_id(**changes: Any) -> str:
    return Event.model_validate({**BASE_EVENT, **changes}).event_id


# Derived ids -----------------------------------------------------------------


def test_content_id_is_32_hex_digits_and_deterministic() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", content_id("x", 1, {"b": 1, "a": 2}))
    assert content_id("x", {"b": 1, "a": 2}) == content_id("x", {"a": 2, "b": 1})
    assert content_id("x", 1) != content_id("x", 2)


def test_event_id_is_derived_from_the_content() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", event_id())
    assert event_id() == event_id()


@pytest.mark.parametrize(
    "same",
    [
        {"timestamp": "2024-05-01T12:00:00+02:00"},
        {"timestamp": 1714557600000},
        {"timestamp": "2024-05-01 10:00:00"},
        {"attributes": dict(reversed(list(BASE_EVENT["attributes"].items())))},
        {
            "attributes": {
                **BASE_EVENT["attributes"],
                "shipped": {"value": "2024-05-03T02:00:00+02:00", "type": "date"},
            }
        },
    ],
    ids=["offset", "epoch-ms", "naive", "attribute-order", "typed-date-offset"],
)
def test_event_id_ignores_how_the_same_content_is_written(same: dict[str, Any]) -> None:
    assert event_id(**same) == event_id()


@pytest.mark.parametrize(
    "different",
    [
        {"user_id": "user-0002"},
        {"name": "Refund"},
        {"timestamp": "2024-05-01T10:00:00.001Z"},
        {"attributes": {}},
        {"attributes": {**BASE_EVENT["attributes"], "quantity": 3}},
        {"attributes": {**BASE_EVENT["attributes"], "quantity": 2.0}},  # 2 and 2.0 differ
        {"attributes": {**BASE_EVENT["attributes"], "quantity": "2"}},
        {
            "attributes": {
                **BASE_EVENT["attributes"],
                "price": {"type": "price", "amount": "19.90", "currency": "USD"},
            }
        },
    ],
)
def test_event_id_differs_when_the_content_differs(different: dict[str, Any]) -> None:
    assert event_id(**different) != event_id()


def test_explicit_event_id_is_kept() -> None:
    assert event_id(event_id="mine-1") == "mine-1"


@pytest.mark.parametrize("bad_id", ["", "x" * 129])
def test_explicit_event_id_must_be_1_to_128_characters(bad_id: str) -> None:
    with pytest.raises(ValidationError, match="event_id"):
        event_id(event_id=bad_id)


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
attributes = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(scalars, st.lists(scalars, max_size=3)),
    max_size=4,
)
events = st.fixed_dictionaries(
    {
        "user_id": st.text(min_size=1, max_size=12),
        "name": st.text(min_size=1, max_size=12),
        "timestamp": st.integers(min_value=-2_208_988_800_000, max_value=10_413_791_999_999),
        "attributes": attributes,
    }
)


@given(events)
def test_event_id_is_stable_through_a_json_round_trip(data: dict[str, Any]) -> None:
    event = Event.model_validate(data)
    # What a consumer re-reading the projected event would validate, minus the id.
    again = Event.model_validate_json(event.model_dump_json(exclude={"event_id"}))
    assert again.event_id == event.event_id
    assert again == event


@given(events, events)
def test_different_events_get_different_ids(a: dict[str, Any], b: dict[str, Any]) -> None:
    first, second = Event.model_validate(a), Event.model_validate(b)
    same_content = first.model_dump(exclude={"event_id"}) == second.model_dump(
        exclude={"event_id"}
    ) and all(  # 1 == 1.0 == True in Python; the id tells them apart
        type(first.attributes[k]) is type(second.attributes[k]) for k in first.attributes
    )
    if not same_content:
        assert first.event_id != second.event_id


def test_event_refuses_unknown_fields_and_is_frozen() -> None:
    with pytest.raises(ValidationError, match="screen"):
        Event.model_validate({**BASE_EVENT, "screen": "home"})
    event = Event.model_validate(BASE_EVENT)
    with pytest.raises(ValidationError):
        event.name = "other"


def test_event_attributes_keep_typed_values() -> None:
    event = Event.model_validate(BASE_EVENT)
    assert isinstance(event.attributes["price"], PriceValue)
    assert event.attributes["sku"] == "A-1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", ""),
        ("user_id", "u" * 257),
        ("name", ""),
        ("name", "n" * 129),
        ("user_id", 42),
        ("attributes", []),
    ],
)
def test_event_field_rules(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        Event.model_validate({**BASE_EVENT, field: value})


# Tag updates -----------------------------------------------------------------

TS = "2024-05-01T10:00:00Z"


@pytest.mark.parametrize(
    ("op", "tags", "expected"),
    [
        (None, {"Language": "fr"}, {"Language": "fr"}),
        (
            "set",
            {
                "Plan": "pro",
                "Score": 1.5,
                "Beta": True,
                "Since": {"type": "date", "value": "2024-01-01"},
            },
            None,
        ),
        ("unset", ["Coupon", "Cart Value"], {"Coupon": None, "Cart Value": None}),
        ("unset", {"Coupon": None}, {"Coupon": None}),
        ("unset", {"Coupon": "ignored"}, {"Coupon": "ignored"}),
        ("increment", {"Sessions": 1, "Spent EUR": -4.5}, {"Sessions": 1, "Spent EUR": -4.5}),
        ("append", {"Interests": ["cinema", "chess"]}, {"Interests": ["cinema", "chess"]}),
        ("append", {"Lucky": 7}, {"Lucky": 7}),
        ("remove", {"Interests": "jazz"}, {"Interests": "jazz"}),
    ],
)
def test_tag_update_accepts(op: str | None, tags: Any, expected: dict[str, Any] | None) -> None:
    data = {"user_id": "u", "tags": tags, "timestamp": TS}
    if op is not None:
        data["op"] = op
    update = TagUpdate.model_validate(data)
    assert update.op is TagOp(op or "set")
    if expected is not None:
        assert update.tags == expected


@pytest.mark.parametrize(
    ("op", "tags", "message"),
    [
        ("set", {}, "at least 1"),
        ("set", {"Coupon": None}, "'set' needs a value"),
        (None, {"Coupon": None}, "'set' needs a value"),
        ("increment", {"Sessions": "1"}, "'increment' needs a number"),
        ("increment", {"Sessions": True}, "'increment' needs a number"),
        ("increment", {"Sessions": [1]}, "'increment' needs a number"),
        ("append", {"Interests": True}, "'append' needs a string or number"),
        ("append", {"Interests": [True]}, "'append' needs a string or number"),
        ("remove", {"Interests": {"type": "version", "value": "1.2"}}, "'remove' needs"),
        ("remove", {"Interests": None}, "'remove' needs a value"),
        ("explode", {"Sessions": 1}, "op"),
        ("unset", [1, 2], "tags"),
        ("unset", [], "tags"),
        ("set", ["Coupon"], "tags"),
    ],
)
def test_tag_update_refuses(op: str | None, tags: Any, message: str) -> None:
    data = {"user_id": "u", "tags": tags, "timestamp": TS}
    if op is not None:
        data["op"] = op
    with pytest.raises(ValidationError, match=re.escape(message)):
        TagUpdate.model_validate(data)


def test_update_id_depends_on_op_and_tags_not_on_writing() -> None:
    def update_id(**changes: Any) -> str:
        data = {"user_id": "u", "op": "increment", "tags": {"a": 1, "b": 2}, "timestamp": TS}
        return TagUpdate.model_validate({**data, **changes}).update_id

    assert update_id() == update_id(tags={"b": 2, "a": 1}, timestamp=1714557600000)
    assert update_id() != update_id(op="set")
    assert update_id() != update_id(tags={"a": 1, "b": 3})
    assert update_id() != update_id(user_id="v")
    assert update_id(update_id="mine") == "mine"


def test_unset_by_list_and_by_object_are_the_same_update() -> None:
    by_list = TagUpdate.model_validate(
        {"user_id": "u", "op": "unset", "tags": ["a", "b"], "timestamp": TS}
    )
    by_object = TagUpdate.model_validate(
        {"user_id": "u", "op": "unset", "tags": {"a": None, "b": None}, "timestamp": TS}
    )
    assert by_list == by_object


# Feedback --------------------------------------------------------------------

FEEDBACK: dict[str, Any] = {
    "command_id": "cmd-1",
    "user_id": "u",
    "status": "delivered",
    "timestamp": TS,
}


def test_feedback_defaults_and_status() -> None:
    feedback = Feedback.model_validate(FEEDBACK)
    assert feedback.status is FeedbackStatus.DELIVERED
    assert feedback.channel is None
    assert feedback.reason is None
    assert re.fullmatch(r"[0-9a-f]{32}", feedback.feedback_id)


def test_feedback_id_ignores_user_channel_and_reason() -> None:
    base = Feedback.model_validate(FEEDBACK).feedback_id
    assert (
        Feedback.model_validate(
            {**FEEDBACK, "user_id": "v", "channel": "push", "reason": "x"}
        ).feedback_id
        == base
    )
    assert Feedback.model_validate({**FEEDBACK, "status": "opened"}).feedback_id != base
    assert Feedback.model_validate({**FEEDBACK, "command_id": "cmd-2"}).feedback_id != base
    assert Feedback.model_validate({**FEEDBACK, "timestamp": 0}).feedback_id != base


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "read"), ("command_id", ""), ("channel", "c" * 65), ("reason", "r" * 1025)],
)
def test_feedback_field_rules(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        Feedback.model_validate({**FEEDBACK, field: value})


# Dead letters ----------------------------------------------------------------


def letter(**changes: Any) -> DeadLetter:
    data: dict[str, Any] = {
        "raw": b'{"user_id": 42}',
        "key": b"user-0001",
        "source_topic": "reach.events",
        "source_partition": 3,
        "source_offset": 1234,
        "source_index": None,
        "reason": DeadLetterReason.WRONG_TYPE,
        "detail": "user_id: Input should be a valid string",
        "at": AT,
    }
    return DeadLetter(**{**data, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"source_index": 0},
        {"source_index": 41},
        {"key": None},
        {"raw": b"\xff\xfe not utf-8"},
        {"detail": "tags.é: ünïcode; (record): a; b"},
        {"detail": ""},
        {"at": datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))},
    ]
    + [{"reason": reason} for reason in DeadLetterReason],
)
def test_dead_letter_headers_round_trip(changes: dict[str, Any]) -> None:
    original = letter(**changes)
    headers = original.headers()
    assert all(name.startswith(HEADER_PREFIX) for name, _ in headers)
    assert all(isinstance(value, bytes) for _, value in headers)
    assert DeadLetter.from_record(original.raw, original.key, headers) == original


def test_dead_letter_headers_are_documented_text() -> None:
    headers = dict(letter(source_index=2).headers())
    assert headers == {
        "reach.dlq.reason": b"wrong_type",
        "reach.dlq.detail": b"user_id: Input should be a valid string",
        "reach.dlq.source.topic": b"reach.events",
        "reach.dlq.source.partition": b"3",
        "reach.dlq.source.offset": b"1234",
        "reach.dlq.source.index": b"2",
        "reach.dlq.at": b"2024-05-01T10:00:03.512000+00:00",
        "reach.dlq.original.size": b"",
        "reach.dlq.original.sha256": b"",
    }
    assert dict(letter().headers())["reach.dlq.source.index"] == b""


def test_from_record_ignores_foreign_headers_and_needs_its_own() -> None:
    original = letter(source_index=0)
    headers = [("traceparent", b"00-abc"), *original.headers(), ("x-other", b"\xff")]
    assert DeadLetter.from_record(original.raw, original.key, headers) == original
    without_reason = [h for h in original.headers() if h[0] != "reach.dlq.reason"]
    with pytest.raises(KeyError):
        DeadLetter.from_record(original.raw, original.key, without_reason)
    with pytest.raises(ValueError, match="not_a_reason"):
        DeadLetter.from_record(
            original.raw,
            original.key,
            [*without_reason, ("reach.dlq.reason", b"not_a_reason")],
        )


@given(
    raw=st.binary(max_size=64),
    key=st.none() | st.binary(max_size=16),
    topic=st.text(min_size=1, max_size=20),
    partition=st.integers(min_value=0, max_value=1023),
    offset=st.integers(min_value=0, max_value=2**62),
    index=st.none() | st.integers(min_value=0, max_value=50_000),
    reason=st.sampled_from(list(DeadLetterReason)),
    detail=st.text(max_size=200),
    at=st.datetimes(  # naive bounds; hypothesis attaches UTC
        min_value=datetime(1971, 1, 1, tzinfo=UTC).replace(tzinfo=None),
        max_value=datetime(2200, 1, 1, tzinfo=UTC).replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
)
def test_any_dead_letter_round_trips_through_headers(
    raw: bytes,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    index: int | None,
    reason: DeadLetterReason,
    detail: str,
    at: datetime,
) -> None:
    original = DeadLetter(
        raw=raw,
        key=key,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_index=index,
        reason=reason,
        detail=detail,
        at=at,
    )
    assert DeadLetter.from_record(raw, key, original.headers()) == original


def test_reach_channels_are_the_journey_channels() -> None:
    from typing import get_args

    from schemas.journey_nodes import Channel
    from schemas.segments import ReachChannel

    assert set(get_args(ReachChannel)) == {str(channel) for channel in Channel}
