"""The stored form of a user record (``engine.record.UserRecord``): a JSON object with
compact keys, the same as every earlier version wrote, so a data directory keeps
working. Only this module knows the keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.record import EMPTY_RECORD, JourneyPart, SegmentPart, UserRecord

STATE, MEMBERS, OFFSETS, TIMER, JOURNEYS = "s", "m", "o", "d", "j"
"""Segment state, memberships, applied offsets, next timer (ms), journey state."""


def decode(value: Mapping[str, Any] | None) -> UserRecord:
    """A stored value as a record (None or empty: a user not seen yet)."""
    if not value:
        return EMPTY_RECORD
    get = value.get
    return tuple.__new__(
        UserRecord,
        (
            tuple.__new__(SegmentPart, (None, get(STATE))),
            get(MEMBERS, {}),
            get(OFFSETS, {}),
            get(TIMER),
            _journeys(get(JOURNEYS)),
        ),
    )


def encode(record: UserRecord) -> dict[str, Any]:
    """The record as stored: the journey state only when there is one."""
    value = {
        STATE: record.segments.stored(),
        MEMBERS: record.members,
        OFFSETS: record.offsets,
        TIMER: record.timer,
    }
    if record.journeys is not None:
        journeys = record.journeys.stored()
        if journeys is not None:
            value[JOURNEYS] = journeys
    return value


def _journeys(stored: Any) -> JourneyPart | None:
    return tuple.__new__(JourneyPart, (None, stored)) if stored else None
