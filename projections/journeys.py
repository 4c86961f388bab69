"""Rows of the journeys' send-commands and journey-activity records.

A record on either topic is a JSON array of one partition's items (``SendCommand`` /
``JourneyActivity`` fields), as on the memberships topic. The engine wrote them, so the
rows are built straight from the JSON where that is safe (``activity_row``,
``command_row``), through the models otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from projections import rows
from schemas.commands import Activity, identity_command

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
ZERO = timedelta(0)


class Record(Protocol):
    """A record as a consumer reads it (a Faust event, say)."""

    @property
    def value(self) -> bytes | None: ...


RecordRows = Callable[[Record, rows.Origin], list[rows.Row]]
"""Rows of one record; raises KeyError, TypeError or ValueError for a record it cannot
read."""


def item_rows(
    topic: str,
    model: type[M],
    to_row: Callable[[M, rows.Origin], rows.Row],
    trusted: Callable[[dict[str, Any], rows.Origin], rows.Row] | None = None,
) -> RecordRows:
    """Rows of a record's valid items. The engine wrote them, so ``trusted`` builds rows
    straight from the JSON, checking only what an insert needs; anything unexpected
    sends the record through the models, item by item: a value the table cannot take
    would fail the insert, and the sink retries a failed insert forever. An invalid
    item is logged and left out; the others stay."""

    def to_rows(record: Record, origin: rows.Origin) -> list[rows.Row]:
        items = orjson.loads(record.value or b"null")
        if not isinstance(items, list):
            raise TypeError(f"expected a JSON array, got {type(items).__name__}")
        if trusted is not None:
            try:
                return [trusted(item, origin) for item in items]
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # validated below, item by item
        found = []
        for index, item in enumerate(items):
            try:
                found.append(to_row(model.model_validate(item), origin))
            except ValidationError as error:
                position = f"{origin.partition}:{origin.offset}[{index}]"
                log.warning("%s %s not projected: %s", topic, position, error)
        return found

    return to_rows


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError("not a string")
    return value


def _number(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _instant(value: Any) -> datetime:
    global _last_instant
    if value == _last_instant[0] and type(value) is str:
        return _last_instant[1]  # rows come in runs of one instant (a step, a sweep)
    moment = datetime.fromisoformat(_text(value))
    if moment.utcoffset() != ZERO or not 1900 < moment.year < 2299:
        raise ValueError("not a UTC instant the tables hold")
    _last_instant = (value, moment)
    return moment


_last_instant: tuple[str, datetime] = ("", datetime(1970, 1, 1, tzinfo=UTC))


ACTIVITIES = frozenset(Activity)


def activity_row(item: dict[str, Any], origin: rows.Origin) -> rows.Row:
    """``rows.journey_activity_row`` of an item the engine wrote, without the model."""
    activity = _text(item["activity"])
    # Every row of this version names its trigger; rows of earlier versions do not.
    trigger = item.get("trigger")
    base = 11 if trigger is None else 12
    optional = _optional(item) if len(item) != base else _NONE
    if activity not in ACTIVITIES or len(item) != base + len(optional):
        raise ValueError("not an activity the engine writes")
    at = _instant(item["at"])
    visit = _number(item["visit"])
    if visit < 0:
        raise ValueError("not a visit's step count")
    parts = (
        _text(item["journey_id"]),
        _number(item["journey_version"]),
        _text(item["run"]),
        _text(item["user_id"]),
        _text(item["step"]),
        activity,
        _text(item["detail"]),
        _text(item["command_id"]),
        visit,
        _text(item["cause"]),
    )
    # The same parts as JourneyActivity.activity_id, so both paths give one row id:
    # content_id's bytes, without its options and fallbacks (no dicts, no models here).
    command = identity_command(activity, parts[7])
    canonical = orjson.dumps(("activity", *parts[:7], command, *parts[8:]))
    identity = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    if not optional:  # most rows: no dimension known, no A/B split, no input instant
        return (
            identity,
            *parts[:5],
            activity,
            at,
            *parts[6:],
            *origin,
            "",
            "",
            "",
            "",
            at,
            "" if trigger is None else _text(trigger),
            "",
            0,
        )
    offset = optional.get("offset")
    return (
        identity,
        *parts[:5],
        activity,
        at,
        *parts[6:],
        *origin,
        _text(optional.get("country", "")),
        _text(optional.get("language", "")),
        _text(optional.get("timezone", "")),
        _text(optional.get("variant", "")),
        _event_at(optional, at),
        "" if trigger is None else _text(trigger),
        _text(optional.get("source", "")),
        0 if offset is None else _offset(offset),
    )


OPTIONAL = ("country", "language", "timezone", "variant", "event_at", "source", "offset")
"""Fields the engine leaves out of a row when they have no value (``Mover.row``)."""


def _offset(value: Any) -> int:
    offset = _number(value)
    if offset < 0:
        raise ValueError("not an offset")
    return offset


_NONE: dict[str, Any] = {}


def _optional(item: dict[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in OPTIONAL if name in item}


def _event_at(optional: dict[str, Any], at: datetime) -> datetime:
    value = optional.get("event_at")
    if value is None:
        return at
    moment = datetime.fromisoformat(_text(value))
    if moment.utcoffset() != ZERO or not 1900 < moment.year < 2299:
        raise ValueError("not a UTC instant the tables hold")
    return moment


def command_row(item: dict[str, Any], origin: rows.Origin) -> rows.Row:
    """``rows.send_command_row`` of a command the engine wrote, without the model."""
    optional: dict[str, Any] = {
        name: item[name] for name in ("variant", "event_at") if name in item
    }
    if (
        len(item) != 14 + len(optional)
        or type(item["properties"]) is not dict
        or type(item["tags"]) is not dict
    ):
        raise ValueError("not a command the engine writes")
    preset, url = item["preset"], item["url"]
    at = _instant(item["at"])
    return (
        _text(item["command_id"]),
        _text(item["user_id"]),
        _text(item["channel"]),
        "" if preset is None else _text(preset),
        "" if url is None else _text(url),
        _text(item["journey_id"]),
        _number(item["journey_version"]),
        _text(item["run"]),
        _text(item["step"]),
        _number(item["visit"]),
        orjson.dumps(item["properties"]).decode(),
        at,
        *origin,
        *rows.tag_dimensions(item["tags"]),
        _text(optional.get("variant", "")),
        _event_at(optional, at),
    )
