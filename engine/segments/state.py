"""What the segment engine keeps per user, and the pure folds that update it.

A user's state is a handful of plain dicts and lists, kept in memory in the very form
it is stored in (``to_json`` and ``from_json`` copy nothing). It holds:

- tags, as stored JSON (see ``stored``), including the default tags the engine fills;
- one counter per event name, and per (event, attribute filters) signature that the
  current definitions count (``Counted``);
- one counter per kind of message fact (received / opened / clicked, any message, per
  channel, and per journey or step that definitions ask about);
- the newest event instant, hashes of the last few inputs (to skip re-sends), and the
  instant each time-dependent segment may next change.

A counter is ``[total, last_ms, minute_tier, quarter_tier]``: the all-time count, the
exact instant of the newest occurrence, and occurrences in time buckets. The minute
tier covers the last ``RECENT`` minutes; older occurrences sit in quarter-hour buckets
until they are older than the horizon (plus one day), and then only count in the total.
Quarter hours, not hours: local midnight falls on a quarter hour in every zone in use
today (India is UTC+5:30, Nepal +5:45), so calendar-day windows stay exact anywhere.

A tier is a flat list of buckets, newest first: ``[key, count, gap, count, ...]``;
``key`` is the newest bucket's start (in minutes, or quarter hours, since the epoch)
and each gap how far the next older bucket starts before the previous one. Small gaps
keep a daily habit at about five characters a day in JSON.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.segments import (
    All,
    AndNot,
    Any_,
    AttributeFilter,
    Condition,
    EventCondition,
    MessageAction,
    MessageCondition,
    Unit,
    Window,
)
from schemas.tags import TagOp, TagUpdate
from schemas.values import DateValue, PriceValue, Value, VersionValue

JSON = Any
"""A value orjson encodes as is: dicts with str keys, lists, str, int, float, bool."""
_NONE: Mapping[str, Any] = MappingProxyType({})
"""The empty part every state without it shares (read-only, so sharing is safe)."""
Counter = list[Any]
"""``[total, last_ms, minute_tier, quarter_tier]``, see the module docstring."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MINUTE = 60_000
"""One minute, in ms."""
QUARTER = 15
"""Minutes in a coarse bucket."""
QUARTER_MS = QUARTER * MINUTE
RECENT = 180
"""Minutes kept at minute resolution: windows up to this long count by the minute."""
DAY = 86_400_000
DEFAULT_HORIZON = timedelta(days=90)
"""How far back buckets are kept; windows reaching further are refused."""
RECENT_INPUTS = 8
"""How many input ids a user's state remembers, so that a re-sent record is skipped."""

