"""Does a user's state satisfy a condition at an instant? Pure and exact; the rules are
in docs/segments.md ("How membership is kept").

Time is in epoch milliseconds throughout. Calendar days are those of the segment's
time zone. Windows count occurrences by the start of their bucket (their minute in
windows of up to ``RECENT`` minutes, their quarter hour in every other window), except
each counter's newest occurrence, which counts at its exact instant: so "at least once"
and "never" within the last N are exact.

A condition is compiled once into nested closures (operands normalised, counter keys
and window lengths worked out), so evaluating it is a few calls per node; compiled
forms are cached per condition object.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from engine.segments.state import (
    DAY,
    JSON,
    MINUTE,
    QUARTER_MS,
    RECENT,
    UNIT_MS,
    Counter,
    UserState,
    count_in,
    filter_key,
    from_ms,
    message_key,
    to_ms,
)
from schemas.segments import (
    All,
    AndNot,
    Condition,
    Count,
    CountOp,
    DaysAgo,
    EventCondition,
    LastPerformedCondition,
    LastPerformedOp,
    MessageCondition,
    Op,
    Predicate,
    Price,
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
CounterOf = Callable[[UserState], Counter | None]
WindowCount = Callable[[Counter, int, tzinfo], int]

# Negative operators are the complements of positive ones, so they hold for a tag the
# user does not have. A value of another type cannot be compared: it is neither equal
# nor unequal, and only ``exists`` holds for it.
HOLD_WHEN_MISSING = frozenset({Op.NOT_EXISTS, Op.NOTEQ, Op.NOTIN, Op.CONTAINS_NONE})

_INCOMPARABLE: Any = object()

T = TypeVar("T")
_COMPILED: dict[tuple[str, int], tuple[object, Any]] = {}


def cached(kind: str, item: object, build: Callable[[], T]) -> T:
    """``build()``, once per (kind, object); the object is kept so its id stays its own."""
    found = _COMPILED.get((kind, id(item)))
    if found is not None and found[0] is item:
        result: T = found[1]
        return result
    if len(_COMPILED) > 50_000:  # definitions come and go; the cache must not grow with them
        _COMPILED.clear()
    built = build()
    _COMPILED[(kind, id(item))] = (item, built)
    return built


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
    if isinstance(condition, AndNot):
        include = compile_condition(condition.include)
        exclude = compile_condition(condition.exclude)
        return lambda state, now, tz, member_of: (
            include(state, now, tz, member_of) and not exclude(state, now, tz, member_of)
        )
    children = tuple(compile_condition(child) for child in condition.conditions)
    return _all(children) if isinstance(condition, All) else _any(children)


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


# --- calendar days ------------------------------------------------------------------


def local_day(ms: int, tz: tzinfo) -> int:
    """The proleptic ordinal of the local calendar day containing instant ``ms``."""
    # Bucket starts recur from step to step; other instants (``now``) within one step.
    if ms % QUARTER_MS:
        return _day_of_instant(ms, tz)
    return _day_of_quarter(ms, tz)


def local_today(now: int, tz: tzinfo) -> int:
    """``local_day`` of the current instant: remembered per zone while it lasts."""
    known = _TODAY.get(tz)
    if known is not None and known[0] <= now < known[1]:
        return known[2]
    return local_today_bounds(now, tz)[0]


def local_today_bounds(now: int, tz: tzinfo) -> tuple[int, int, int]:
    """``local_today``, with the first instants of that day and of the next."""
    known = _TODAY.get(tz)
    if known is not None and known[0] <= now < known[1]:
        return known[2], known[0], known[1]
    # Ticks evaluate at their timers' instants, inputs at theirs: a zone's days alternate.
    for known in _DAYS.get((tz, now // DAY), ()):
        if known[0] <= now < known[1]:
            _TODAY[tz] = known
            return known[2], known[0], known[1]
    day = local_day(now, tz)
    low, high = day_start(day, tz), day_start(day + 1, tz)
    # Only a day of exactly 24 hours has one UTC offset throughout (no DST change in it,
    # so every instant in it is on that day); other days are looked up every time.
    if high - low == DAY:
        if len(_TODAY) > 256:  # zones are few; never let the cache grow with them
            _TODAY.clear()
        if len(_DAYS) > 8192:
            _DAYS.clear()
        known = _TODAY[tz] = (low, high, day)
        for utc_day in {low // DAY, (high - 1) // DAY}:
            _DAYS.setdefault((tz, utc_day), []).append(known)
    return day, low, high


_TODAY: dict[tzinfo, tuple[int, int, int]] = {}
"""Per zone, the day of the instant last looked up: (first instant, end, ordinal)."""
_DAYS: dict[tuple[tzinfo, int], list[tuple[int, int, int]]] = {}
"""Local days of 24 hours looked up, as ``_TODAY`` has them, by zone and by the UTC
days they overlap."""


@lru_cache(maxsize=256)
def _day_of_instant(ms: int, tz: tzinfo) -> int:
    return from_ms(ms).astimezone(tz).toordinal()


@lru_cache(maxsize=65536)
def _day_of_quarter(ms: int, tz: tzinfo) -> int:
    return from_ms(ms).astimezone(tz).toordinal()


@lru_cache(maxsize=8192)
def day_start(ordinal: int, tz: tzinfo) -> int:
    """The first instant (ms) of a local day. Where midnight is skipped by a DST change,
    fold=0 reads it with the offset before the change: the instant of the change."""
    return to_ms(datetime.combine(date.fromordinal(ordinal), time(0), tzinfo=tz))


# --- counters and windows -------------------------------------------------------------


def is_fine(window: Window) -> bool:
    """Whether a window counts by the minute (``last`` up to ``RECENT`` minutes)."""
    return window.kind == "last" and (window.n or 0) * UNIT_MS[window.unit] <= RECENT * MINUTE


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


def window_counter(window: Window) -> WindowCount:
    """(counter, now, zone) -> occurrences within ``window`` at ``now``."""
    return cached("window", window, lambda: _window_counter(window))


def _window_counter(window: Window) -> WindowCount:
    kind = window.kind
    n = window.n or 0
    if kind == "ever":
        return lambda counter, now, tz: int(counter[0])
    if kind == "last":
        length = n * UNIT_MS[window.unit]
        fine = is_fine(window)
        # An occurrence leaves the window exactly ``length`` after its bucket's start.
        return lambda counter, now, tz: count_in(counter, now - length + 1, None, fine=fine)
    if kind == "between_dates":
        assert window.start is not None
        assert window.end is not None
        start, end = to_ms(window.start), to_ms(window.end)
        return lambda counter, now, tz: count_in(counter, start, end, fine=False)
    if kind == "ago_or_more":
        # Everything but what happened after day (today - n); what is older than the
        # buckets still counts in the total, so this is exact within the horizon.
        def older(counter: Counter, now: int, tz: tzinfo) -> int:
            after = day_start(local_today(now, tz) - n + 1, tz)
            return int(counter[0]) - count_in(counter, after, None, fine=False)

        return older
    far = window.m if kind == "between_ago" else n
    assert far is not None

    def days(counter: Counter, now: int, tz: tzinfo) -> int:
        today = local_today(now, tz)
        return count_in(
            counter, day_start(today - far, tz), day_start(today - n + 1, tz), fine=False
        )

    return days


def count_test(count: Count) -> Callable[[int], bool]:
    bound = count.value
    if isinstance(bound, tuple):
        low, high = bound
        return lambda value: low <= value <= high
    if count.op is CountOp.EQ:
        return lambda value: value == bound
    if count.op is CountOp.GTE:
        return lambda value: value >= bound
    return lambda value: value <= bound


def _count_test_of(get: CounterOf, window: Window, test: Callable[[int], bool]) -> StateTest:
    counted = window_counter(window)

    def holds(state: UserState, now: int, tz: tzinfo, member_of: MemberOf) -> bool:
        counter = get(state)
        return test(0 if counter is None else counted(counter, now, tz))

    return holds


def window_count(counter: Counter | None, window: Window, now: int, tz: tzinfo) -> int:
    """Occurrences of ``counter`` within ``window`` at instant ``now``."""
    return 0 if counter is None else window_counter(window)(counter, now, tz)


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


def predicate_holds(predicate: Predicate, value: JSON | None, now: int, tz: tzinfo) -> bool:
    """``predicate`` on a stored value (None: the user has no such tag or attribute)."""
    return compile_predicate(predicate)(value, now, tz)


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
