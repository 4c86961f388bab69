"""When can a condition's result change with no new input?

``next_change`` returns the first instant after ``now`` at which the result may differ:
an occurrence leaving a ``last`` window, a local midnight moving a calendar-day window,
a relative date being crossed, the last occurrence of an event turning N days old. For
every leaf it is exact at the millisecond (the result is the same from ``now`` until
that instant, and differs at it), given what windows.py says a window holds; an AND, OR
or AND NOT takes the earliest instant of its children, which may come early, never late.
A reference to another segment has no instant of its own: that segment's own timer
fires, and its referrers are evaluated with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from engine.segments.cache import cached
from engine.segments.evaluate import MemberOf, StateTest, compile_condition
from engine.segments.keys import CounterOf, counter_of
from engine.segments.state import UserState
from engine.segments.windows import (
    AT_LEAST_ONE,
    UNIT_MS,
    Threshold,
    Timed,
    count_test,
    count_timed,
    threshold,
)
from engine.time import DAY, day_start, from_ms, local_day, to_ms
from schemas.segments import (
    All,
    AndNot,
    Any_,
    Condition,
    DaysAgo,
    EventCondition,
    LastPerformedCondition,
    LastPerformedOp,
    MessageCondition,
    Op,
    TagCondition,
    TagType,
    Window,
)

Change = Callable[[UserState, int, tzinfo], int | None]
"""A compiled condition's next change: (state, now in ms, zone) -> ms or None."""


def next_change(
    condition: Condition, state: UserState, now: datetime, tz: tzinfo
) -> datetime | None:
    """The earliest instant after ``now`` at which ``condition`` may change without new
    input, or None if it cannot."""
    found = change_after(condition, state, to_ms(now), tz)
    return None if found is None else from_ms(found)


def change_after(condition: Condition, state: UserState, now: int, tz: tzinfo) -> int | None:
    """``next_change`` in epoch milliseconds."""
    change = compile_change(condition)
    return None if change is None else change(state, now, tz)


def compile_change(condition: Condition) -> Change | None:
    """``condition``'s next-change function, or None when time alone never changes it."""
    return cached("change", condition, lambda: _compile(condition))


def _compile(condition: Condition) -> Change | None:
    if isinstance(condition, TagCondition):
        return _tag_change(condition)
    if isinstance(condition, EventCondition):
        return _count_change(
            counter_of(condition),
            condition.window,
            count_test(condition.count),
            threshold(condition.count),
        )
    if isinstance(condition, MessageCondition):
        return _count_change(counter_of(condition), condition.window, _any_at_all, AT_LEAST_ONE)
    if isinstance(condition, LastPerformedCondition):
        return _last_performed_change(condition)
    if isinstance(condition, All | Any_):
        children = condition.conditions
    elif isinstance(condition, AndNot):
        children = (condition.include, condition.exclude)
    else:
        return None  # SegmentRef: the referred segment keeps its own timer
    found = [change for change in map(compile_change, children) if change is not None]
    if len(found) <= 1:
        return found[0] if found else None
    return _earliest(tuple(found))


def _earliest(children: tuple[Change, ...]) -> Change:
    def change(state: UserState, now: int, tz: tzinfo) -> int | None:
        best: int | None = None
        for child in children:
            found = child(state, now, tz)
            if found is not None and (best is None or found < best):
                best = found
        return best

    return change


def _after(now: int, candidates: Iterable[int]) -> int | None:
    return min((candidate for candidate in candidates if candidate > now), default=None)


def _count_change(
    get: CounterOf,
    window: Window,
    test: Callable[[int], bool],
    bound: Threshold | None = None,
) -> Change | None:
    """When ``test`` of the window's count flips."""
    timed = count_timed(get, window, test, bound)
    if timed is None:
        return None
    return lambda state, now, tz: timed(state, now, tz)[1]


def _last_performed_change(condition: LastPerformedCondition) -> Change | None:
    # within N: last > now - N turns false at last + N; before N days ago: last <= now - N
    # turns true at last + N; after N days ago turns false then. Absolute dates: never.
    if condition.op is LastPerformedOp.WITHIN:
        length = (condition.n or 0) * UNIT_MS[condition.unit]
    elif isinstance(condition.date, DaysAgo):
        length = condition.date.days_ago * DAY
    else:
        return None
    event = condition.event

    def change(state: UserState, now: int, tz: tzinfo) -> int | None:
        counter = state.events.get(event)
        if counter is None:
            return None
        turn: int = counter[1] + length
        return turn if turn > now else None

    return change


def _tag_change(condition: TagCondition) -> Change | None:
    """Only dates change with time: relative operands and the within / more-than ops."""
    if condition.type is not TagType.DATE:
        return None
    turns = _date_turns(condition.op, condition.operand)
    if turns is None:
        return None
    tag = condition.tag

    def change(state: UserState, now: int, tz: tzinfo) -> int | None:
        value = state.tags.get(tag)
        if not (isinstance(value, dict) and "d" in value):
            return None
        return _after(now, turns(value["d"], tz))

    return change


