"""Typed values shared by tags and event attributes, and the timestamp type.

Plain JSON scalars and lists map to integer, float, boolean, string and list values.
Dates, prices and versions have no JSON type of their own, so they are written as a
small object with a ``type`` field, e.g. ``{"type": "price", "amount": "9.99",
"currency": "EUR"}``; that keeps them apart from strings that merely look like dates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)

_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


CONTRACT = ConfigDict(frozen=True, extra="forbid", val_temporal_unit="milliseconds")
"""Configuration of every contract model: immutable, no unknown fields, and numeric
timestamps read as epoch milliseconds (never seconds, whatever their size)."""


# ClickHouse's DateTime64 range; an instant outside it could not be projected.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_END = datetime(2300, 1, 1, tzinfo=UTC)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # text without an offset is read as UTC
    # Compared as instants near the edges, so an offset cannot carry a time across
    # them; in between, the year alone decides (an aware comparison costs ~1 µs).
    if not 1900 < moment.year < 2299 and not _EARLIEST <= moment < _END:
        raise ValueError(f"timestamp outside years 1900..2299 (UTC): {moment}")
    if moment.utcoffset():
        return moment.astimezone(UTC)
    return moment  # already UTC (pydantic's own UTC tzinfo): the hot path, no copy


# ISO 8601 text and epoch milliseconds are parsed by pydantic-core (in Rust), which
# also refuses booleans: JSON ``true`` is not a time.
Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
"""An instant, always aware and in UTC after validation."""

_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp, config=CONTRACT)


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 text or epoch milliseconds -> an aware UTC datetime."""
    return _TIMESTAMP.validate_python(value)


class _Typed(BaseModel):
    model_config = CONTRACT


class DateValue(_Typed):
    type: Literal["date"]
    value: Timestamp


class PriceValue(_Typed):
    type: Literal["price"]
    amount: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")


class VersionValue(_Typed):
    type: Literal["version"]
    value: str

    @field_validator("value")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not _VERSION.fullmatch(value):
            raise ValueError(f"version must be w.x.y.z with 1 to 4 numeric parts, got {value!r}")
        return value

    @property
    def parts(self) -> tuple[int, int, int, int]:
        """Components padded to four, so 1.2 compares equal to 1.2.0.0."""
        numbers = [int(part) for part in self.value.split(".")]
        padded = [*numbers, 0, 0, 0][:4]
        return padded[0], padded[1], padded[2], padded[3]


TypedValue = Annotated[DateValue | PriceValue | VersionValue, Field(discriminator="type")]


def _no_big_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("integer outside 64 bits; send it as a string to keep every digit")
    return value


# Integers are 64-bit, as ClickHouse and JSON consumers downstream hold them; a larger
# one is refused rather than silently rounded to a float.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# NaN and infinities are no JSON: re-encoded they would become null, which the next
# reader refuses (or worse, takes).
Float = Annotated[float, BeforeValidator(_no_big_int), Field(allow_inf_nan=False)]
Scalar = bool | Int64 | Float | str
Value = Scalar | list[Scalar] | TypedValue
"""A tag value or an event attribute value."""

Name = Annotated[str, Field(min_length=1, max_length=128)]
UserId = Annotated[str, Field(min_length=1, max_length=256)]
