"""Timestamps and typed values (schemas/values.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas import DateValue, Event, PriceValue, VersionValue
from schemas.values import Value, parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAY_1 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
# The accepted range: years 1900 to 2299 (ClickHouse DateTime64), in epoch ms.
FIRST_MS = -2_208_988_800_000  # 1900-01-01T00:00:00Z
END_MS = 10_413_792_000_000  # 2300-01-01T00:00:00Z, excluded


def is_utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("2024-05-01T10:00:00Z", MAY_1),
        ("2024-05-01T10:00:00z", MAY_1),
        ("2024-05-01T10:00:00+00:00", MAY_1),
        ("2024-05-01T12:00:00+02:00", MAY_1),
        ("2024-05-01T05:30:00-04:30", MAY_1),
        ("2024-05-01T10:00:00", MAY_1),  # naive text is UTC
        ("2024-05-01 10:00", MAY_1),  # a space for the T, no seconds
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),  # a date alone: midnight UTC
        ("2024-05-01T10:00:00.123456Z", MAY_1.replace(microsecond=123456)),
        (1714557600000, MAY_1),  # epoch milliseconds
        (1714557600123, MAY_1.replace(microsecond=123000)),
        (1714557600000.5, MAY_1.replace(microsecond=500)),  # fractions kept to the µs
        (0, EPOCH),
        (-1, EPOCH - timedelta(milliseconds=1)),  # before 1970 is negative
        (1714557600, datetime(1970, 1, 20, 20, 15, 57, 600000, tzinfo=UTC)),  # never seconds
        (FIRST_MS, datetime(1900, 1, 1, tzinfo=UTC)),
        (END_MS - 1, datetime(2300, 1, 1, tzinfo=UTC) - timedelta(milliseconds=1)),
        (MAY_1.replace(tzinfo=None), MAY_1),  # a naive datetime object is UTC too
        (datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), MAY_1),
    ],
)
def test_parse_timestamp_accepts_iso_text_and_epoch_ms(
    given_value: Any, expected: datetime
) -> None:
    parsed = parse_timestamp(given_value)
    assert parsed == expected
    assert is_utc(parsed)


@pytest.mark.parametrize(
    "refused",
    [
        True,  # JSON true is not a time
        False,
        None,
        "",
        "next tuesday",
        "2024-02-30",  # well-formed, but no such day
        "2024-13-01",
        " 2024-05-01T10:00:00Z",
        FIRST_MS - 1,  # before 1900
        END_MS,  # 2300 and later
        1e20,
        float("nan"),
        float("inf"),
        "1899-12-31T23:59:59Z",
        "2300-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # once an OverflowError, not a refusal
        "9999-12-31T23:00:00-05:00",
        [2024, 5, 1],
        {"value": "2024-05-01"},
    ],
)
def test_parse_timestamp_refuses(refused: Any) -> None:
    with pytest.raises(ValidationError):
        parse_timestamp(refused)


@pytest.mark.parametrize("text", ["2299-12-31T23:30:00-01:00", "1900-01-01T00:30:00+01:00"])
def test_range_applies_to_the_utc_instant(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_timestamp(text)


@given(st.integers(min_value=FIRST_MS, max_value=END_MS - 1))
def test_epoch_ms_is_exact_to_the_millisecond(ms: int) -> None:
    parsed = parse_timestamp(ms)
    assert parsed == EPOCH + timedelta(milliseconds=ms)
    assert is_utc(parsed)


@given(
    st.datetimes(
        # Hypothesis takes naive bounds and attaches the time zones itself.
        min_value=datetime(1900, 1, 2, tzinfo=UTC).replace(tzinfo=None),
        max_value=datetime(2299, 12, 30, tzinfo=UTC).replace(tzinfo=None),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_iso_text_round_trips_to_the_same_instant(moment: datetime) -> None:
    parsed = parse_timestamp(moment.isoformat())
    assert parsed == moment
    assert is_utc(parsed)


# Typed values ---------------------------------------------------------------


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY"])
def test_price_accepts_three_capital_letters(currency: str) -> None:
    price = PriceValue(type="price", amount=Decimal("19.90"), currency=currency)
    assert price.currency == currency


@pytest.mark.parametrize("currency", ["eur", "Eur", "EU", "EURO", "E1R", "", " EUR", "EUR\n"])
def test_price_refuses_other_currencies(currency: str) -> None:
    with pytest.raises(ValidationError, match="currency"):
        PriceValue.model_validate({"type": "price", "amount": "1", "currency": currency})


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("19.90", Decimal("19.90")),
        ("-0.5", Decimal("-0.5")),
        (3, Decimal(3)),
        ("1e3", Decimal("1e3")),
    ],
)
def test_price_amount_is_an_exact_decimal(amount: Any, expected: Decimal) -> None:
    price = PriceValue.model_validate({"type": "price", "amount": amount, "currency": "EUR"})
    assert price.amount == expected
    assert str(price.amount) == str(expected)  # "19.90" keeps its trailing zero


@pytest.mark.parametrize(
    ("version", "parts"),
    [
        ("1", (1, 0, 0, 0)),
        ("1.2", (1, 2, 0, 0)),
        ("1.2.3", (1, 2, 3, 0)),
        ("1.2.3.4", (1, 2, 3, 4)),
        ("10.0.0.20", (10, 0, 0, 20)),
        ("04.012", (4, 12, 0, 0)),
    ],
)
def test_version_parts_are_padded_to_four(version: str, parts: tuple[int, ...]) -> None:
    assert VersionValue(type="version", value=version).parts == parts


def test_versions_compare_part_by_part() -> None:
    def parts(text: str) -> tuple[int, int, int, int]:
        return VersionValue(type="version", value=text).parts

    assert parts("1.2") == parts("1.2.0.0")
    assert parts("1.10") > parts("1.9")
    assert parts("2") > parts("1.99.99.99")


@pytest.mark.parametrize(
    "version", ["", "v1", "1.", ".1", "1..2", "1.2.3.4.5", "1.a", "1.2 ", " 1", "1,2", "-1"]
)
def test_version_refuses_anything_but_one_to_four_numeric_parts(version: str) -> None:
    with pytest.raises(ValidationError, match="version"):
        VersionValue(type="version", value=version)


def test_version_refuses_a_trailing_newline() -> None:
    with pytest.raises(ValidationError):
        VersionValue(type="version", value="1.2\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-03", datetime(2024, 5, 3, tzinfo=UTC)),
        ("2024-05-03T02:00:00+02:00", datetime(2024, 5, 3, tzinfo=UTC)),
        (1714694400000, datetime(2024, 5, 3, tzinfo=UTC)),
    ],
)
def test_date_value_is_a_utc_timestamp(value: Any, expected: datetime) -> None:
    date = DateValue.model_validate({"type": "date", "value": value})
    assert date.value == expected
    assert is_utc(date.value)


@pytest.mark.parametrize(
    "data",
    [
        {"type": "date", "value": "soon"},
        {"type": "date", "value": True},
        {"type": "date"},
        {"type": "date", "value": "2024-05-03", "tz": "UTC"},  # no unknown fields
        {"type": "price", "amount": "abc", "currency": "EUR"},
        {"type": "price", "amount": "1"},
    ],
)
def test_typed_values_refuse_malformed_objects(data: dict[str, Any]) -> None:
    models: dict[str, type[BaseModel]] = {"date": DateValue, "price": PriceValue}
    model = models[data["type"]]
    with pytest.raises(ValidationError):
        model.model_validate(data)


VALUE: TypeAdapter[Any] = TypeAdapter(Value)


@pytest.mark.parametrize(
    ("json_value", "expected_type"),
    [
        (b"true", bool),
        (b"42", int),
        (b"0.5", float),
        (b'"2024-05-03"', str),  # text that looks like a date stays text
        (b'"1.2.3"', str),
        (b'["a", 1]', list),
        (b'{"type": "date", "value": "2024-05-03"}', DateValue),
        (b'{"type": "price", "amount": "9.99", "currency": "EUR"}', PriceValue),
        (b'{"type": "version", "value": "4.12.1"}', VersionValue),
    ],
)
def test_json_values_map_to_their_types(json_value: bytes, expected_type: type) -> None:
    assert type(VALUE.validate_json(json_value)) is expected_type


@pytest.mark.parametrize(
    "json_value", [b"null", b"[[1]]", b"[null]", b'{"a": 1}', b'{"type": "colour", "value": "red"}']
)
def test_json_values_refuse_nesting_null_and_unknown_objects(json_value: bytes) -> None:
    with pytest.raises(ValidationError):
        VALUE.validate_json(json_value)


def test_typed_values_are_frozen() -> None:
    price = PriceValue(type="price", amount=Decimal(1), currency="EUR")
    with pytest.raises(ValidationError):
        price.currency = "USD"


def test_event_timestamp_uses_the_same_rules() -> None:
    event = Event.model_validate_json(
        b'{"user_id": "u", "name": "n", "timestamp": "2024-05-01T12:00:00+02:00"}'
    )
    assert event.timestamp == MAY_1
    assert is_utc(event.timestamp)