def _date_turns(op: Op, operand: Any) -> Callable[[int, tzinfo], list[int]] | None:
    """(date value, zone) -> the instants at which ``value OP operand`` may flip."""
    if op is Op.WITHIN_LAST:
        span = operand * DAY
        return lambda instant, tz: [instant, instant + span + 1]
    if op is Op.MORE_THAN_AGO:
        span = operand * DAY
        return lambda instant, tz: [instant + span + 1]
    if op in (Op.EQ, Op.NOTEQ):
        if not isinstance(operand, DaysAgo):
            return None
        back = operand.days_ago

        def days(instant: int, tz: tzinfo) -> list[int]:
            enters = local_day(instant, tz) + back
            return [day_start(enters, tz), day_start(enters + 1, tz)]

        return days
    # value OP now - N days flips when now crosses value + N days; ``value >= bound``
    # and ``value < bound`` a millisecond after, the others at that instant.
    if op is Op.BETWEEN:
        low, high = operand
        spans = [(low.days_ago * DAY + 1)] if isinstance(low, DaysAgo) else []
        spans += [high.days_ago * DAY] if isinstance(high, DaysAgo) else []
    elif isinstance(operand, DaysAgo):
        spans = [operand.days_ago * DAY + (1 if op in (Op.GTE, Op.LT) else 0)]
    else:
        return None
    if not spans:
        return None
    return lambda instant, tz: [instant + span for span in spans]


# --- result and next change at once ----------------------------------------------------

Verdict = Callable[[UserState, int, tzinfo, MemberOf], tuple[bool, int | None]]
"""A compiled condition's result and next change: (state, now in ms, zone, member_of)
-> (whether it holds, ms or None), as ``compile_condition`` and ``compile_change``."""


def compile_verdict(condition: Condition) -> Verdict:
    """Both answers about ``condition`` at once: an event or message count is then
    counted once for both, and a test that decides nothing is skipped."""
    return cached("verdict", condition, lambda: _verdict(condition))


def _verdict(condition: Condition) -> Verdict:
    if isinstance(condition, EventCondition | MessageCondition):
        if isinstance(condition, EventCondition):
            test, bound = count_test(condition.count), threshold(condition.count)
        else:
            test, bound = _any_at_all, AT_LEAST_ONE
        timed = count_timed(counter_of(condition), condition.window, test, bound)
        if timed is not None:
            negate = isinstance(condition, MessageCondition) and condition.negate
            return _count_verdict(timed, negate)
    elif isinstance(condition, All | Any_):
        return _group_verdict(condition.conditions, every=isinstance(condition, All))
    elif isinstance(condition, AndNot):
        return _and_not_verdict(
            compile_verdict(condition.include), compile_verdict(condition.exclude)
        )
    return _separate_verdict(compile_condition(condition), compile_change(condition))


def _any_at_all(value: int) -> bool:
    return value > 0


def _count_verdict(timed: Timed, negate: bool) -> Verdict:
    def verdict(
        state: UserState, now: int, tz: tzinfo, member_of: MemberOf
    ) -> tuple[bool, int | None]:
        held, due = timed(state, now, tz)
        return held != negate, due  # a flip of the count's test flips its negation too

    return verdict


def _separate_verdict(test: StateTest, change: Change | None) -> Verdict:
    if change is None:
        return lambda state, now, tz, member_of: (test(state, now, tz, member_of), None)
    return lambda state, now, tz, member_of: (
        test(state, now, tz, member_of),
        change(state, now, tz),
    )


def _group_verdict(children: tuple[Condition, ...], every: bool) -> Verdict:
    """AND (``every``) or OR: children with a next change are all asked (the earliest
    change counts), the others only while they can still decide the result."""
    timed = tuple(compile_verdict(child) for child in children if compile_change(child))
    untimed = tuple(compile_condition(child) for child in children if not compile_change(child))

    def verdict(
        state: UserState, now: int, tz: tzinfo, member_of: MemberOf
    ) -> tuple[bool, int | None]:
        held = every
        due: int | None = None
        for child in timed:
            result, when = child(state, now, tz, member_of)
            if result != every:
                held = result
            if when is not None and (due is None or when < due):
                due = when
        if held == every:
            for test in untimed:
                if test(state, now, tz, member_of) != every:
                    held = not every
                    break
        return held, due

    return verdict


def _and_not_verdict(include: Verdict, exclude: Verdict) -> Verdict:
    def verdict(
        state: UserState, now: int, tz: tzinfo, member_of: MemberOf
    ) -> tuple[bool, int | None]:
        held, due = include(state, now, tz, member_of)
        excluded, other = exclude(state, now, tz, member_of)
        if other is not None and (due is None or other < due):
            due = other
        return held and not excluded, due

    return verdict
