"""When can a condition's result change with no new input?

``next_change`` returns the first instant after ``now`` at which the result may differ:
an occurrence leaving a ``last`` window, a local midnight moving a calendar-day window,
a relative date being crossed, the last occurrence of an event turning N days old. For
every leaf it is exact at the millisecond (the result is the same from ``now`` until
that instant, and differs at it), given the bucket semantics of evaluate.py; an AND, OR
or AND NOT takes the earliest instant of its children, which may come early, never late.
A reference to another segment has no instant of its own: that segment's own timer
fires, and its referrers are evaluated with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from engine.segments.evaluate import (
    CounterOf,
    MemberOf,
    StateTest,
    cached,
    compile_condition,
    count_test,
    counter_of,
    day_start,
    is_fine,
    local_day,
    local_today_bounds,
)
from engine.segments.state import (
    DAY,
    MINUTE,
    QUARTER,
    QUARTER_MS,
    UNIT_MS,
    Counter,
    UserState,
    count_in,
    from_ms,
    newest_bucket,
    placed,
    to_ms,
)
from schemas.segments import (
    All,
    AndNot,
    Any_,
    Condition,
    Count,
    CountOp,
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
    timed = _count_timed(get, window, test, bound)
    if timed is None:
        return None
    return lambda state, now, tz: timed(state, now, tz)[1]


Timed = Callable[[UserState, int, tzinfo], tuple[bool, int | None]]
"""``test`` of a window's count, and when it may flip: (state, now, zone) -> both."""

Threshold = tuple[bool, int]
"""A count test that is a threshold: (True, n) for ``count >= n``, (False, n) for
``count <= n``. Such a test flips once as occurrences leave a window, so a walk from the
newest occurrence can stop at the n-th (or n + 1-th)."""

AT_LEAST_ONE: Threshold = (True, 1)


def threshold(count: Count) -> Threshold | None:
    """``count`` as a threshold, where it is one (``eq 0`` is ``<= 0``; ``between 0
    and n`` is ``<= n``)."""
    value = count.value
    if isinstance(value, tuple):
        return (False, value[1]) if value[0] == 0 else None
    if count.op is CountOp.GTE:
        return True, value
    if count.op is CountOp.LTE or value == 0:
        return False, value
    return None


def _count_timed(
    get: CounterOf,
    window: Window,
    test: Callable[[int], bool],
    bound: Threshold | None = None,
) -> Timed | None:
    """The window's count tested, and when that may flip (the count itself is the one
    evaluate.py counts); None for windows nothing enters or leaves as time passes.
    ``bound``: ``test`` as a threshold, where it is one."""
    if window.kind in ("ever", "between_dates"):
        return None
    if window.kind == "last":
        length = (window.n or 0) * UNIT_MS[window.unit]
        fine = is_fine(window)
        if bound is not None:
            at_least, value = bound
            # Occurrences to find from the newest on for the test to hold (at least) or
            # fail (at most): with none to find, it always holds.
            need = value if at_least else value + 1
            if need <= 0:
                return lambda state, now, tz: (True, None)

            def threshold_last(state: UserState, now: int, tz: tzinfo) -> tuple[bool, int | None]:
                counter = get(state)
                if counter is None:
                    return not at_least, None
                return _last_threshold(counter, length, fine, need, at_least, test, now)

            return threshold_last

        def last(state: UserState, now: int, tz: tzinfo) -> tuple[bool, int | None]:
            counter = get(state)
            if counter is None:
                return test(0), None
            return _last_window(counter, length, fine, test, now)

        return last
    near = window.n or 0
    far = window.m if window.kind == "between_ago" else near
    assert far is not None
    open_ended = window.kind == "ago_or_more"

    def days(state: UserState, now: int, tz: tzinfo) -> tuple[bool, int | None]:
        counter = get(state)
        if counter is None:
            return test(0), None
        return _day_window(counter, near, None if open_ended else far, test, now, tz)

    return days


