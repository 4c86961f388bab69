"""User profiles: what the engine tells the analysts' side when a user's tags change.

The segment state keeps every user's tags (``engine.segments.state``), and only the
engine applies their semantics (``increment``, ``append``, ``remove``, the default
tags filled from events): so the engine, not a projection, says what changed. When an
input changes a user's tags, or the channels the journeys remember them opting out of,
the processor emits one profile record (``profile_record``): the user's tags as they
are now (in the state's stored form), the names of the tags that changed or went, the
remembered opt-outs, the instant, the input that did it (``cause``) and a version that
grows with every input applied to the user. ``projections.profiles`` turns it into a
``user_profiles`` row and ``user_profile_changes`` rows.

``text`` and ``number`` render a stored tag value for those tables: dates as ISO 8601
(UTC, milliseconds, ``Z``), prices as ``"50.99 EUR"``, versions as their four parts
(``"2.1.0.0"``), lists and other structures as JSON, booleans as ``true``/``false``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from engine import devices
from engine.record import UserRecord
from engine.time import from_ms

Record = dict[str, Any]

_MISSING: Any = object()


def profile_record(
    user: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    opted_out: Sequence[str],
    opted_out_changed: bool,
    at: datetime,
    cause: str,
    version: int,
) -> Record | None:
    """The profile record of a user whose tags went from ``before`` to ``after`` (None:
    none changed, and neither did the remembered ``opted_out`` channels)."""
    changed = [name for name, value in after.items() if before.get(name, _MISSING) != value]
    removed = [name for name in before if name not in after]
    if not (changed or removed or opted_out_changed):
        return None
    record: Record = {
        "user_id": user,
        "at": at,
        "cause": cause,
        "version": version,
        "tags": after if type(after) is dict else dict(after),
        "changed": changed,
    }
    if removed:
        record["removed"] = removed
    if opted_out:
        record["opted_out"] = list(opted_out)
    return record


def profile_outputs(
    user: str,
    record: UserRecord,
    new: UserRecord,
    tags: Mapping[str, Any],
    opted_out: list[str] | None,
    now: datetime,
    cause: str,
    devices_changed: bool = False,
) -> list[Record]:
    """The processor's profile output for a move from ``record`` to ``new`` whose tags
    (now ``tags``), remembered opt-outs (``opted_out``; None: unchanged) or device
    registry (``devices_changed``) may have changed: none, or one record. The record
    carries the registry's per-channel summary (``channels``) when the user has one, so
    the projection applies the one reachability rule (``engine.devices.reachable``)."""
    if opted_out is None:
        journey_state = new.journeys.state if new.journeys is not None else None
        remembered = journey_state.opted_out if journey_state is not None else []
    else:
        remembered = opted_out
    profile = profile_record(
        user,
        record.segments.tags,
        tags,
        remembered,
        opted_out is not None or devices_changed,
        now,
        cause,
        version_of(new.offsets),
    )
    if profile is None:
        return []
    if new.devices is not None:
        channels = devices.summary(new.devices)
        if channels:
            profile["channels"] = channels
    return [profile]


def version_of(offsets: Mapping[str, int]) -> int:
    """A user's profile version: the sum of the offsets of the input records applied to
    them, one per input topic. It grows with every input applied, and a replay of the
    same inputs gives the same versions."""
    return sum(offsets.values())


def text(value: Any) -> str:
    """A stored tag value as text (see the module's docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return orjson.dumps(value).decode()
    if isinstance(value, dict):
        if len(value) == 1 and "d" in value and isinstance(value["d"], int):
            return iso(value["d"])
        if value.keys() == {"p", "c"}:
            return f"{value['p']} {value['c']}"
        if value.keys() == {"v"} and isinstance(value["v"], list):
            return ".".join(str(part) for part in value["v"])
    return orjson.dumps(value).decode()


def number(value: Any) -> float | None:
    """A stored tag value as a number, where it is one: numbers, and a price's amount."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict) and value.keys() == {"p", "c"}:
        try:
            return float(value["p"])
        except ValueError:
            return None
    return None


def instant(value: Any) -> datetime | None:
    """A stored date value as a datetime (None: not a date)."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("d"), int):
        return from_ms(value["d"])
    return None


def iso(ms: int) -> str:
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