UNIT_MS = {Unit.MINUTES: MINUTE, Unit.HOURS: 60 * MINUTE, Unit.DAYS: DAY}


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (floored, also before 1970)."""
    # From the parts of the difference (seconds and microseconds are never negative):
    # quicker than dividing one timedelta by another.
    since = moment - EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(0, 0, 0, ms)  # positional milliseconds: quicker than by name


# --- tags -------------------------------------------------------------------------

LAST_APPLICATION_OPEN = "Last Application Open"
FIRST_INSTALL = "First Install"
APPLICATION_OPEN = "ApplicationOpen"

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


def _version_of(text: str) -> JSON:
    """A plain string as a version where it reads as one (default version tags)."""
    if _VERSION_TEXT.fullmatch(text):
        return {"v": list(VersionValue(type="version", value=text).parts)}
    return text


def _default_tag_value(raw: Value, is_version: bool) -> JSON | None:
    if is_version:
        if isinstance(raw, VersionValue):
            return stored(raw)
        return _version_of(raw) if isinstance(raw, str) else None
    return raw if isinstance(raw, str) else None


# --- counters -----------------------------------------------------------------------


def buckets(tier: list[int]) -> Iterator[tuple[int, int]]:
    """(key, count) of a tier, newest first."""
    key = 0
    for index in range(0, len(tier), 2):
        key = tier[0] if index == 0 else key - tier[index]
        yield key, tier[index + 1]


def encode(pairs: Iterable[tuple[int, int]]) -> list[int]:
    tier: list[int] = []
    previous = 0
    for key, count in pairs:
        tier += (key, count) if not tier else (previous - key, count)
        previous = key
    return tier


def _add(pairs: list[tuple[int, int]], key: int, count: int) -> None:
    """Add to a newest-first list of buckets, merging equal keys."""
    for index, (existing, total) in enumerate(pairs):
        if existing == key:
            pairs[index] = (key, total + count)
            return
        if existing < key:
            pairs.insert(index, (key, count))
            return
    pairs.append((key, count))


def count_into(
    counter: Counter | None, at_ms: int, reference_ms: int, horizon: timedelta
) -> Counter:
    """``counter`` with one more occurrence at ``at_ms``, its buckets settled for the
    instant ``reference_ms``: minutes older than ``RECENT`` folded into quarter hours,
    quarter hours older than the horizon plus a day dropped."""
    recent_edge = reference_ms // MINUTE - RECENT  # minute buckets start after this
    # The extra day keeps whole local days (and a DST hour) around the horizon's edge.
    cutoff = (reference_ms - horizon // _MS - DAY) // QUARTER_MS
    if counter is None:
        total, last, fine, coarse = 0, at_ms, [], []
    else:
        total, last, fine, coarse = counter
        newest = _count_newest(fine, coarse, at_ms // MINUTE, recent_edge, cutoff)
        if newest is not None:
            return [total + 1, max(last, at_ms), newest, coarse]
    minutes = list(buckets(fine))
    quarters: list[tuple[int, int]] = []  # to add to the quarter tier, newest first
    minute = at_ms // MINUTE
    if minute > recent_edge:
        _add(minutes, minute, 1)
    elif minute // QUARTER >= cutoff:
        quarters.append((minute // QUARTER, 1))
    while minutes and minutes[-1][0] <= recent_edge:
        key, count = minutes.pop()
        _add(quarters, key // QUARTER, count)
    return [total + 1, max(last, at_ms), encode(minutes), _settle(coarse, quarters, cutoff)]


def _settle(tier: list[int], added: list[tuple[int, int]], cutoff: int) -> list[int]:
    """The quarter ``tier`` with the buckets ``added`` (newest first), less the buckets
    before ``cutoff``."""
    if not added:
        settled = tier
    elif not tier or added[-1][0] > tier[0]:  # all newer: the tier goes on as it is
        settled = [*encode(added), added[-1][0] - tier[0], *tier[1:]] if tier else encode(added)
    elif added[-1][0] == tier[0] and len(added) == 1:  # the common case: one more there
        settled = [tier[0], tier[1] + added[0][1], *tier[2:]]
    else:
        pairs = list(buckets(tier))
        for key, count in added:
            _add(pairs, key, count)
        settled = encode(pairs)
    # Drop from the oldest end: the oldest key is the newest less every gap.
    oldest = settled[0] - sum(settled[2::2]) if settled else 0
    if not settled or oldest >= cutoff:
        return settled
    settled = list(settled)
    while settled and oldest < cutoff:
        oldest += settled[-2] if len(settled) > 2 else 0
        del settled[-2:]
    return settled


def _count_newest(
    fine: list[int], coarse: list[int], minute: int, recent_edge: int, cutoff: int
) -> list[int] | None:
    """The common case of ``count_into``, without decoding the tiers: an occurrence in
    (or after) the newest minute bucket, and nothing to fold or drop. The new minute
    tier then, or None when the general case applies."""
    if minute <= recent_edge or (fine and minute < fine[0]):
        return None
    # Keys fall by the gaps: the oldest bucket is the newest key less every gap.
    if fine and fine[0] - sum(fine[2::2]) <= recent_edge:
        return None
    if coarse and coarse[0] - sum(coarse[2::2]) < cutoff:
        return None
    if not fine:
        return [minute, 1]
    if minute == fine[0]:
        return [minute, fine[1] + 1, *fine[2:]]
    return [minute, 1, minute - fine[0], *fine[1:]]


def newest_bucket(counter: Counter, fine: bool) -> int | None:
    """The start (ms, at the resolution asked) of the bucket holding the newest
    occurrence, or None when it has none (it was older than the horizon)."""
    minute: int = counter[1] // MINUTE
    minutes, quarters = counter[2], counter[3]
    if minutes and minutes[0] == minute:
        return minute * MINUTE if fine else minute // QUARTER * QUARTER_MS
    if quarters and quarters[0] == minute // QUARTER:
        return int(quarters[0]) * QUARTER_MS
    return None


def occurrences(counter: Counter, *, fine: bool) -> list[tuple[int, int]]:
    """(instant in ms, count) of the counter's occurrences: the newest at its exact
    instant, the others at their bucket's start (minute with ``fine``, else quarter)."""
    found: list[tuple[int, int]] = []
    for tier, is_minutes in ((counter[2], True), (counter[3], False)):
        key = 0
        for index in range(0, len(tier), 2):
            key = tier[0] if index == 0 else key - tier[index]
            if not is_minutes:
                start = key * QUARTER_MS
            elif fine:
                start = key * MINUTE
            else:
                start = key // QUARTER * QUARTER_MS
            found.append((start, tier[index + 1]))
    newest = newest_bucket(counter, fine)
    if newest is not None:
        for index, (start, count) in enumerate(found):
            if start == newest:
                if count == 1:
                    del found[index]
                else:
                    found[index] = (start, count - 1)
                break
        found.append((counter[1], 1))
    return found


