"""Decoding input records into contract models or classified rejections."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.codecs import TOO_LARGE_PREFIX_BYTES, Decoded, InputCodec
from schemas import DeadLetterReason, Event, Feedback, TagUpdate

R = DeadLetterReason
LIMIT = 4096
EVENTS = InputCodec(Event, LIMIT)
TAGS = InputCodec(TagUpdate, LIMIT)
FEEDBACK = InputCodec(Feedback, LIMIT)

GOOD = {"user_id": "user-0001", "name": "ApplicationOpen", "timestamp": "2024-05-01T10:00:00Z"}


def event(**changes: Any) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def without(field: str) -> bytes:
    return orjson.dumps({k: v for k, v in GOOD.items() if k != field})


def attribute(value: Any) -> bytes:
    return event(attributes={"a": value})


# One realistic bad record per reason, for each input contract.
BAD_RECORDS: list[tuple[InputCodec[Any], bytes, DeadLetterReason]] = [
    (EVENTS, b'{"user_id": "user-0001", "name": "ApplicationOpen"', R.NOT_JSON),
    (EVENTS, b"user-0001,ApplicationOpen,2024-05-01", R.NOT_JSON),
    (EVENTS, b"", R.NOT_JSON),
    (EVENTS, b"\xff\xfe{}", R.NOT_JSON),  # not UTF-8
    (EVENTS, b'"ApplicationOpen"', R.NOT_AN_OBJECT),
    (EVENTS, b"42", R.NOT_AN_OBJECT),
    (EVENTS, b"null", R.NOT_AN_OBJECT),
    (EVENTS, without("timestamp"), R.MISSING_FIELD),
    (EVENTS, without("user_id"), R.MISSING_FIELD),
    (EVENTS, event(user_id=42), R.WRONG_TYPE),
    (EVENTS, event(attributes=[]), R.WRONG_TYPE),
    (EVENTS, attribute(None), R.WRONG_TYPE),
    (EVENTS, attribute([[1]]), R.WRONG_TYPE),
    (EVENTS, attribute({"nested": 1}), R.WRONG_TYPE),
    (EVENTS, attribute({"type": "colour", "value": "red"}), R.WRONG_TYPE),
    (EVENTS, attribute({"type": "date", "value": "soon"}), R.INVALID_VALUE),
    (EVENTS, attribute({"type": "price", "amount": "abc", "currency": "EUR"}), R.INVALID_VALUE),
    (EVENTS, event(screen="home"), R.UNKNOWN_FIELD),
    (EVENTS, event(timestamp="next tuesday"), R.BAD_TIMESTAMP),
    (EVENTS, event(timestamp=True), R.BAD_TIMESTAMP),
    (EVENTS, event(timestamp=-2_208_988_800_001), R.BAD_TIMESTAMP),
    (EVENTS, event(timestamp="2300-01-01T00:00:00Z"), R.BAD_TIMESTAMP),
    (EVENTS, event(timestamp="0001-01-01T00:00:00+01:00"), R.BAD_TIMESTAMP),
    (EVENTS, event(name=""), R.INVALID_VALUE),
    (EVENTS, event(user_id="u" * 257), R.INVALID_VALUE),
    (EVENTS, event(event_id=""), R.INVALID_VALUE),
    (
        TAGS,
        b'{"user_id": "u", "op": "explode", "tags": {"a": 1}, "timestamp": 0}',
        R.UNKNOWN_OPERATION,
    ),
    (TAGS, b'{"user_id": "u", "op": 1, "tags": {"a": 1}, "timestamp": 0}', R.UNKNOWN_OPERATION),
    (
        TAGS,
        b'{"user_id": "u", "op": "increment", "tags": {"a": "1"}, "timestamp": 0}',
        R.INVALID_VALUE,
    ),
    (TAGS, b'{"user_id": "u", "tags": {"a": null}, "timestamp": 0}', R.INVALID_VALUE),
    (TAGS, b'{"user_id": "u", "op": "set", "tags": {}, "timestamp": 0}', R.INVALID_VALUE),
    (TAGS, b'{"user_id": "u", "op": "set", "tags": ["a"], "timestamp": 0}', R.WRONG_TYPE),
    (TAGS, b'{"user_id": "u", "tags": {"a": 1}}', R.MISSING_FIELD),
    (TAGS, b'{"user_id": "u", "tags": {"a": 1}, "timestamp": "x"}', R.BAD_TIMESTAMP),
    (
        FEEDBACK,
        b'{"command_id": "c", "user_id": "u", "status": "read", "timestamp": 0}',
        R.INVALID_VALUE,
    ),
    (FEEDBACK, b'{"user_id": "u", "status": "opened", "timestamp": 0}', R.MISSING_FIELD),
    (
        FEEDBACK,
        b'{"command_id": "c", "user_id": "u", "status": "opened", "timestamp": 0, "campaign": "x"}',
        R.UNKNOWN_FIELD,
    ),
]


GOOD_ITEMS: dict[str, dict[str, Any]] = {
    "Event": GOOD,
    "TagUpdate": {"user_id": "u", "tags": {"a": 1}, "timestamp": 0},
    "Feedback": {"command_id": "c", "user_id": "u", "status": "opened", "timestamp": 0},
}


def ids(case: tuple[InputCodec[Any], bytes, DeadLetterReason]) -> str:
    codec, raw, reason = case
    return f"{codec.model.__name__}-{reason.value}-{raw[:40]!r}"


@pytest.mark.parametrize(("codec", "raw", "reason"), BAD_RECORDS, ids=[ids(c) for c in BAD_RECORDS])
def test_single_bad_record_is_rejected_whole_with_its_reason(
    codec: InputCodec[Any], raw: bytes, reason: DeadLetterReason
) -> None:
    decoded = codec.decode(raw)
    assert decoded.items == []
    [rejected] = decoded.rejected
    assert rejected.reason is reason, rejected.detail
    assert rejected.index is None
    assert rejected.raw == raw  # the original bytes, untouched
    assert 0 < len(rejected.detail) <= 2000


def test_every_reason_is_covered_by_a_realistic_record() -> None:
    shown = {reason for _, _, reason in BAD_RECORDS} | {R.TOO_LARGE, R.TOMBSTONE}
    # The engine's own refusal, of a valid record: tests/unit/test_devices.py.
    shown.add(R.TOO_MANY_DEVICES)
    assert shown == set(DeadLetterReason)


def test_a_tombstone_is_rejected_as_such() -> None:
    [rejected] = EVENTS.decode(None).rejected
    assert (rejected.index, rejected.reason, rejected.raw) == (None, R.TOMBSTONE, b"")
    assert rejected.detail == "record has no value (a tombstone)"


@pytest.mark.parametrize(
    ("codec", "raw", "reason"),
    [case for case in BAD_RECORDS if case[2] not in (R.NOT_JSON, R.TOO_LARGE)],
    ids=[ids(c) for c in BAD_RECORDS if c[2] not in (R.NOT_JSON, R.TOO_LARGE)],
)
def test_bad_item_inside_a_batch_costs_its_neighbours_nothing(
    codec: InputCodec[Any], raw: bytes, reason: DeadLetterReason
) -> None:
    good = GOOD_ITEMS[codec.model.__name__]
    first, last = dict(good, user_id="first"), dict(good, user_id="last")
    batch = b"[" + orjson.dumps(first) + b"," + raw + b"," + orjson.dumps(last) + b"]"

    decoded = codec.decode(batch)

    assert [item.user_id for item in decoded.items] == ["first", "last"]
    [rejected] = decoded.rejected
    assert (rejected.index, rejected.reason) == (1, reason), rejected.detail
    # The item alone, re-serialised as compact JSON: same content as sent.
    assert orjson.loads(rejected.raw) == orjson.loads(raw)
    assert rejected.raw == orjson.dumps(orjson.loads(raw))


def test_mixed_batch_keeps_valid_items_in_order_and_indexes_each_bad_one() -> None:
    items = [
        dict(GOOD, name="a"),
        "not an object",
        dict(GOOD, name="b"),
        dict(GOOD, timestamp=True),
        dict(GOOD, name="c"),
        [dict(GOOD, name="nested")],
        {k: v for k, v in GOOD.items() if k != "name"},
        dict(GOOD, name="d"),
    ]
    decoded = EVENTS.decode(orjson.dumps(items))
    assert [item.name for item in decoded.items] == ["a", "b", "c", "d"]
    assert [(r.index, r.reason) for r in decoded.rejected] == [
        (1, R.NOT_AN_OBJECT),
        (3, R.BAD_TIMESTAMP),
        (5, R.NOT_AN_OBJECT),
        (6, R.MISSING_FIELD),
    ]
    assert [orjson.loads(r.raw) for r in decoded.rejected] == [items[i] for i in (1, 3, 5, 6)]


def test_compact_batch_items_keep_their_exact_bytes() -> None:
    bad = b'{"user_id":"u","name":"n","timestamp":"2024-05-01T10:00:00Z","x":1}'
    decoded = EVENTS.decode(b"[" + event() + b"," + bad + b"]")
    assert decoded.rejected[0].raw == bad


def test_valid_batch_is_decoded_in_order() -> None:
    items = [dict(GOOD, name=f"n{i}") for i in range(20)]
    decoded = EVENTS.decode(orjson.dumps(items))
    assert decoded.rejected == []
    assert [item.name for item in decoded.items] == [f"n{i}" for i in range(20)]


@pytest.mark.parametrize("prefix", [b" ", b"\n", b"\r\n\t  "])
def test_whitespace_before_the_bracket_is_still_a_batch(prefix: bytes) -> None:
    batch = prefix + b"[" + event() + b', {"user_id": 1}]'
    decoded = EVENTS.decode(batch)
    assert len(decoded.items) == 1
    assert [(r.index, r.reason) for r in decoded.rejected] == [(1, R.WRONG_TYPE)]


@pytest.mark.parametrize("raw", [b"[]", b" [ ] "])
def test_empty_batch_is_nothing(raw: bytes) -> None:
    assert EVENTS.decode(raw) == Decoded()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" + event() + b",",  # truncated
        b"[" + event() + b"] trailing",
        b"[" + event() + b", {oops}]",
    ],
)
def test_batch_that_is_not_json_is_rejected_whole(raw: bytes) -> None:
    decoded = EVENTS.decode(raw)
    assert decoded.items == []
    [rejected] = decoded.rejected
    assert (rejected.index, rejected.reason, rejected.raw) == (None, R.NOT_JSON, raw)


def test_too_large_uses_max_record_bytes() -> None:
    raw = event(attributes={"pad": "x" * 200})
    assert InputCodec(Event, len(raw)).decode(raw).items  # exactly at the limit: fine
    decoded = InputCodec(Event, len(raw) - 1).decode(raw)
    assert decoded.items == []
    [rejected] = decoded.rejected
    assert (rejected.index, rejected.reason, rejected.raw) == (None, R.TOO_LARGE, raw[:-1])
    assert str(len(raw)) in rejected.detail
    assert str(len(raw) - 1) in rejected.detail
    assert rejected.original_size == len(raw)
    assert rejected.original_sha256 == hashlib.sha256(raw).hexdigest()


def test_a_too_large_record_keeps_a_bounded_prefix() -> None:
    raw = b"[" + b" " * 3_000_000 + b"]"
    [rejected] = InputCodec(Event, 2_000_000).decode(raw).rejected
    assert rejected.raw == raw[:TOO_LARGE_PREFIX_BYTES]
    assert rejected.original_size == len(raw)


def test_too_large_batch_is_rejected_whole_even_with_valid_items() -> None:
    batch = orjson.dumps([GOOD] * 100)
    decoded = InputCodec(Event, len(batch) - 1).decode(batch)
    assert decoded.items == []
    assert [(r.index, r.reason) for r in decoded.rejected] == [(None, R.TOO_LARGE)]


def test_detail_names_the_field_and_lists_at_most_five_problems() -> None:
    raw = orjson.dumps({"user_id": 1, "name": 2, "timestamp": "x", "a": 1, "b": 2, "c": 3})
    [rejected] = EVENTS.decode(raw).rejected
    assert rejected.detail.count("; ") == 4
    assert "user_id: Input should be a valid string" in rejected.detail


def test_detail_is_capped_at_2000_characters() -> None:
    # Names over 128 characters are refused, and each error's path repeats the name.
    long_names = {("k" * 1500) + str(i): 1 for i in range(3)}
    raw = orjson.dumps({**GOOD, "attributes": long_names})
    [rejected] = InputCodec(Event, 1_000_000).decode(raw).rejected
    assert rejected.reason is R.INVALID_VALUE
    assert len(rejected.detail) == 2000


def test_derived_id_noise_is_left_out_of_the_detail() -> None:
    [rejected] = EVENTS.decode(event(name="")).rejected
    assert "event_id" not in rejected.detail


def test_price_with_a_bad_currency_names_the_currency() -> None:
    [rejected] = EVENTS.decode(
        attribute({"type": "price", "amount": "1", "currency": "eur"})
    ).rejected
    assert "currency" in rejected.detail.split(";")[0]


@pytest.mark.parametrize(
    "value",
    [
        {"type": "version", "value": "v1"},
        {"type": "price", "amount": "1", "currency": "eur"},
        {"type": "price", "amount": "lots", "currency": "EUR"},
        {"type": "date", "value": "someday"},
    ],
)
def test_malformed_typed_value_is_invalid_value(value: dict[str, str]) -> None:
    [rejected] = EVENTS.decode(attribute(value)).rejected
    assert rejected.reason is R.INVALID_VALUE


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
def test_huge_integer_attribute_is_rejected_not_raised(batched: bool) -> None:
    raw = b'{"user_id":"u","name":"n","timestamp":0,"attributes":{"n":' + b"9" * 30 + b"}}"
    decoded = EVENTS.decode(b"[" + raw + b"]" if batched else raw)
    assert decoded.items == []
    assert len(decoded.rejected) == 1


def test_validate_items_checks_parsed_items_one_by_one() -> None:
    decoded = EVENTS.validate_items([GOOD, {"user_id": "u"}, 7])
    assert len(decoded.items) == 1
    assert [(r.index, r.reason) for r in decoded.rejected] == [
        (1, R.MISSING_FIELD),
        (2, R.NOT_AN_OBJECT),
    ]


events = st.fixed_dictionaries(
    {
        "user_id": st.text(min_size=1, max_size=10),
        "name": st.text(min_size=1, max_size=10),
        "timestamp": st.one_of(
            st.integers(min_value=0, max_value=4_102_444_800_000),
            st.floats(min_value=0, max_value=4e12),
            st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T12:00:00.5+02:00"]),
        ),
        "attributes": st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.one_of(
                st.integers(min_value=-(2**63), max_value=2**63 - 1),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=5),
                st.booleans(),
                st.builds(
                    lambda a: {"type": "price", "amount": a, "currency": "EUR"},
                    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
                ),
                st.builds(
                    lambda v: {"type": "version", "value": v},
                    st.sampled_from(["1", "1.2", "10.0.3.4"]),
                ),
            ),
            max_size=3,
        ),
    }
)


@given(st.lists(events, min_size=1, max_size=5))
def test_item_by_item_fallback_decodes_like_the_fast_path(items: list[dict[str, Any]]) -> None:
    """A bad neighbour sends the batch down the item-by-item path: same results."""
    fast = InputCodec(Event, 1_000_000).decode(orjson.dumps(items))
    slow = InputCodec(Event, 1_000_000).decode(orjson.dumps([*items, {"bad": True}]))
    assert fast.rejected == []
    assert slow.items == fast.items
    assert [item.event_id for item in slow.items] == [item.event_id for item in fast.items]
    assert [r.index for r in slow.rejected] == [len(items)]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_numbers_json_cannot_carry_are_refused(number: bytes) -> None:
    # pydantic's parser reads them; the contracts do not take them (the HTTP door
    # validates with the same types, so it refuses them too).
    raw = b'{"user_id": "u", "name": "n", "timestamp": 0, "attributes": {"a": ' + number + b"}}"
    [rejected] = EVENTS.decode(raw).rejected
    assert "finite number" in rejected.detail
    [rejected] = EVENTS.decode(b"[" + raw + b"]").rejected
    assert rejected.index == 0
