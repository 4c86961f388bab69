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

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 text or epoch milliseconds -> an aware UTC datetime.

    Text without an offset is read as UTC. Booleans are refused (JSON ``true`` is not
    a time), and so are numbers outside years 1970..9999.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        raise ValueError("timestamp must be ISO 8601 text or epoch milliseconds, not a boolean")
    elif isinstance(value, int | float):
        if not 0 <= value < 253402300800000:
            raise ValueError(f"epoch milliseconds out of range: {value}")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    else:
        raise ValueError("timestamp must be ISO 8601 text or epoch milliseconds")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
"""An instant, always aware and in UTC after validation."""


class _Typed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
        if not _VERSION.match(value):
            raise ValueError(f"version must be w.x.y.z with 1 to 4 numeric parts, got {value!r}")
        return value

    @property
    def parts(self) -> tuple[int, int, int, int]:
        """Components padded to four, so 1.2 compares equal to 1.2.0.0."""
        numbers = [int(part) for part in self.value.split(".")]
        padded = (numbers + [0, 0, 0])[:4]
        return padded[0], padded[1], padded[2], padded[3]


TypedValue = Annotated[DateValue | PriceValue | VersionValue, Field(discriminator="type")]
Scalar = bool | int | float | str
Value = Scalar | list[Scalar] | TypedValue
"""A tag value or an event attribute value."""

Name = Annotated[str, Field(min_length=1, max_length=128)]
UserId = Annotated[str, Field(min_length=1, max_length=256)]