def _last_window(
    counter: Counter, length: int, fine: bool, test: Callable[[int], bool], now: int
) -> tuple[bool, int | None]:
    # Without input the count only falls, one bucket at a time, at bucket start + length.
    inside = placed(counter, now - length + 1, fine=fine)
    remaining = sum(inside.values())
    current = test(remaining)
    for start in sorted(inside):
        remaining -= inside[start]
        if test(remaining) != current:
            return current, start + length
    return current, None


def _last_threshold(
    counter: Counter,
    length: int,
    fine: bool,
    need: int,
    at_least: bool,
    test: Callable[[int], bool],
    now: int,
) -> tuple[bool, int | None]:
    """``_last_window`` for a threshold test: whether the window holds ``need``
    occurrences (then ``at_least`` holds until the ``need``-th newest leaves; ``at
    most`` fails until then), walking the buckets from the newest, placed as ``placed``
    places them. Buckets out of order (never written so) go the general way."""
    low = now - length + 1
    last: int = counter[1]
    minutes: list[int] = counter[2]
    quarters: list[int] = counter[3]
    minute = last // MINUTE
    found = 0
    newest = 0  # 1 while the first bucket still holds the newest occurrence
    if minutes and minutes[0] == minute:
        newest = 1
    elif quarters and quarters[0] == minute // QUARTER:
        if minutes:
            return _last_window(counter, length, fine, test, now)
        newest = 1
    if newest and last >= low:  # the newest occurrence counts at its instant
        found = 1
        if found >= need:
            return at_least, last + length
    previous = last
    scale, group = (MINUTE, 1) if fine else (QUARTER_MS, QUARTER)
    for tier in (minutes, quarters):
        key = 0
        for index in range(0, len(tier), 2):
            key = tier[0] if index == 0 else key - tier[index]
            start = key // group * scale
            if start > previous:
                return _last_window(counter, length, fine, test, now)
            if start < low:
                break  # newest first: every further bucket is older
            found += tier[index + 1] - newest
            newest = 0
            if found >= need:
                return at_least, start + length
            previous = start
        scale, group = QUARTER_MS, 1
    return not at_least, None


# How many days ahead a calendar-day window is walked day by day; further (future-dated
# occurrences) it goes by the days that have occurrences.
_DAYS_AHEAD = 64


def _day_window(
    counter: Counter,
    near: int,
    far: int | None,
    test: Callable[[int], bool],
    now: int,
    tz: tzinfo,
) -> tuple[bool, int | None]:
    """A window of the days ``today - far`` to ``today - near`` (``far`` None: every
    day up to ``today - near``, as ``ago_or_more``)."""
    # Calendar-day windows move at local midnights. An occurrence on local day d enters
    # the window when today = d + near, and leaves when today = d + far + 1.
    today, today_low, today_high = local_today_bounds(now, tz)
    if far is None:
        # Days up to today - near are in for good (with what is older than the buckets,
        # counted in the total only): only the later days are still to enter.
        low = day_start(today - near + 1, tz)
        count = int(counter[0]) - count_in(counter, low, None, fine=False)
    else:
        # Days before today - far have entered and left for good: only later ones matter.
        low = day_start(today - far, tz)
        count = 0
    per_day = _per_day(counter, low, today, today_low, today_high, tz)
    if not per_day:
        return test(count), None
    inside = today - near
    for day, found in per_day.items():
        if day <= inside:
            count += found
    current = test(count)
    end = max(per_day) + (near if far is None else far + 1)  # the last turn
    if end - today > _DAYS_AHEAD:
        return _day_turns(per_day, near, far, count, current, test, today, tz)
    get = per_day.get
    for turn in range(today + 1, end + 1):
        count += get(turn - near, 0)
        if far is not None:
            count -= get(turn - far - 1, 0)
        if test(count) != current:
            return current, day_start(turn, tz)
    return current, None


