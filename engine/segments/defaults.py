"""Tag values as a user's state keeps them, and the default tags the engine fills from
events (first install, last application open, language, country, versions...)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.time import to_ms
from schemas.events import Event
from schemas.values import DateValue, PriceValue, Value, VersionValue

JSON = Any
"""A value orjson encodes as is: dicts with str keys, lists, str, int, float, bool."""

LAST_APPLICATION_OPEN = "Last Application Open"
FIRST_INSTALL = "First Install"
APPLICATION_OPEN = "ApplicationOpen"
COUNTRY = "Country"
LANGUAGE = "Language"

# Default tags filled from event attributes: tag -> (attribute names read, is a version).
DEFAULT_ATTRIBUTE_TAGS: dict[str, tuple[tuple[str, ...], bool]] = {
    "Language": (("Language", "language"), False),
    "Country": (("Country", "country"), False),
    "City": (("City", "city"), False),
    "Time zone": (("Time zone", "timezone"), False),
    "Application Version": (("Application Version", "app_version"), True),
    "Device Model": (("Device Model", "device_model"), False),
    "OS Version": (("OS Version", "os_version"), True),
}
DEFAULT_ATTRIBUTES = frozenset(
    attribute for attributes, _ in DEFAULT_ATTRIBUTE_TAGS.values() for attribute in attributes
)
"""Every event attribute a default tag is filled from."""
VERSION_TAGS = frozenset(
    name for name, (_, is_version) in DEFAULT_ATTRIBUTE_TAGS.items() if is_version
)
DEFAULT_TAGS = frozenset({LAST_APPLICATION_OPEN, FIRST_INSTALL, *DEFAULT_ATTRIBUTE_TAGS})


def stored(value: Value) -> JSON:
    """A typed value as kept in the state: dates as ``{"d": ms}``, prices as
    ``{"p": "19.90", "c": "EUR"}``, versions as ``{"v": [w, x, y, z]}``; plain values
    as they are."""
    if isinstance(value, DateValue):
        return {"d": to_ms(value.value)}
    if isinstance(value, PriceValue):
        return {"p": str(value.amount), "c": value.currency}
    if isinstance(value, VersionValue):
        return {"v": list(value.parts)}
    if isinstance(value, list):
        return list(value)
    return value


_VERSION_TEXT = re.compile(r"\d+(\.\d+){0,3}")


def version_of(text: str) -> JSON:
    """A plain string as a version where it reads as one (default version tags)."""
    if _VERSION_TEXT.fullmatch(text):
        return {"v": list(VersionValue(type="version", value=text).parts)}
    return text


def _default_tag_value(raw: Value, is_version: bool) -> JSON | None:
    if is_version:
        if isinstance(raw, VersionValue):
            return stored(raw)
        return version_of(raw) if isinstance(raw, str) else None
    return raw if isinstance(raw, str) else None


def default_tags(
    tags: Mapping[str, JSON], seen: int | None, event: Event, at: int
) -> Mapping[str, JSON]:
    """``tags`` with the default tags ``event`` (at instant ``at``) fills; ``seen``: the
    newest event instant before it. The very mapping when nothing changes."""
    changes: dict[str, JSON] = {}
    first = tags.get(FIRST_INSTALL)
    if not (isinstance(first, dict) and "d" in first and first["d"] <= at):
        changes[FIRST_INSTALL] = {"d": at}
    if event.name == APPLICATION_OPEN:
        last = tags.get(LAST_APPLICATION_OPEN)
        if not (isinstance(last, dict) and "d" in last and last["d"] >= at):
            changes[LAST_APPLICATION_OPEN] = {"d": at}
    # An event older than the newest one seen must not undo a newer language or version.
    given = event.attributes
    if given and (seen is None or at >= seen) and not DEFAULT_ATTRIBUTES.isdisjoint(given):
        for tag, (attributes, is_version) in DEFAULT_ATTRIBUTE_TAGS.items():
            for attribute in attributes:
                raw = given.get(attribute)
                if raw is not None:
                    value = _default_tag_value(raw, is_version)
                    if value is not None and tags.get(tag) != value:
                        changes[tag] = value
                    break
    return {**tags, **changes} if changes else tags
