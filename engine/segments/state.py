"""What the segment engine keeps per user, and the pure folds that update it.

A user's state is a handful of plain dicts and lists, kept in memory in the very form
it is stored in (``to_json`` and ``from_json`` copy nothing). It holds:

- tags, as stored JSON (see ``defaults.stored``), including the default tags the
  engine fills;
- one counter (engine/segments/counters.py) per event name, and per (event, attribute
  filters) signature that the current definitions count (``keys.Counted``);
- one counter per kind of message fact (received / opened / clicked, any message, per
  channel, and per journey or step that definitions ask about);
- the newest event instant, hashes of the last few inputs (to skip re-sends), and the
  instant each time-dependent segment may next change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from engine.segments.counters import DEFAULT_HORIZON, Counter, count_into
from engine.segments.defaults import JSON, VERSION_TAGS, default_tags, stored, version_of
from engine.segments.keys import NOTHING_COUNTED, Counted, message_key
from engine.time import to_ms
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.segments import MessageAction
from schemas.tags import TagOp, TagUpdate

_NONE: Mapping[str, Any] = MappingProxyType({})
"""The empty part every state without it shares (read-only, so sharing is safe)."""
RECENT_INPUTS = 8
"""How many input ids a user's state remembers, so that a re-sent record is skipped."""


# --- the state ------------------------------------------------------------------------


# A NamedTuple, not a frozen dataclass: two or three are built per input, and a frozen
# dataclass's __init__ (object.__setattr__ per field) cost ~0.8 µs each, a tuple ~0.1.
class UserState(NamedTuple):
    """One user's state. Never mutated: the ``apply_*`` functions return a new one that
    shares what did not change. The dicts are shared with ``to_json``'s result and
    ``from_json``'s argument too, so neither side may mutate them (nor the defaults)."""

    tags: Mapping[str, JSON] = _NONE
    events: Mapping[str, Counter] = _NONE
    filtered: Mapping[str, Counter] = _NONE
    messages: Mapping[str, Counter] = _NONE
    seen: int | None = None  # the newest event instant, ms
    recent: tuple[int, ...] = ()  # hashes of the last inputs, newest last
    timers: Mapping[str, int] = _NONE  # segment -> ms it may change
    channels: Mapping[str, int] = _NONE
    """Channel -> the device registry's flags for it (``engine.devices.summary``), for
    reachability conditions."""

    def to_json(self) -> dict[str, JSON]:
        """A plain dict for orjson; empty parts are left out."""
        data: dict[str, JSON] = {}
        for name, part in (
            ("t", self.tags),
            ("e", self.events),
            ("f", self.filtered),
            ("m", self.messages),
            ("n", self.timers),
            ("c", self.channels),
        ):
            if part:
                data[name] = part
        if self.seen is not None:
            data["s"] = self.seen
        if self.recent:
            data["r"] = list(self.recent)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, JSON] | None) -> UserState:
        if not data:
            return EMPTY
        get = data.get
        return _new_state(
            (
                get("t", _NONE),
                get("e", _NONE),
                get("f", _NONE),
                get("m", _NONE),
                get("s"),
                tuple(get("r", ())),
                get("n", _NONE),
                get("c", _NONE),
            )
        )

    @staticmethod
    def stored_tags(data: Mapping[str, JSON] | None) -> Mapping[str, JSON]:
        """``from_json(data).tags`` without building the state."""
        tags: Mapping[str, JSON] = data.get("t", {}) if data else {}
        return tags

    @staticmethod
    def stored_timers(data: Mapping[str, JSON] | None) -> Mapping[str, int]:
        """``from_json(data).timers`` without building the state."""
        timers: Mapping[str, int] = data.get("n", {}) if data else {}
        return timers

    def with_(
        self,
        *,
        tags: Mapping[str, JSON] | None = None,
        events: Mapping[str, Counter] | None = None,
        filtered: Mapping[str, Counter] | None = None,
        messages: Mapping[str, Counter] | None = None,
        seen: int | None = None,
        recent: tuple[int, ...] | None = None,
        timers: Mapping[str, int] | None = None,
        channels: Mapping[str, int] | None = None,
    ) -> UserState:
        """A copy with the given parts replaced."""
        return _new_state(
            (
                self.tags if tags is None else tags,
                self.events if events is None else events,
                self.filtered if filtered is None else filtered,
                self.messages if messages is None else messages,
                self.seen if seen is None else seen,
                self.recent if recent is None else recent,
                self.timers if timers is None else timers,
                self.channels if channels is None else channels,
            )
        )


