"""Whether a user can be reached on a channel: the one rule the journeys' steps
(``engine.journeys.mover``) and the user profile (``engine.profiles``, projected to
ClickHouse's ``user_profiles``) both apply.

A user is reachable on a channel when they have not opted out of it (the channels in
their ``Unsubscribed`` tag, and those the journeys remember from ``unsubscribed``
feedback) and have an address for it (``schemas.journey_nodes.ADDRESS_TAGS``; in-app
messages need none)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.journey_nodes import ADDRESS_TAGS, OPT_OUT_TAG


def address(tags: Mapping[str, Any], channel: str) -> str | None:
    """The user's address on ``channel``, if it has one and they have it."""
    tag = ADDRESS_TAGS.get(channel)  # type: ignore[call-overload]
    value = tags.get(tag) if tag else None
    return value if isinstance(value, str) and value else None


def opted_out(tags: Mapping[str, Any], remembered: Iterable[str] = ()) -> set[str]:
    """The channels the user opted out of: their ``Unsubscribed`` tag's and the
    ``remembered`` ones (the journeys' record of ``unsubscribed`` feedback)."""
    opted = set(remembered)
    tagged = tags.get(OPT_OUT_TAG)
    if isinstance(tagged, list):
        opted |= {str(item) for item in tagged}
    return opted


def reachable(
    tags: Mapping[str, Any], remembered: Iterable[str], channel: str, address: bool = True
) -> bool:
    """Not opted out of ``channel`` (and, with ``address``, an address on it)."""
    return _reachable(tags, opted_out(tags, remembered), channel, address)


def reachable_channels(
    tags: Mapping[str, Any], remembered: Iterable[str], channels: Iterable[str]
) -> set[str]:
    """Those of ``channels`` the user is ``reachable`` on (with an address)."""
    opted = opted_out(tags, remembered)
    return {channel for channel in channels if _reachable(tags, opted, channel, True)}


def _reachable(tags: Mapping[str, Any], opted: set[str], channel: str, address: bool) -> bool:
    if channel in opted:
        return False
    if not address:
        return True
    tag = ADDRESS_TAGS.get(channel)  # type: ignore[call-overload]
    return tag is None or bool(tags.get(tag))
