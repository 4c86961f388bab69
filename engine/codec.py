"""The stored form of a user record (``engine.record.UserRecord``): a JSON object with
compact keys, the same as every earlier version wrote, so a data directory keeps
working. Only this module knows the keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.devices import Registry
from engine.record import EMPTY_RECORD, JourneyPart, SegmentPart, UserRecord

STATE, MEMBERS, OFFSETS, TIMER, JOURNEYS, DEVICES = "s", "m", "o", "d", "j", "v"
"""Segment state, memberships, applied offsets, next timer (ms), journey state, device
registry (``engine.devices.Registry.to_json``: absent in values stored before it)."""


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
            _devices(get(DEVICES)),
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
    if record.devices is not None:
        devices = record.devices.to_json()
        if devices:
            value[DEVICES] = devices
    return value


def _devices(stored: Any) -> Registry | None:
    return Registry.from_json(stored) if stored else None


def _journeys(stored: Any) -> JourneyPart | None:
    return tuple.__new__(JourneyPart, (None, stored)) if stored else None