def count_in(counter: Counter, low_ms: int, high_ms: int | None, *, fine: bool) -> int:
    """Occurrences in ``[low_ms, high_ms)`` (no upper bound: None), placed as
    ``occurrences`` places them."""
    # In key space: a bucket starts at or after an instant x exactly when its key is at
    # least the first key starting there, -(-x // size); a minute placed at its quarter
    # (not ``fine``) when its key is at least QUARTER times the first such quarter.
    if fine:
        low_minute = -(-low_ms // MINUTE)
        high_minute = None if high_ms is None else -(-high_ms // MINUTE)
    else:
        low_minute = -(-low_ms // QUARTER_MS) * QUARTER
        high_minute = None if high_ms is None else -(-high_ms // QUARTER_MS) * QUARTER
    total = _tier_count(counter[2], low_minute, high_minute)
    total += _tier_count(
        counter[3],
        -(-low_ms // QUARTER_MS),
        None if high_ms is None else -(-high_ms // QUARTER_MS),
    )
    newest = newest_bucket(counter, fine)
    if newest is not None:  # move the newest occurrence from its bucket to its instant
        last: int = counter[1]
        total -= low_ms <= newest and (high_ms is None or newest < high_ms)
        total += low_ms <= last and (high_ms is None or last < high_ms)
    return total


def _tier_count(tier: list[int], low: int, high: int | None) -> int:
    """The counts of a tier's buckets with ``low <= key < high`` (None: no bound)."""
    size = len(tier)
    if not size:
        return 0
    index, key = 0, tier[0]
    if high is not None:
        while key >= high:  # newest first: skip what is too new, then count down to low
            index += 2
            if index >= size:
                return 0
            key -= tier[index]
    total = 0
    while key >= low:
        total += tier[index + 1]
        index += 2
        if index >= size:
            break
        key -= tier[index]
    return total


def placed(counter: Counter, low_ms: int | None, *, fine: bool) -> dict[int, int]:
    """``occurrences`` from ``low_ms`` on (None: all of them), summed by instant."""
    found: dict[int, int] = {}
    minutes, quarters = counter[2], counter[3]
    scale, group = (MINUTE, 1) if fine else (QUARTER_MS, QUARTER)
    key = 0
    for index in range(0, len(minutes), 2):
        key = minutes[0] if index == 0 else key - minutes[index]
        start = key // group * scale
        if low_ms is not None and start < low_ms:
            break  # newest first: every further bucket is older
        found[start] = found.get(start, 0) + minutes[index + 1]
    for index in range(0, len(quarters), 2):
        key = quarters[0] if index == 0 else key - quarters[index]
        start = key * QUARTER_MS
        if low_ms is not None and start < low_ms:
            break
        found[start] = found.get(start, 0) + quarters[index + 1]
    newest = newest_bucket(counter, fine)
    if newest is not None:  # the newest occurrence counts at its instant
        if newest in found:
            found[newest] -= 1
            if not found[newest]:
                del found[newest]
        last: int = counter[1]
        if low_ms is None or last >= low_ms:
            found[last] = found.get(last, 0) + 1
    return found


# --- what definitions ask to count ----------------------------------------------------


class CountedFilter(Protocol):
    """Attribute filters of an event condition, counted under ``key`` (the index
    supplies these, with ``matches`` deciding on an event's attributes)."""

    @property
    def key(self) -> str: ...

    def matches(self, event: Event) -> bool: ...


_KEYS: dict[int, tuple[object, str]] = {}


def filter_key(event: str, filters: tuple[AttributeFilter, ...]) -> str:
    """A stable signature of an event name and its filters (order of filters ignored),
    the same for the same filters in any definition."""
    cached = _KEYS.get(id(filters))
    if cached is not None and cached[0] is filters:
        return cached[1]
    parts = sorted(item.model_dump_json(exclude_none=True) for item in filters)
    digest = hashlib.blake2b("\n".join([event, *parts]).encode(), digest_size=9).hexdigest()
    if len(_KEYS) > 4096:  # definitions come and go; the cache must not grow with them
        _KEYS.clear()
    _KEYS[id(filters)] = (filters, digest)
    return digest


def _escape(part: str | None) -> str:
    return "" if part is None else part.replace("\\", "\\\\").replace("|", "\\|")


def message_key(
    action: MessageAction, channel: str | None, journey: str | None, step: str | None
) -> str:
    """The counter of one kind of message fact: ``o`` (opened, any message),
    ``o|push`` (opened a push), ``C||welcome|s2`` (clicked step s2 of journey welcome:
    a capital letter marks a journey or step counter, kept only while asked for)."""
    letter = action.value[0] if journey is None and step is None else action.value[0].upper()
    return "|".join([letter, *map(_escape, (channel, journey, step))]).rstrip("|")


@dataclass(frozen=True, slots=True)
class MessageKey:
    action: MessageAction
    channel: str | None = None
    journey: str | None = None
    step: str | None = None

    @property
    def key(self) -> str:
        return message_key(self.action, self.channel, self.journey, self.step)

    def matches(self, channel: str | None, journey: str | None, step: str | None) -> bool:
        return (
            (self.channel is None or self.channel == channel)
            and (self.journey is None or self.journey == journey)
            and (self.step is None or self.step == step)
        )


@dataclass(frozen=True, slots=True)
class Counted:
    """What the current definitions need counted beyond event names: filtered events,
    and messages of particular journeys or steps. Counters under other keys are dropped
    when the user's state is next touched."""

    filters: Mapping[str, tuple[CountedFilter, ...]] = field(default_factory=dict)
    messages: tuple[MessageKey, ...] = ()
    keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        keys = [item.key for items in self.filters.values() for item in items]
        keys += [item.key for item in self.messages]
        object.__setattr__(self, "keys", frozenset(keys))


NOTHING_COUNTED = Counted()


def condition_counts(condition: Condition) -> Iterator[EventCondition | MessageCondition]:
    """The event and message conditions of a condition tree."""
    if isinstance(condition, EventCondition | MessageCondition):
        yield condition
    elif isinstance(condition, All | Any_):
        for child in condition.conditions:
            yield from condition_counts(child)
    elif isinstance(condition, AndNot):
        yield from condition_counts(condition.include)
        yield from condition_counts(condition.exclude)


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

    def to_json(self) -> dict[str, JSON]:
        """A plain dict for orjson; empty parts are left out."""
        data: dict[str, JSON] = {}
        for name, part in (
            ("t", self.tags),
            ("e", self.events),
            ("f", self.filtered),
            ("m", self.messages),
            ("n", self.timers),
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
            )
        )


def _new_state(parts: tuple[Any, ...]) -> UserState:
    """A state from its seven parts, in field order: without the NamedTuple's own
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
        tags=_default_tags(state, event, at),
        events=events,
        filtered=filtered,
        seen=at if state.seen is None else max(state.seen, at),
    )


def _default_tags(state: UserState, event: Event, at: int) -> Mapping[str, JSON]:
    tags = state.tags
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
    if (
        given
        and (state.seen is None or at >= state.seen)
        and not DEFAULT_ATTRIBUTES.isdisjoint(given)
    ):
        for tag, (attributes, is_version) in DEFAULT_ATTRIBUTE_TAGS.items():
            for attribute in attributes:
                raw = given.get(attribute)
                if raw is not None:
                    value = _default_tag_value(raw, is_version)
                    if value is not None and tags.get(tag) != value:
                        changes[tag] = value
                    break
    return {**tags, **changes} if changes else tags


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
                _version_of(kept) if name in VERSION_TAGS and isinstance(kept, str) else kept
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


# --- the horizon --------------------------------------------------------------------


def window_problem(window: Window, horizon: timedelta = DEFAULT_HORIZON) -> str | None:
    """Why ``window`` cannot be answered exactly with ``horizon`` of history, or None.

    ``ever`` is answered from all-time totals, whatever its age. ``between_dates`` is
    checked against the horizon by ``dates_problem`` when the definition is applied.
    """
    days = horizon // timedelta(days=1)
    if window.kind == "last":
        n = window.n or 0
        if n * UNIT_MS[window.unit] > horizon // _MS:
            return (
                f"a window of the last {n} {window.unit} reaches past the {days} days of "
                f"history kept per user: use at most {days} days, or 'ever'"
            )
        return None
    if window.kind in ("exactly_ago", "ago_or_more", "between_ago"):
        deepest = window.m if window.kind == "between_ago" else window.n
        # A window n days ago reaches back to the start of that local day: n + 1 days.
        if (deepest or 0) + 1 > days:
            return (
                f"a '{window.kind}' window reaching {deepest} days ago needs more than the "
                f"{days} days of history kept per user: use at most {days - 1} days, or 'ever'"
            )
    return None


def dates_problem(
    window: Window, now: datetime, horizon: timedelta = DEFAULT_HORIZON
) -> str | None:
    """A ``between_dates`` window starting before the horizon (as of ``now``)."""
    start = window.start
    if window.kind != "between_dates" or start is None or start >= now - horizon:
        return None
    days = horizon // timedelta(days=1)
    return (
        f"a window from {start:%Y-%m-%d} starts more than the {days} days of history "
        "kept per user ago"
    )


def horizon_problems(
    condition: Condition, horizon: timedelta = DEFAULT_HORIZON, now: datetime | None = None
) -> list[str]:
    """``window_problem`` (and, given ``now``, ``dates_problem``) over a condition tree."""
    problems: list[str] = []
    for item in condition_counts(condition):
        problem = window_problem(item.window, horizon)
        if problem is None and now is not None:
            problem = dates_problem(item.window, now, horizon)
        if problem is not None:
            subject = item.event if isinstance(item, EventCondition) else "message"
            problems.append(f"{subject}: {problem}")
    return problems
