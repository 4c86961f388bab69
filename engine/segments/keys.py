"""Under which keys a user's state counts what definitions ask about: events with
attribute filters (``filter_key``) and kinds of message facts (``message_key``), and
``Counted``, what the current definitions need counted beyond event names."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from engine.segments.counters import Counter
from schemas.events import Event
from schemas.segments import (
    All,
    AndNot,
    Any_,
    AttributeFilter,
    Condition,
    EventCondition,
    LastPerformedCondition,
    MessageAction,
    MessageCondition,
)

if TYPE_CHECKING:
    from engine.segments.state import UserState


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


CounterOf = Callable[["UserState"], Counter | None]
"""Where a condition's counter is in a user's state."""


def counter_of(condition: EventCondition | MessageCondition | LastPerformedCondition) -> CounterOf:
    """Where a condition's counter is: by event name, filter signature or message key."""
    if isinstance(condition, MessageCondition):
        key = message_key(condition.action, condition.channel, condition.journey, condition.step)
        return lambda state: state.messages.get(key)
    if isinstance(condition, EventCondition) and condition.filters:
        key = filter_key(condition.event, condition.filters)
        return lambda state: state.filtered.get(key)
    event = condition.event
    return lambda state: state.events.get(event)
