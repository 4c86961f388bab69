"""Why a user is or is not in a segment at an instant: the values each condition of its
definition had then, as short lines of text.

    E("ApplicationOpen", count = 0, last 7 days): 2 -> false

Computed only when a membership changes (``engine.segments.logic``) and by the
"why not" of ``reach explain``: never on the path that changes nothing. The values
come from the same compiled tests and window counters the verdict used, so they agree
with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from typing import Any

from engine.segments.evaluate import MemberOf, compile_condition
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


def reasons(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> tuple[str, ...]:
    """One line per leaf condition of ``condition``: its text, its value in ``state`` at
    ``now`` (ms), and whether it held, in the definition's order."""
    lines = []
    for index, line in enumerate(_lines(condition, state, now, tz, member_of)):
        if index == MAX_REASONS:
            lines.append("… more conditions")
            break
        lines.append(line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 1] + "…")
    return tuple(lines)


def _lines(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> Iterator[str]:
    if isinstance(condition, All | Any_):
        for child in condition.conditions:
            yield from _lines(child, state, now, tz, member_of)
        return
    if isinstance(condition, AndNot):
        yield from _lines(condition.include, state, now, tz, member_of)
        for line in _lines(condition.exclude, state, now, tz, member_of):
            yield f"not {line}"
        return
    held = compile_condition(condition)(state, now, tz, member_of)
    yield f"{format(condition)}: {_value(condition, state, now, tz, member_of)} -> " + (
        "true" if held else "false"
    )


def _value(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> str:
    """What the condition read: a count, a tag's value, a last instant, a membership."""
    if isinstance(condition, EventCondition | MessageCondition):
        counter = counter_of(condition)(state)
        count = 0 if counter is None else window_counter(condition.window)(counter, now, tz)
        return f"count {count}"
    if isinstance(condition, LastPerformedCondition):
        counter = state.events.get(condition.event)
        return "never" if counter is None else f"last {_instant(counter[1])}"
    if isinstance(condition, TagCondition):
        value: Any = state.tags.get(condition.tag)
        if value is None:
            return "no value"
        if isinstance(value, dict) and "d" in value:
            return f"value {_instant(value['d'])}"
        return f"value {value!r}"
    if isinstance(condition, SegmentRef):
        return "member" if member_of(condition.segment) else "not a member"
    return ""


def _instant(ms: Any) -> str:
    try:
        return from_ms(int(ms)).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        return repr(ms)