def _new_state(parts: tuple[Any, ...]) -> UserState:
    """A state from its eight parts, in field order: without the NamedTuple's own
    ``__new__`` (Python-level, it doubles the cost)."""
    return tuple.__new__(UserState, parts)


EMPTY = UserState()


def apply_event(
    state: UserState,
    event: Event,
    counted: Counted = NOTHING_COUNTED,
    *,
    now: datetime | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
) -> UserState:
    """Count ``event``, and fill the default tags it carries.

    Buckets are settled relative to ``now`` (the event's own time when not given), so
    a late event lands in the right bucket and a future-dated one cannot push real
    history out of the horizon.
    """
    at = to_ms(event.timestamp)
    reference = at if now is None else to_ms(now)
    name = event.name
    events = dict(state.events)
    events[name] = count_into(events.get(name), at, reference, horizon)

    filtered = state.filtered
    wanted = counted.filters.get(name, ())
    if wanted or (filtered and not filtered.keys() <= counted.keys):
        keys = counted.keys
        filtered = {key: value for key, value in filtered.items() if key in keys}
        for item in wanted:
            if item.matches(event):
                filtered[item.key] = count_into(filtered.get(item.key), at, reference, horizon)

    return state.with_(
        tags=default_tags(state.tags, state.seen, event, at),
        events=events,
        filtered=filtered,
        seen=at if state.seen is None else max(state.seen, at),
    )


def _is_number(value: JSON) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def apply_tag_update(state: UserState, update: TagUpdate) -> UserState:
    """Apply a tag update. ``increment`` starts a missing tag from 0 and ``append`` from
    an empty list; on a tag holding another type, both (and ``remove``) change nothing.
    A list keeps each item once, in the order first appended."""
    tags = dict(state.tags)
    for name, value in update.tags.items():
        old = tags.get(name)
        if update.op is TagOp.UNSET:
            tags.pop(name, None)
        elif value is None:
            continue  # refused by the contract; kept out of the state all the same
        elif update.op is TagOp.SET:
            kept = stored(value)
            tags[name] = (
                version_of(kept) if name in VERSION_TAGS and isinstance(kept, str) else kept
            )
        elif update.op is TagOp.INCREMENT:
            if old is None:
                tags[name] = value
            elif _is_number(old) and _is_number(value):
                tags[name] = old + value
        else:
            items = value if isinstance(value, list) else [value]
            if update.op is TagOp.APPEND and (old is None or isinstance(old, list)):
                merged = list(old or [])
                merged += [item for item in dict.fromkeys(items) if item not in merged]
                tags[name] = merged
            elif update.op is TagOp.REMOVE and isinstance(old, list):
                tags[name] = [item for item in old if item not in items]
    return state.with_(tags=tags)


ACTIONS = {
    FeedbackStatus.DELIVERED: MessageAction.RECEIVED,
    FeedbackStatus.OPENED: MessageAction.OPENED,
    FeedbackStatus.CLICKED: MessageAction.CLICKED,
}
"""Feedback that message conditions read; bounces, failures and unsubscribes are not."""


def apply_feedback(
    state: UserState,
    feedback: Feedback,
    counted: Counted = NOTHING_COUNTED,
    *,
    journey: str | None = None,
    step: str | None = None,
    now: datetime | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
) -> UserState:
    """Count a delivered, opened or clicked message: for any message, for its channel,
    and for its journey and step where known and asked for by ``counted``."""
    action = ACTIONS.get(feedback.status)
    if action is None:
        return state
    at = to_ms(feedback.timestamp)
    reference = at if now is None else to_ms(now)
    keys = {message_key(action, None, None, None)}
    if feedback.channel is not None:
        keys.add(message_key(action, feedback.channel, None, None))
    keys.update(
        item.key
        for item in counted.messages
        if item.action is action and item.matches(feedback.channel, journey, step)
    )
    # Journey and step counters live as long as a definition asks for them.
    wanted = counted.keys
    messages = {
        key: value for key, value in state.messages.items() if key in wanted or _is_general(key)
    }
    for key in keys:
        messages[key] = count_into(messages.get(key), at, reference, horizon)
    return state.with_(messages=messages)


def _is_general(key: str) -> bool:
    """Any message, or any message of a channel: always counted."""
    return key[0].islower()


def remember(state: UserState, input_hash: int) -> UserState:
    return state.with_(recent=remembered(state.recent, input_hash))


def remembered(recent: tuple[int, ...], input_hash: int) -> tuple[int, ...]:
    """The hashes of the last inputs, newest last, with one more."""
    return (*recent, input_hash)[-RECENT_INPUTS:]


def input_hash(kind: str, record_id: str) -> int:
    """A stable 48-bit hash of a record's id (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(f"{kind}:{record_id}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")
