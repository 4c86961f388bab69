"""Why a user is or is not in a segment at an instant: the values each condition of its
definition had then, as short lines of text.

    E("ApplicationOpen", count = 0, last 7 days): 2 -> false

Computed only when a membership changes (``engine.segments.logic``) and by the
"why not" of ``reach explain``: never on the path that changes nothing. The values
come from the same compiled tests and window counters the verdict used, so they agree
with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import tzinfo
from typing import Any

from engine.segments.cache import cached
from engine.segments.evaluate import MemberOf, StateTest, compile_condition
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
"""Lines kept for one change (a definition's leaves beyond are summed up in one)."""
MAX_LENGTH = 240
"""Characters kept of one line."""


Reader = Callable[[UserState, int, tzinfo, MemberOf], str]
"""What a leaf condition read, as text: (state, now in ms, zone, member_of) -> text."""
Leaf = tuple[str, Reader, StateTest]
"""A leaf condition compiled: its text (with ``except `` for an excluded one), its
reader, its test."""


def reasons(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> tuple[str, ...]:
    """One line per leaf condition of ``condition``: its text, its value in ``state`` at
    ``now`` (ms), and whether it held, in the definition's order."""
    lines = []
    for text, read, test in compile_reasons(condition):
        if read is _nothing and test is _held:  # the leaves left out
            lines.append(text)
            continue
        held = "true" if test(state, now, tz, member_of) else "false"
        line = f"{text}: {read(state, now, tz, member_of)} -> {held}"
        lines.append(line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 1] + "…")
    return tuple(lines)


def compile_reasons(condition: Condition) -> tuple[Leaf, ...]:
    """The leaves of ``condition``, compiled once per condition object (texts
    formatted, counters and windows found), at most ``MAX_REASONS`` of them."""
    return cached("reasons", condition, lambda: _compile(condition))


def _compile(condition: Condition) -> tuple[Leaf, ...]:
    leaves = list(_leaves(condition, ""))
    if len(leaves) > MAX_REASONS:
        more = f"… {len(leaves) - MAX_REASONS} more conditions"
        leaves = [*leaves[:MAX_REASONS], (more, _nothing, _held)]
    return tuple(leaves)


def _leaves(condition: Condition, prefix: str) -> Iterator[Leaf]:
    if isinstance(condition, All | Any_):
        for child in condition.conditions:
            yield from _leaves(child, prefix)
        return
    if isinstance(condition, AndNot):
        yield from _leaves(condition.include, prefix)
        yield from _leaves(condition.exclude, prefix + "except ")
        return
    yield prefix + format(condition), _reader(condition), compile_condition(condition)


def _reader(condition: Condition) -> Reader:
    """What the condition reads: a count, a tag's value, a last instant, a membership."""
    if isinstance(condition, EventCondition | MessageCondition):
        get = counter_of(condition)
        counted = window_counter(condition.window)

        def count(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> str:
            counter = get(state)
            return f"count {0 if counter is None else counted(counter, now, tz)}"

        return count
    if isinstance(condition, LastPerformedCondition):
        event = condition.event

        def last(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> str:
            counter = state.events.get(event)
            return "never" if counter is None else f"last {_instant(counter[1])}"

        return last
    if isinstance(condition, TagCondition):
        tag = condition.tag

        def value(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> str:
            found: Any = state.tags.get(tag)
            if found is None:
                return "no value"
            if isinstance(found, dict) and "d" in found:
                return f"value {_instant(found['d'])}"
            return f"value {found!r}"

        return value
    if isinstance(condition, SegmentRef):
        segment = condition.segment
        return lambda state, now, tz, member_of: "member" if member_of(segment) else "not a member"
    return _nothing


def _nothing(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> str:
    return ""


def _held(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> bool:
    return True


def _instant(ms: Any) -> str:
    try:
        return from_ms(int(ms)).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        return repr(ms)
