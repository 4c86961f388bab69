"""Rows of the user dimension: a profile record of the engine (``engine.profiles``) ->
one ``user_profiles`` row and one ``user_profile_changes`` row per tag it changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine import devices, profiles
from engine.segments.defaults import COUNTRY, FIRST_INSTALL, LANGUAGE, LAST_APPLICATION_OPEN
from projections.addresses import CLEAR, AddressMask
from projections.rows import Origin, Row, Table
from schemas.journey_nodes import Channel

CHANNELS = tuple(channel.value for channel in Channel)

TEXT_COLUMNS = {COUNTRY: "country", LANGUAGE: "language", "Time zone": "timezone"}
"""Default tags with a text column of their own."""
TYPED = frozenset({*TEXT_COLUMNS, FIRST_INSTALL, LAST_APPLICATION_OPEN, "Application Version"})
"""The tags with a column of their own: left out of the ``tags`` map."""

USER_PROFILES = Table(
    "user_profiles",
    (
        "user_id",
        "version",
        "updated_at",
        "cause",
        "country",
        "language",
        "timezone",
        "first_install",
        "last_application_open",
        "application_version",
        *(f"opted_out_{channel}" for channel in CHANNELS),
        *(f"reachable_{channel}" for channel in CHANNELS),
        "tags",
        "pii",
        "source_partition",
        "source_offset",
    ),
)
USER_PROFILE_CHANGES = Table(
    "user_profile_changes",
    (
        "user_id",
        "tag",
        "value",
        "number",
        "removed",
        "at",
        "version",
        "cause",
        "source_partition",
        "source_offset",
    ),
)


def profile_rows(
    record: dict[str, Any], origin: Origin, addresses: AddressMask = CLEAR
) -> tuple[Row, list[Row]]:
    """The ``user_profiles`` row and the ``user_profile_changes`` rows of one profile
    record (trusted: written by the engine). ``addresses``: how PII tags are projected
    (the worker passes its keyed mask)."""
    user = record["user_id"]
    at = datetime.fromisoformat(record["at"])
    cause = record.get("cause", "")
    version = record["version"]
    tags: dict[str, Any] = record["tags"]
    remembered: list[str] = record.get("opted_out", [])
    other: dict[str, str] = {}
    pii: dict[str, str] = {}
    text = profiles.text
    is_address = addresses.is_address
    for name, value in tags.items():
        if is_address(name):
            pii[name] = text(_masked(addresses, name, value))
        elif name not in TYPED:
            other[name] = value if type(value) is str else text(value)
    flags: dict[str, int] = record.get("channels", {})
    opted = {c for c in CHANNELS if devices.opted_out(c, flags.get(c, 0), tags, remembered)}
    reachable = {c for c in CHANNELS if devices.reachable(c, flags.get(c, 0), tags, remembered)}
    version_tag = tags.get("Application Version")
    profile = (
        user,
        version,
        at,
        cause,
        *(_text(tags.get(tag)) for tag in TEXT_COLUMNS),
        profiles.instant(tags.get(FIRST_INSTALL)),
        profiles.instant(tags.get(LAST_APPLICATION_OPEN)),
        _text(version_tag),
        *(channel in opted for channel in CHANNELS),
        *(channel in reachable for channel in CHANNELS),
        other,
        pii,
        origin.partition,
        origin.offset,
    )
    changes: list[Row] = []
    for name in record.get("changed", ()):
        value = tags[name]
        is_pii = addresses.is_address(name)
        shown = _masked(addresses, name, value) if is_pii else value
        number = None if is_pii else profiles.number(value)
        changes.append(
            (
                user,
                name,
                profiles.text(shown),
                number,
                False,
                at,
                version,
                cause,
                origin.partition,
                origin.offset,
            )
        )
    for name in record.get("removed", ()):
        changes.append(
            (user, name, "", None, True, at, version, cause, origin.partition, origin.offset)
        )
    return profile, changes


def _masked(addresses: AddressMask, name: str, value: Any) -> Any:
    return addresses.mask({name: value})[name]


def _text(value: Any) -> str:
    return "" if value is None else profiles.text(value)
