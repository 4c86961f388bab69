"""One window, two questions (engine/segments/windows.py): the count a window holds at
an instant, and when, with no new input, the count's test next flips. For random
windows, histories, count tests, zones and instants, the flip instant must be exact:
the test's result is the same from ``now`` up to a millisecond before it, and differs
at it; and with no flip announced, it never changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.segments.counters import count_into
from engine.segments.keys import counter_of
from engine.segments.state import UserState
from engine.segments.windows import (
    count_test,
    count_timed,
    last_leaves,
    last_low,
    threshold,
    window_counter,
)
from engine.time import DAY, MINUTE, to_ms
from schemas.segments import Count, CountOp, EventCondition, Window

T0 = to_ms(datetime(2024, 3, 8, 20, 0, tzinfo=UTC))  # New York moves its clocks on March 10
ZONES = [ZoneInfo(name) for name in ("UTC", "America/New_York", "Asia/Kolkata", "Europe/Paris")]
HORIZON = timedelta(days=90)

windows = st.one_of(
    st.builds(
        lambda n, unit: Window(kind="last", n=n, unit=unit),
        st.integers(1, 200),
        st.sampled_from(["minutes", "hours"]),
    ),
    st.builds(lambda n: Window(kind="last", n=n, unit="days"), st.integers(1, 10)),
    st.builds(lambda n: Window(kind="exactly_ago", n=n), st.integers(0, 6)),
    st.builds(lambda n: Window(kind="ago_or_more", n=n), st.integers(0, 6)),
    st.builds(
        lambda n, more: Window(kind="between_ago", n=n, m=n + more),
        st.integers(0, 4),
        st.integers(1, 4),
    ),
)
counts = st.one_of(
    st.builds(
        lambda op, n: Count(op=op, value=n),
        st.sampled_from([CountOp.EQ, CountOp.GTE, CountOp.LTE]),
        st.integers(0, 4),
    ),
    st.builds(
        lambda low, more: Count(op=CountOp.BETWEEN, value=(low, low + more)),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
)
# Arrivals, in minutes before T0 (time only moves on), and how far each event's own
# time is from its arrival: mostly on time, some late, some future-dated.
arrivals = st.lists(st.integers(0, 10 * 24 * 60), max_size=25)
skews = st.lists(
    st.one_of(st.just(0), st.integers(-3 * 24 * 60, 0), st.integers(0, 24 * 60)),
    min_size=25,
    max_size=25,
)


def _state(arrivals: list[int], skews: list[int], seconds: list[int]) -> UserState:
    """Events counted as the engine counts them: buckets settled at each arrival."""
    counter = None
    for arrival, skew, second in zip(sorted(arrivals, reverse=True), skews, seconds, strict=False):
        now = T0 - arrival * MINUTE + second * 1000
        counter = count_into(counter, now + skew * MINUTE, now, HORIZON)
    return UserState(events={} if counter is None else {"Buy": counter})


@settings(max_examples=400, deadline=None)
@given(
    window=windows,
    count=counts,
    history=arrivals,
    skew=skews,
    seconds=st.lists(st.integers(0, 59), min_size=25, max_size=25),
    zone=st.sampled_from(ZONES),
    now_offset=st.integers(-2 * 24 * 60 * 60_000, 2 * 24 * 60 * 60_000),
    probes=st.lists(st.floats(0, 1, exclude_max=True), max_size=6),
)
def test_the_next_flip_is_exact(
    window: Window,
    count: Count,
    history: list[int],
    skew: list[int],
    seconds: list[int],
    zone: ZoneInfo,
    now_offset: int,
    probes: list[float],
) -> None:
    condition = EventCondition(event="Buy", count=count, window=window)
    state = _state(history, skew, seconds)
    now = T0 + now_offset
    test = count_test(count)
    counted = window_counter(window)
    counter = counter_of(condition)(state)

    def result(at: int) -> bool:
        return test(0 if counter is None else counted(counter, at, zone))

    for bound in (threshold(count), None):  # the threshold walk and the general one agree
        timed = count_timed(counter_of(condition), window, test, bound)
        assert timed is not None
        held, due = timed(state, now, zone)
        assert held == result(now)
        if due is None:
            for later in (now + 1, now + DAY, now + 20 * DAY, now + 200 * DAY):
                assert result(later) == held
            continue
        assert due > now
        assert result(due) != held
        assert result(due - 1) == held
        for probe in probes:
            assert result(now + int((due - now) * probe)) == held


@given(now=st.integers(-(10**13), 10**13), placed_at=st.integers(-(10**13), 10**13))
def test_an_occurrence_leaves_a_rolling_window_at_its_leaving_instant(
    now: int, placed_at: int
) -> None:
    length = 3 * DAY
    inside = placed_at >= last_low(now, length)
    assert inside == (placed_at <= now < last_leaves(placed_at, length) or placed_at > now)
