"""Does a user's state satisfy a condition at an instant? Pure and exact; the rules are
in docs/segments.md ("How membership is kept").

Time is in epoch milliseconds throughout. Calendar days are those of the segment's
time zone. What a window of an event or message condition holds is
engine/segments/windows.py's business.

A condition is compiled once into nested closures (operands normalised, counter keys
and window lengths worked out), so evaluating it is a few calls per node; compiled
forms are cached per condition object.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from engine.devices import LIVE, reachable
from engine.segments.cache import cached
from engine.segments.defaults import JSON
from engine.segments.keys import CounterOf, counter_of
from engine.segments.state import UserState
from engine.segments.windows import UNIT_MS, count_test, window_counter
from engine.time import DAY, local_day, local_today, to_ms
from schemas.segments import (
    All,
    AndNot,
    Condition,
    DaysAgo,
    EventCondition,
    LastPerformedCondition,
    LastPerformedOp,
    MessageCondition,
    Op,
    Predicate,
    Price,
    ReachableCondition,
    SegmentRef,
    TagCondition,
    TagType,
    Window,
)

MemberOf = Callable[[str], bool]
StateTest = Callable[[UserState, int, tzinfo, MemberOf], bool]
"""A compiled condition: (state, now in ms, zone, member_of) -> bool."""
ValueTest = Callable[[JSON | None, int, tzinfo], bool]
"""A compiled predicate: (stored value or None, now in ms, zone) -> bool."""

# Negative operators are the complements of positive ones, so they hold for a tag the
# user does not have. A value of another type cannot be compared: it is neither equal
# nor unequal, and only ``exists`` holds for it.
HOLD_WHEN_MISSING = frozenset({Op.NOT_EXISTS, Op.NOTEQ, Op.NOTIN, Op.CONTAINS_NONE})

_INCOMPARABLE: Any = object()


def evaluate(
    condition: Condition, state: UserState, now: datetime, tz: tzinfo, member_of: MemberOf
) -> bool:
    """Whether ``state`` satisfies ``condition`` at ``now``; ``tz`` is the segment's
    time zone and ``member_of`` answers references to other segments."""
    return compile_condition(condition)(state, to_ms(now), tz, member_of)


def holds(
    condition: Condition, state: UserState, now: int, tz: tzinfo, member_of: MemberOf
) -> bool:
    """``evaluate`` with ``now`` in epoch milliseconds."""
    return compile_condition(condition)(state, now, tz, member_of)


def compile_condition(condition: Condition) -> StateTest:
    return cached("condition", condition, lambda: _compile(condition))


def _compile(condition: Condition) -> StateTest:
    if isinstance(condition, TagCondition):
        return _tag_test(condition)
    if isinstance(condition, EventCondition):
        return _count_test_of(counter_of(condition), condition.window, count_test(condition.count))
    if isinstance(condition, MessageCondition):
        found = _count_test_of(counter_of(condition), condition.window, lambda value: value > 0)
        if not condition.negate:
            return found
        return lambda state, now, tz, member_of: not found(state, now, tz, member_of)
    if isinstance(condition, LastPerformedCondition):
        return _last_performed_test(condition)
    if isinstance(condition, SegmentRef):
        segment = condition.segment
        return lambda state, now, tz, member_of: member_of(segment)
    if isinstance(condition, ReachableCondition):
        return _reachable_test(condition)
    if isinstance(condition, AndNot):
        include = compile_condition(condition.include)
        exclude = compile_condition(condition.exclude)
        return lambda state, now, tz, member_of: (
            include(state, now, tz, member_of) and not exclude(state, now, tz, member_of)
        )
    children = tuple(compile_condition(child) for child in condition.conditions)
    return _all(children) if isinstance(condition, All) else _any(children)


def _reachable_test(condition: ReachableCondition) -> StateTest:
    channel = condition.channel
    if condition.test == "registered":
        return lambda state, now, tz, member_of: bool(state.channels.get(channel, 0) & LIVE)
    return lambda state, now, tz, member_of: reachable(
        channel, state.channels.get(channel, 0), state.tags
    )


# Plain loops, not all() / any() over a generator: these run for every evaluation.
def _all(children: tuple[StateTest, ...]) -> StateTest:
    def test(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> bool:
        for child in children:  # noqa: SIM110
            if not child(state, now, tz, member_of):
                return False
        return True

    return test


def _any(children: tuple[StateTest, ...]) -> StateTest:
    def test(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> bool:
        for child in children:  # noqa: SIM110
            if child(state, now, tz, member_of):
                return True
        return False

    return test


def _tag_test(condition: TagCondition) -> StateTest:
    tag = condition.tag
    test = compile_predicate(condition)
    return lambda state, now, tz, member_of: test(state.tags.get(tag), now, tz)


def _count_test_of(get: CounterOf, window: Window, test: Callable[[int], bool]) -> StateTest:
    counted = window_counter(window)

    def holds(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> bool:
        counter = get(state)
        return test(0 if counter is None else counted(counter, now, tz))

    return holds


def bound_of(operand: datetime | DaysAgo) -> Callable[[int], int]:
    """now -> an absolute instant, or ``now`` less N whole days (24 h each)."""
    if isinstance(operand, DaysAgo):
        span = operand.days_ago * DAY
        return lambda now: now - span
    instant = to_ms(operand)
    return lambda now: instant


def _last_performed_test(condition: LastPerformedCondition) -> StateTest:
    """``before`` X: last <= X; ``after`` X: last > X; ``within`` N units: last > now - N.
    So "before N days ago" turns true the instant the last occurrence is N days old, and
    is the complement of "within N days" for users who ever performed the event. A user
    who never performed the event matches none of them."""
    event = condition.event
    bound: Callable[[int], int]
    if condition.op is LastPerformedOp.WITHIN:
        length = (condition.n or 0) * UNIT_MS[condition.unit]
        bound = lambda now: now - length  # noqa: E731
    else:
        assert condition.date is not None
        bound = bound_of(condition.date)
    before = condition.op is LastPerformedOp.BEFORE

    def test(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> bool:
        counter = state.events.get(event)
        if counter is None:
            return False
        last: int = counter[1]
        return last <= bound(now) if before else last > bound(now)

    return test


# --- typed predicates -------------------------------------------------------------------


def compile_predicate(predicate: Predicate) -> ValueTest:
    return cached("predicate", predicate, lambda: _compile_predicate(predicate))


def _compile_predicate(predicate: Predicate) -> ValueTest:
    op = predicate.op
    if op is Op.EXISTS:
        return lambda value, now, tz: value is not None
    if op is Op.NOT_EXISTS:
        return lambda value, now, tz: value is None
    missing = op in HOLD_WHEN_MISSING
    operand = predicate.operand
    tag_type = predicate.type
    if tag_type is TagType.DATE:
        on_date = _date_test(op, operand)

        def date_test(value: JSON | None, now: int, tz: tzinfo) -> bool:
            if value is None:
                return missing
            return isinstance(value, dict) and "d" in value and on_date(value["d"], now, tz)

        return date_test
    typed = _price_reader(operand) if tag_type is TagType.PRICE else _READERS[tag_type]
    if tag_type is TagType.PRICE:
        operand = _amounts(operand)
    compared = _list_test(op, operand) if tag_type is TagType.LIST else comparison(op, operand)

    def test(value: JSON | None, now: int, tz: tzinfo) -> bool:
        if value is None:
            return missing
        read = typed(value)
        return read is not _INCOMPARABLE and compared(read)

    return test


def _read_number(value: JSON) -> Any:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return value if numeric else _INCOMPARABLE


def _read_version(value: JSON) -> Any:
    return tuple(value["v"]) if isinstance(value, dict) and "v" in value else _INCOMPARABLE


_READERS: dict[TagType, Callable[[JSON], Any]] = {
    TagType.INTEGER: _read_number,
    TagType.STRING: lambda value: value if isinstance(value, str) else _INCOMPARABLE,
    TagType.BOOLEAN: lambda value: value if isinstance(value, bool) else _INCOMPARABLE,
    TagType.LIST: lambda value: value if isinstance(value, list) else _INCOMPARABLE,
    TagType.VERSION: _read_version,
}


def _price_reader(operand: Price | tuple[Price, Price]) -> Callable[[JSON], Any]:
    """Prices compare only within one currency: another currency never matches (not
    even ``noteq``: 10 USD is neither equal nor unequal to 10 EUR)."""
    currency = (operand[0] if isinstance(operand, tuple) else operand).currency

    def read(value: JSON) -> Any:
        if isinstance(value, dict) and value.get("c") == currency and "p" in value:
            return Decimal(value["p"])
        return _INCOMPARABLE

    return read


def _amounts(operand: Price | tuple[Price, Price]) -> Any:
    if isinstance(operand, tuple):
        return operand[0].amount, operand[1].amount
    return operand.amount


def comparison(op: Op, operand: Any) -> Callable[[Any], bool]:
    """An ordered or membership operator; ``between`` includes both bounds."""
    if op is Op.EQ:
        return lambda value: bool(value == operand)
    if op is Op.NOTEQ:
        return lambda value: bool(value != operand)
    if op is Op.IN:
        return lambda value: value in operand
    if op is Op.NOTIN:
        return lambda value: value not in operand
    if op is Op.GT:
        return lambda value: bool(value > operand)
    if op is Op.GTE:
        return lambda value: bool(value >= operand)
    if op is Op.LT:
        return lambda value: bool(value < operand)
    if op is Op.LTE:
        return lambda value: bool(value <= operand)
    if op is Op.BETWEEN:
        low, high = operand
        return lambda value: bool(low <= value <= high)
    raise ValueError(f"'{op}' is not a comparison")


def _list_test(op: Op, operand: tuple[str | int, ...]) -> Callable[[Any], bool]:
    if op is Op.CONTAINS_ANY:
        return lambda items: any(item in items for item in operand)
    if op is Op.CONTAINS_NONE:
        return lambda items: not any(item in items for item in operand)
    return lambda items: all(item in items for item in operand)


def _date_test(op: Op, operand: Any) -> Callable[[int, int, tzinfo], bool]:
    """Dates compare as instants, but ``eq`` / ``noteq`` as calendar days of the zone
    (N days ago: the day N days before today). ``within_last N``: between now - N days
    and now; ``more_than_ago N``: before now - N days."""
    if op is Op.WITHIN_LAST:
        span = operand * DAY
        return lambda instant, now, tz: now - span <= instant <= now
    if op is Op.MORE_THAN_AGO:
        span = operand * DAY
        return lambda instant, now, tz: instant < now - span
    if op in (Op.EQ, Op.NOTEQ):
        wanted = op is Op.EQ
        if isinstance(operand, DaysAgo):
            back = operand.days_ago
            return lambda instant, now, tz: (
                (local_day(instant, tz) == local_today(now, tz) - back) == wanted
            )
        fixed = to_ms(operand)
        return lambda instant, now, tz: (local_day(instant, tz) == local_day(fixed, tz)) == wanted
    if op is Op.BETWEEN:
        low, high = bound_of(operand[0]), bound_of(operand[1])
        return lambda instant, now, tz: low(now) <= instant <= high(now)
    bound = bound_of(operand)
    if op is Op.GT:
        return lambda instant, now, tz: instant > bound(now)
    if op is Op.GTE:
        return lambda instant, now, tz: instant >= bound(now)
    if op is Op.LT:
        return lambda instant, now, tz: instant < bound(now)
    return lambda instant, now, tz: instant <= bound(now)
