"""What a window of an event or message condition holds: the one place a window's
meaning is written, for evaluation (how many occurrences it holds at an instant) and for
timers (when, with no new input, its count's test next flips). The rules are in
docs/segments.md ("How membership is kept").

Occurrences are placed as engine/segments/counters.py places them: each at the start of
its bucket (its minute in windows of up to ``RECENT`` minutes, its quarter hour in every
other window), except each counter's newest occurrence, which counts at its exact
instant; so "at least once" and "never" within the last N are exact.

- ``ever``: every occurrence (the all-time total).
- ``last N units``: a rolling window, the occurrences placed from ``last_low(now)`` on;
  one placed at t is in it from t until ``last_leaves(t)``.
- ``between_dates``: the occurrences placed in [start, end); time never changes it.
- ``exactly N days ago``, ``between N and M days ago``: the local calendar days
  ``today - far`` to ``today - near`` of the segment's zone (``far`` is N, or M), from
  ``days_low`` to ``days_end``; an occurrence on day d is in while today is from
  ``day_enters(d)`` to before ``day_leaves(d)``.
- ``N days ago or more``: every day up to ``today - near`` (to ``days_end``), with what
  is older than the buckets (the total less what is newer), as an open-ended day window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from engine.segments.cache import cached
from engine.segments.counters import (
    DEFAULT_HORIZON,
    QUARTER,
    QUARTER_MS,
    RECENT,
    Counter,
    count_in,
    occurrences_by_day,
    placed,
)
from engine.segments.keys import CounterOf, condition_counts
from engine.segments.state import UserState
from engine.time import DAY, MINUTE, MS, day_start, local_today, local_today_bounds, to_ms
from schemas.segments import Condition, Count, CountOp, EventCondition, Unit, Window

UNIT_MS = {Unit.MINUTES: MINUTE, Unit.HOURS: 60 * MINUTE, Unit.DAYS: DAY}

WindowCount = Callable[[Counter, int, tzinfo], int]
"""A compiled window: (counter, now in ms, zone) -> occurrences in it at ``now``."""


# --- a window's bounds ------------------------------------------------------------------


def is_fine(window: Window) -> bool:
    """Whether a window counts by the minute (``last`` up to ``RECENT`` minutes)."""
    return window.kind == "last" and (window.n or 0) * UNIT_MS[window.unit] <= RECENT * MINUTE


def last_low(now: int, length: int) -> int:
    """The first instant a window of the last ``length`` ms holds at ``now``."""
    return now - length + 1


def last_leaves(placed_at: int, length: int) -> int:
    """The instant an occurrence placed at ``placed_at`` leaves a window of the last
    ``length`` ms: the first ``now`` whose ``last_low`` is past it."""
    return placed_at + length


def days_low(today: int, far: int, tz: tzinfo) -> int:
    """The first instant of a day window reaching back ``far`` days from ``today``."""
    return day_start(today - far, tz)


def days_end(today: int, near: int, tz: tzinfo) -> int:
    """The end (exclusive) of a day window ending ``near`` days before ``today``."""
    return day_start(today - near + 1, tz)


def day_enters(day: int, near: int) -> int:
    """The ``today`` on which day ``day`` enters a window ending ``near`` days ago."""
    return day + near


def day_leaves(day: int, far: int) -> int:
    """The ``today`` on which day ``day`` leaves a window reaching ``far`` days back."""
    return day + far + 1


# --- the count at an instant ------------------------------------------------------------


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
        return lambda counter, now, tz: count_in(counter, last_low(now, length), None, fine=fine)
    if kind == "between_dates":
        assert window.start is not None
        assert window.end is not None
        start, end = to_ms(window.start), to_ms(window.end)
        return lambda counter, now, tz: count_in(counter, start, end, fine=False)
    if kind == "ago_or_more":
        # Everything but what happened after day (today - n); what is older than the
        # buckets still counts in the total, so this is exact within the horizon.
        def older(counter: Counter, now: int, tz: tzinfo) -> int:
            after = days_end(local_today(now, tz), n, tz)
            return int(counter[0]) - count_in(counter, after, None, fine=False)

        return older
    far = window.m if kind == "between_ago" else n
    assert far is not None

    def days(counter: Counter, now: int, tz: tzinfo) -> int:
        today = local_today(now, tz)
        return count_in(counter, days_low(today, far, tz), days_end(today, n, tz), fine=False)

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


# --- the count's test, and when it flips -------------------------------------------------


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


def count_timed(
    get: CounterOf,
    window: Window,
    test: Callable[[int], bool],
    bound: Threshold | None = None,
) -> Timed | None:
    """The window's count tested, and when that may flip (the count itself is the one
    ``window_counter`` counts); None for windows nothing enters or leaves as time passes.
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
    # Without input the count only falls, one bucket at a time, as each leaves.
    inside = placed(counter, last_low(now, length), fine=fine)
    remaining = sum(inside.values())
    current = test(remaining)
    for start in sorted(inside):
        remaining -= inside[start]
        if test(remaining) != current:
            return current, last_leaves(start, length)
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
    low = last_low(now, length)
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
            return at_least, last_leaves(last, length)
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
                return at_least, last_leaves(start, length)
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
    # Calendar-day windows move at local midnights: an occurrence on local day d is in
    # while today is from ``day_enters(d, near)`` to before ``day_leaves(d, far)``.
    today, today_low, today_high = local_today_bounds(now, tz)
    if far is None:
        # Days up to today - near are in for good (with what is older than the buckets,
        # counted in the total only): only the later days are still to enter.
        low = days_end(today, near, tz)
        count = int(counter[0]) - count_in(counter, low, None, fine=False)
    else:
        # Days before today - far have entered and left for good: only later ones matter.
        low = days_low(today, far, tz)
        count = 0
    per_day = occurrences_by_day(counter, low, today, today_low, today_high, tz)
    if not per_day:
        return test(count), None
    inside = today - near
    for day, found in per_day.items():
        if day <= inside:
            count += found
    current = test(count)
    last_day = max(per_day)  # the last turn: its entry, or its leaving
    end = day_enters(last_day, near) if far is None else day_leaves(last_day, far)
    if end - today > _DAYS_AHEAD:
        return _day_turns(per_day, near, far, count, current, test, today, tz)
    get = per_day.get
    # On day ``turn`` the day ``turn - near`` enters and ``turn - far - 1`` leaves.
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
        enters = day_enters(day, near)
        deltas[enters] = deltas.get(enters, 0) + found
        if far is not None:
            leaves = day_leaves(day, far)
            deltas[leaves] = deltas.get(leaves, 0) - found
    for turn in sorted(turn for turn in deltas if turn > today):
        count += deltas[turn]
        if test(count) != current:
            return current, day_start(turn, tz)
    return current, None


# --- the horizon --------------------------------------------------------------------------


def window_problem(window: Window, horizon: timedelta = DEFAULT_HORIZON) -> str | None:
    """Why ``window`` cannot be answered exactly with ``horizon`` of history, or None.

    ``ever`` is answered from all-time totals, whatever its age. ``between_dates`` is
    checked against the horizon by ``dates_problem`` when the definition is applied.
    """
    days = horizon // timedelta(days=1)
    if window.kind == "last":
        n = window.n or 0
        if n * UNIT_MS[window.unit] > horizon // MS:
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
