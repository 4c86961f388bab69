"""Why a user is or is not in a segment at an instant: the values each leaf condition
of its definition read then, and those values in words.

``values`` runs when a membership changes (``engine.segments.logic``): one raw value
per leaf, in the definition's order (a count, a tag's stored value, the last
occurrence in ms, a membership), read by the same counters and windows the verdict
used. Nothing is formatted there: a change carries a few numbers, and a no-change
input costs nothing. ``describe`` puts them in words when someone asks
(``reach explain``), with the definition they were read for:

    E("ApplicationOpen", count = 0, last 7 days): count 2 -> false
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import tzinfo
from typing import Any

from engine.segments.cache import cached
from engine.segments.evaluate import MemberOf, compile_condition, compile_predicate
from engine.segments.keys import counter_of
from engine.segments.state import UserState
from engine.segments.windows import window_counter
from engine.time import from_ms
from schemas.segment_language import format
from schemas.segments import (
    All,
    AndNot,
    Any_,
    Condition,
    EventCondition,
    LastPerformedCondition,
    MessageCondition,
    SegmentRef,
    TagCondition,
)

MAX_REASONS = 32
"""Leaves whose values a change keeps (a definition's leaves beyond are left out)."""

Reader = Callable[[UserState, int, tzinfo, MemberOf], Any]
"""What a leaf condition reads: (state, now in ms, zone, member_of) -> a JSON value."""


def values(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> list[Any]:
    """The value each leaf of ``condition`` reads in ``state`` at ``now`` (ms), in the
    definition's order: a count (event and message conditions), the tag's stored value
    or None, the last occurrence in ms or None, whether a member (segment references)."""
    return [read(state, now, tz, member_of) for read in compile_values(condition)]


def compile_values(condition: Condition) -> tuple[Reader, ...]:
    """The readers of ``condition``'s leaves, once per condition object."""
    return cached("values", condition, lambda: _readers(condition))


def _readers(condition: Condition) -> tuple[Reader, ...]:
    return tuple(_reader(leaf) for leaf, _ in leaves(condition))[:MAX_REASONS]


def leaves(condition: Condition, excluded: bool = False) -> Iterator[tuple[Condition, bool]]:
    """The leaf conditions, in order, each with whether an ``-`` excludes it."""
    if isinstance(condition, All | Any_):
        for child in condition.conditions:
            yield from leaves(child, excluded)
        return
    if isinstance(condition, AndNot):
        yield from leaves(condition.include, excluded)
        yield from leaves(condition.exclude, not excluded)
        return
    yield condition, excluded


def _reader(condition: Condition) -> Reader:
    if isinstance(condition, EventCondition | MessageCondition):
        get = counter_of(condition)
        counted = window_counter(condition.window)

        def count(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> int:
            counter = get(state)
            return 0 if counter is None else counted(counter, now, tz)

        return count
    if isinstance(condition, LastPerformedCondition):
        event = condition.event

        def last(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> Any:
            counter = state.events.get(event)
            return None if counter is None else counter[1]

        return last
    if isinstance(condition, TagCondition):
        tag = condition.tag
        return lambda state, now, tz, member_of: state.tags.get(tag)
    if isinstance(condition, SegmentRef):
        segment = condition.segment
        return lambda state, now, tz, member_of: member_of(segment)
    return lambda state, now, tz, member_of: None


# --- in words (off the hot path) ---------------------------------------------------------


def describe(condition: Condition, found: Sequence[Any], now: int, tz: tzinfo) -> list[str]:
    """One line per leaf: its text, the value ``values`` read, and whether the leaf held
    with it (``except`` before a leaf an ``-`` excludes). ``found`` must have been read
    for this very condition (the same definition version)."""
    lines = []
    for (leaf, excluded), value in zip(leaves(condition), found, strict=False):
        held = "true" if _held(leaf, value, now, tz) else "false"
        prefix = "except " if excluded else ""
        lines.append(f"{prefix}{format(leaf)}: {_shown(leaf, value)} -> {held}")
    left = sum(1 for _ in leaves(condition)) - len(found)
    if left > 0:
        lines.append(f"… {left} more conditions")
    return lines


def explain_at(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> list[str]:
    """``describe`` of ``values`` read now."""
    return describe(condition, values(condition, state, now, tz, member_of), now, tz)


def _held(leaf: Condition, value: Any, now: int, tz: tzinfo) -> bool:
    """The leaf's test on the value it read (the verdict's own test, fed that value)."""
    state = UserState()
    if isinstance(leaf, TagCondition):
        return compile_predicate(leaf)(value, now, tz)
    if isinstance(leaf, SegmentRef):
        return bool(value)
    if isinstance(leaf, EventCondition | MessageCondition):
        from engine.segments.windows import count_test

        if isinstance(leaf, EventCondition):
            return count_test(leaf.count)(int(value))
        return (int(value) > 0) != leaf.negate
    if isinstance(leaf, LastPerformedCondition):
        if value is None:
            return False
        counter = (1, int(value))
        state = state.with_(events={leaf.event: counter})  # type: ignore[dict-item]
    return compile_condition(leaf)(state, now, tz, lambda segment: False)


def _shown(leaf: Condition, value: Any) -> str:
    if isinstance(leaf, EventCondition | MessageCondition):
        return f"count {value}"
    if isinstance(leaf, LastPerformedCondition):
        return "never" if value is None else f"last {_instant(value)}"
    if isinstance(leaf, SegmentRef):
        return "member" if value else "not a member"
    if value is None:
        return "no value"
    if isinstance(value, dict) and "d" in value:
        return f"value {_instant(value['d'])}"
    return f"value {value!r}"


def _instant(ms: Any) -> str:
    try:
        return from_ms(int(ms)).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        return repr(ms)