def _day_turns(
    per_day: dict[int, int],
    near: int,
    far: int | None,
    count: int,
    current: bool,
    test: Callable[[int], bool],
    today: int,
    tz: tzinfo,
) -> tuple[bool, int | None]:
    """``_day_window``'s sweep over the days on which the count changes only."""
    deltas: dict[int, int] = {}
    for day, found in per_day.items():
        deltas[day + near] = deltas.get(day + near, 0) + found
        if far is not None:
            deltas[day + far + 1] = deltas.get(day + far + 1, 0) - found
    for turn in sorted(turn for turn in deltas if turn > today):
        count += deltas[turn]
        if test(count) != current:
            return current, day_start(turn, tz)
    return current, None


def _per_day(
    counter: Counter, low: int, today: int, today_low: int, today_high: int, tz: tzinfo
) -> dict[int, int]:
    """Occurrences from instant ``low`` on, by local day: each at its quarter hour's
    start, the newest at its instant (as ``occurrences`` places them). ``today_low``
    and ``today_high``: the first instants of ``today`` and of the next day."""
    per_day: dict[int, int] = {}
    # From ``even`` to the end of today every day is 24 hours: a day is a division there.
    even = _even_since(today, today_low, today_high, tz)
    # Buckets come newest first: walk the days down from today (up for a future one),
    # adding up a day's buckets before storing them.
    day, day_low, day_high = today, today_low, today_high
    low_quarter = -(-low // QUARTER_MS)
    found = 0
    for tier, group in ((counter[2], QUARTER), (counter[3], 1)):
        key = 0
        for index in range(0, len(tier), 2):
            key = tier[0] if index == 0 else key - tier[index]
            quarter = key // group
            if quarter < low_quarter:
                break
            start = quarter * QUARTER_MS
            if not day_low <= start < day_high:
                if found:
                    per_day[day] = per_day.get(day, 0) + found
                    found = 0
                if even <= start < today_high:
                    shift = (start - today_low) // DAY
                    day, day_low = today + shift, today_low + shift * DAY
                    day_high = day_low + DAY
                else:
                    day, day_low, day_high = _walk(start, day, day_low, day_high, tz)
            found += tier[index + 1]
    if found:
        per_day[day] = per_day.get(day, 0) + found
    newest = newest_bucket(counter, fine=False)
    if newest is not None:  # the newest occurrence counts at its instant
        last: int = counter[1]
        for instant, change in ((newest, -1), (last, 1)):
            if instant < low:
                continue
            if even <= instant < today_high:
                day = today + (instant - today_low) // DAY
            else:
                day = _walk(instant, today, today_low, today_high, tz)[0]
            per_day[day] = per_day.get(day, 0) + change
    return per_day


def _even_since(today: int, today_low: int, today_high: int, tz: tzinfo) -> int:
    """The first instant of the earliest day (back to ``_EVEN_DAYS`` before ``today``)
    from which every day up to ``today`` is 24 hours long; ``today_high`` when today
    is not. Remembered per zone and day."""
    since = _EVEN.get((tz, today))
    if since is not None:
        return since
    since = today_high
    if today_high - today_low == DAY:
        since = today_low
        for back in range(1, _EVEN_DAYS + 1):
            if day_start(today - back, tz) != today_low - back * DAY:
                break
            since = today_low - back * DAY
    if len(_EVEN) > 4096:  # zones and days in use are few; never let the cache grow
        _EVEN.clear()
    _EVEN[tz, today] = since
    return since


_EVEN_DAYS = 100
_EVEN: dict[tuple[tzinfo, int], int] = {}
"""``_even_since`` by zone and day."""


def _walk(instant: int, day: int, low: int, high: int, tz: tzinfo) -> tuple[int, int, int]:
    """From local ``day`` (its first instant ``low``, and the next day's, ``high``) to
    the day of ``instant``, a day at a time: (that day, its first instant, the next's)."""
    while instant < low:
        day, high = day - 1, low
        low = day_start(day, tz)
    while instant >= high:
        day, low = day + 1, high
        high = day_start(day + 1, tz)
    return day, low, high


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
        timed = _count_timed(counter_of(condition), condition.window, test, bound)
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
