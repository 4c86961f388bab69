"""Evaluating conditions (engine/segments/evaluate.py, windows.py) and when they next
change (engine/segments/timing.py): every tag type and operator, count operators, every
window at its edges, last performed, messages, combinators; next_change is never late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from engine.segments.evaluate import evaluate
from engine.segments.state import UserState, apply_event, apply_feedback, apply_tag_update
from engine.segments.timing import compile_verdict, next_change
from engine.time import to_ms
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segments import Condition
from schemas.tags import TagUpdate

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)  # a Wednesday
UTC_ZONE = ZoneInfo("UTC")
KOLKATA = ZoneInfo("Asia/Kolkata")
MS = timedelta(milliseconds=1)


def cond(data: dict[str, Any]) -> Condition:
    return CONDITION.validate_python(data)


def with_tags(**values: Any) -> UserState:
    if not values:
        return UserState()
    update = TagUpdate.model_validate(
        {"user_id": "u", "op": "set", "tags": values, "timestamp": T0}
    )
    return apply_tag_update(UserState(), update)


def with_events(*items: tuple[str, datetime], now: datetime = T0) -> UserState:
    state = UserState()
    for name, at in items:
        state = apply_event(state, Event(user_id="u", name=name, timestamp=at), now=max(at, now))
    return state


def no_refs(segment_id: str) -> bool:
    raise AssertionError(f"unexpected reference to {segment_id}")


def check(
    condition: Condition, state: UserState, now: datetime = T0, tz: tzinfo = UTC_ZONE
) -> bool:
    return evaluate(condition, state, now, tz, no_refs)


# --- tags: every type and operator ----------------------------------------------------

PRICE_EUR = {"type": "price", "amount": "19.90", "currency": "EUR"}
VERSION = {"type": "version", "value": "4.12.1"}
DATE = {"type": "date", "value": "2024-04-28T15:00:00Z"}  # 2 days 19 hours before T0


def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


# (tag type, op, operand, stored tag value or None for missing, expected)
TAG_TABLE: list[tuple[str, str, Any, Any, bool]] = [
    # integer
    ("integer", "eq", 3, 3, True),
    ("integer", "eq", 3, 3.0, True),
    ("integer", "eq", 3, 4, False),
    ("integer", "noteq", 3, 4, True),
    ("integer", "noteq", 3, 3, False),
    ("integer", "gt", 3, 4, True),
    ("integer", "gt", 3, 3, False),
    ("integer", "gte", 3, 3, True),
    ("integer", "lt", 3, 2.5, True),
    ("integer", "lte", 3, 4, False),
    ("integer", "between", [17, 20], 17, True),
    ("integer", "between", [17, 20], 20, True),
    ("integer", "between", [17, 20], 21, False),
    ("integer", "in", [1, 2], 2, True),
    ("integer", "notin", [1, 2], 3, True),
    ("integer", "notin", [1, 2], 1, False),
    ("integer", "exists", None, 0, True),
    ("integer", "not_exists", None, 0, False),
    ("integer", "eq", 1, True, False),  # a boolean is not a number
    ("integer", "eq", 3, "3", False),  # nor is text
    ("integer", "noteq", 3, "3", False),  # another type: neither equal nor unequal
    # string (case-sensitive)
    ("string", "eq", "Hindi", "Hindi", True),
    ("string", "eq", "Hindi", "hindi", False),
    ("string", "noteq", "Hindi", "Tamil", True),
    ("string", "in", ["PT", "BR"], "BR", True),
    ("string", "in", ["PT", "BR"], "ES", False),
    ("string", "notin", ["PT", "BR"], "ES", True),
    ("string", "eq", "3", 3, False),
    ("string", "exists", None, "", True),
    # list
    ("list", "contains_any", ["a", "b"], ["b", "c"], True),
    ("list", "contains_any", ["a", "b"], ["c"], False),
    ("list", "contains_all", ["a", "b"], ["b", "a", "c"], True),
    ("list", "contains_all", ["a", "b"], ["a"], False),
    ("list", "contains_none", ["a", "b"], ["c"], True),
    ("list", "contains_none", ["a", "b"], ["a"], False),
    ("list", "contains_any", [1], [1, 2], True),
    ("list", "contains_any", [1], ["1"], False),
    ("list", "contains_any", ["a"], "a", False),  # text is not a list
    ("list", "contains_none", ["a"], "b", False),
    ("list", "exists", None, [], True),
    # boolean
    ("boolean", "eq", True, True, True),
    ("boolean", "eq", True, False, False),
    ("boolean", "noteq", True, False, True),
    ("boolean", "eq", True, 1, False),
    # version: per component, padded
    ("version", "eq", "4.12.1", VERSION, True),
    ("version", "eq", "4.12.1.0", VERSION, True),
    ("version", "gt", "4.9", VERSION, True),  # 12 > 9, not "1" < "9"
    ("version", "lt", "4.12.10", VERSION, True),
    ("version", "gte", "4.12.1", VERSION, True),
    ("version", "lte", "4.12", VERSION, False),
    ("version", "noteq", "4.12", VERSION, True),
    ("version", "between", ["4.0", "5.0"], VERSION, True),
    ("version", "between", ["4.13", "5.0"], VERSION, False),
    ("version", "in", ["4.12.1", "5"], VERSION, True),
    ("version", "notin", ["4.12", "5"], VERSION, True),
    ("version", "eq", "4.12.1", "4.12.1", False),  # plain text is not a version
    # price: only within one currency
    ("price", "eq", eur("19.9"), PRICE_EUR, True),
    ("price", "noteq", eur("20"), PRICE_EUR, True),
    ("price", "gt", eur("10"), PRICE_EUR, True),
    ("price", "gte", eur("19.90"), PRICE_EUR, True),
    ("price", "lt", eur("19.90"), PRICE_EUR, False),
    ("price", "lte", eur("19.90"), PRICE_EUR, True),
    ("price", "between", [eur("10"), eur("20")], PRICE_EUR, True),
    ("price", "gt", {"amount": "10", "currency": "USD"}, PRICE_EUR, False),
    ("price", "lt", {"amount": "100", "currency": "USD"}, PRICE_EUR, False),
    ("price", "noteq", {"amount": "19.90", "currency": "USD"}, PRICE_EUR, False),
    ("price", "exists", None, PRICE_EUR, True),
    # date: instants, calendar days for eq, relative N days ago
    ("date", "gt", "2024-04-28", DATE, True),
    ("date", "lt", "2024-04-28T15:00:00Z", DATE, False),
    ("date", "lte", "2024-04-28T15:00:00Z", DATE, True),
    ("date", "eq", "2024-04-28", DATE, True),  # the same UTC day
    ("date", "eq", "2024-04-29", DATE, False),
    ("date", "noteq", "2024-04-29", DATE, True),
    ("date", "eq", {"days_ago": 3}, DATE, True),  # calendar day 3 days before today
    ("date", "eq", {"days_ago": 2}, DATE, False),
    ("date", "gt", {"days_ago": 3}, DATE, True),  # after T0 - 72 h
    ("date", "gt", {"days_ago": 2}, DATE, False),  # before T0 - 48 h
    ("date", "between", [{"days_ago": 3}, {"days_ago": 2}], DATE, True),
    ("date", "between", ["2024-04-01", {"days_ago": 3}], DATE, False),
    ("date", "within_last", 3, DATE, True),
    ("date", "within_last", 2, DATE, False),
    ("date", "more_than_ago", 2, DATE, True),
    ("date", "more_than_ago", 3, DATE, False),
    ("date", "gte", "2024-04-28T15:00:00Z", DATE, True),
    ("date", "eq", "2024-04-28", "2024-04-28", False),  # text is not a date
    # presence, for the remaining types
    ("string", "not_exists", None, "", False),
    ("list", "not_exists", None, [], False),
    ("boolean", "exists", None, False, True),
    ("boolean", "not_exists", None, False, False),
    ("version", "exists", None, VERSION, True),
    ("version", "not_exists", None, "text", False),
    ("price", "not_exists", None, PRICE_EUR, False),
    ("date", "exists", None, DATE, True),
    ("date", "not_exists", None, DATE, False),
]

# On a missing tag exactly these hold.
MISSING_HOLDS = {"not_exists", "noteq", "notin", "contains_none"}


@pytest.mark.parametrize(("tag_type", "op", "operand", "value", "expected"), TAG_TABLE)
def test_tag_operators(tag_type: str, op: str, operand: Any, value: Any, expected: bool) -> None:
    condition = cond({"kind": "tag", "tag": "X", "type": tag_type, "op": op, "value": operand})
    assert check(condition, with_tags(X=value)) is expected
    # The same condition on a user without the tag.
    assert check(condition, UserState()) is (op in MISSING_HOLDS)


def test_every_type_and_operator_is_in_the_table() -> None:
    from schemas.segments import OPERATORS

    covered = {(tag_type, op) for tag_type, op, *_ in TAG_TABLE}
    wanted = {(str(t), str(op)) for t, ops in OPERATORS.items() for op in ops}
    assert wanted <= covered


def test_date_equality_follows_the_segment_zone() -> None:
    # 2024-04-30T20:00Z is already May 1 in India.
    state = with_tags(D={"type": "date", "value": "2024-04-30T20:00:00Z"})
    may_1 = cond(
        {"kind": "tag", "tag": "D", "type": "date", "op": "eq", "value": "2024-05-01T06:00:00Z"}
    )
    assert check(may_1, state, tz=KOLKATA)
    assert not check(may_1, state, tz=UTC_ZONE)


# --- events: counts and windows ---------------------------------------------------------


def event_cond(window: dict[str, Any], count: dict[str, Any] | None = None) -> Condition:
    data: dict[str, Any] = {"kind": "event", "event": "Buy", "window": window}
    if count is not None:
        data["count"] = count
    return cond(data)


@pytest.mark.parametrize(
    ("count", "times", "expected"),
    [
        ({"op": "eq", "value": 0}, 0, True),  # eq 0: never
        ({"op": "eq", "value": 0}, 1, False),
        ({"op": "eq", "value": 2}, 2, True),
        ({"op": "gte", "value": 2}, 1, False),
        ({"op": "gte", "value": 2}, 3, True),
        ({"op": "lte", "value": 2}, 3, False),
        ({"op": "lte", "value": 2}, 0, True),
        ({"op": "between", "value": [1, 2]}, 2, True),
        ({"op": "between", "value": [1, 2]}, 0, False),
    ],
)
def test_count_operators(count: dict[str, Any], times: int, expected: bool) -> None:
    state = with_events(*[("Buy", T0 - timedelta(hours=hour)) for hour in range(times)])
    assert check(event_cond({"kind": "ever"}, count), state) is expected


# An event at 10:00 sharp (a quarter hour, so rounding plays no part) and instants around
# the edges of each window.
EDGE = T0
WINDOW_TABLE: list[tuple[dict[str, Any], datetime, bool]] = [
    ({"kind": "last", "n": 30}, EDGE + timedelta(days=30) - MS, True),  # just inside
    ({"kind": "last", "n": 30}, EDGE + timedelta(days=30), False),  # at: gone
    ({"kind": "last", "n": 30}, EDGE + timedelta(days=31), False),  # outside
    ({"kind": "last", "n": 90, "unit": "minutes"}, EDGE + timedelta(minutes=90) - MS, True),
    ({"kind": "last", "n": 90, "unit": "minutes"}, EDGE + timedelta(minutes=90), False),
    ({"kind": "last", "n": 5, "unit": "hours"}, EDGE + timedelta(hours=5) - MS, True),
    ({"kind": "last", "n": 5, "unit": "hours"}, EDGE + timedelta(hours=5), False),
    ({"kind": "last", "n": 1}, EDGE - timedelta(minutes=1), True),  # future events count
    # exactly 3 days ago: the calendar day May 1 (UTC), seen from May 4
    ({"kind": "exactly_ago", "n": 3}, datetime(2024, 5, 4, 0, 0, tzinfo=UTC) - MS, False),
    ({"kind": "exactly_ago", "n": 3}, datetime(2024, 5, 4, 0, 0, tzinfo=UTC), True),
    ({"kind": "exactly_ago", "n": 3}, datetime(2024, 5, 5, 0, 0, tzinfo=UTC) - MS, True),
    ({"kind": "exactly_ago", "n": 3}, datetime(2024, 5, 5, 0, 0, tzinfo=UTC), False),
    ({"kind": "exactly_ago", "n": 0}, EDGE, True),  # today
    ({"kind": "ago_or_more", "n": 3}, datetime(2024, 5, 4, 0, 0, tzinfo=UTC) - MS, False),
    ({"kind": "ago_or_more", "n": 3}, datetime(2024, 5, 4, 0, 0, tzinfo=UTC), True),
    ({"kind": "ago_or_more", "n": 3}, datetime(2024, 6, 4, 0, 0, tzinfo=UTC), True),
    ({"kind": "between_ago", "n": 2, "m": 4}, datetime(2024, 5, 3, 0, 0, tzinfo=UTC) - MS, False),
    ({"kind": "between_ago", "n": 2, "m": 4}, datetime(2024, 5, 3, 0, 0, tzinfo=UTC), True),
    ({"kind": "between_ago", "n": 2, "m": 4}, datetime(2024, 5, 6, 0, 0, tzinfo=UTC) - MS, True),
    ({"kind": "between_ago", "n": 2, "m": 4}, datetime(2024, 5, 6, 0, 0, tzinfo=UTC), False),
    ({"kind": "between_dates", "start": "2024-05-01T10:00:00Z", "end": "2024-05-02"}, EDGE, True),
    ({"kind": "between_dates", "start": "2024-05-01T10:15:00Z", "end": "2024-05-02"}, EDGE, False),
    ({"kind": "between_dates", "start": "2024-04-01", "end": "2024-05-01T10:00:00Z"}, EDGE, False),
    ({"kind": "ever"}, EDGE + timedelta(days=3650), True),
]


@pytest.mark.parametrize(("window", "now", "expected"), WINDOW_TABLE)
def test_window_edges(window: dict[str, Any], now: datetime, expected: bool) -> None:
    state = with_events(("Buy", EDGE), now=EDGE)
    if now > EDGE + timedelta(hours=3):  # as the agent would: settled later, same answer
        state = apply_event(state, Event(user_id="u", name="Other", timestamp=now), now=now)
    assert check(event_cond(window), state, now) is expected


def test_the_newest_occurrence_is_exact_older_ones_round_down() -> None:
    first = T0 + timedelta(minutes=7, seconds=30)  # 10:07:30
    newest = T0 + timedelta(minutes=9, seconds=45)  # 10:09:45
    state = with_events(("Buy", first), ("Buy", newest), now=newest)
    once = event_cond({"kind": "last", "n": 30, "unit": "minutes"})
    twice = event_cond({"kind": "last", "n": 30, "unit": "minutes"}, {"op": "gte", "value": 2})
    # The older one counts from the start of its minute (10:07)...
    assert check(twice, state, T0 + timedelta(minutes=37) - MS)
    assert not check(twice, state, T0 + timedelta(minutes=37))
    # ... the newest from its exact instant: "at least once" is exact.
    assert check(once, state, newest + timedelta(minutes=30) - MS)
    assert not check(once, state, newest + timedelta(minutes=30))
    # Windows longer than three hours round to the quarter hour (10:00).
    twice_a_day = event_cond({"kind": "last", "n": 1}, {"op": "gte", "value": 2})
    assert check(twice_a_day, state, T0 + timedelta(days=1) - MS)
    assert not check(twice_a_day, state, T0 + timedelta(days=1))
    assert next_change(twice_a_day, state, newest, UTC_ZONE) == T0 + timedelta(days=1)


def test_exactly_three_days_ago_in_india_is_not_the_utc_day() -> None:
    # 2024-05-01T20:00Z is May 2, 01:30 in India.
    state = with_events(("Buy", datetime(2024, 5, 1, 20, 0, tzinfo=UTC)))
    exactly_3 = event_cond({"kind": "exactly_ago", "n": 3})
    may_4_noon = datetime(2024, 5, 4, 12, 0, tzinfo=UTC)
    may_5_noon = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)
    assert check(exactly_3, state, may_4_noon, UTC_ZONE)
    assert not check(exactly_3, state, may_4_noon, KOLKATA)
    assert check(exactly_3, state, may_5_noon, KOLKATA)
    # It starts at local midnight: 2024-05-04T18:30Z.
    start = datetime(2024, 5, 4, 18, 30, tzinfo=UTC)
    assert not check(exactly_3, state, start - MS, KOLKATA)
    assert check(exactly_3, state, start, KOLKATA)
    assert next_change(exactly_3, state, may_4_noon, KOLKATA) == start


def test_filtered_counts_read_their_own_counter() -> None:
    condition = cond(
        {
            "kind": "event",
            "event": "Buy",
            "filters": [{"attribute": "sku", "type": "string", "op": "eq", "value": "gems"}],
        }
    )
    # Nothing was counted under the filter's signature: no match, though Buy happened.
    assert not check(condition, with_events(("Buy", T0)))


# --- last performed -----------------------------------------------------------------------

OPENED = with_events(("Open", T0))


@pytest.mark.parametrize(
    ("data", "now", "expected"),
    [
        ({"op": "before", "date": {"days_ago": 7}}, T0 + timedelta(days=7) - MS, False),
        ({"op": "before", "date": {"days_ago": 7}}, T0 + timedelta(days=7), True),
        ({"op": "after", "date": {"days_ago": 7}}, T0 + timedelta(days=7) - MS, True),
        ({"op": "after", "date": {"days_ago": 7}}, T0 + timedelta(days=7), False),
        ({"op": "within", "n": 2, "unit": "hours"}, T0 + timedelta(hours=2) - MS, True),
        ({"op": "within", "n": 2, "unit": "hours"}, T0 + timedelta(hours=2), False),
        ({"op": "before", "date": "2024-05-02"}, T0, True),
        ({"op": "before", "date": "2024-05-01T10:00:00Z"}, T0, True),
        ({"op": "after", "date": "2024-05-01T10:00:00Z"}, T0, False),
        ({"op": "after", "date": "2024-04-30"}, T0, True),
    ],
)
def test_last_performed(data: dict[str, Any], now: datetime, expected: bool) -> None:
    condition = cond({"kind": "last_performed", "event": "Open", **data})
    assert check(condition, OPENED, now) is expected
    assert not check(condition, UserState(), now)  # never performed: never matches


# --- messages and combinators ---------------------------------------------------------------


def test_message_conditions() -> None:
    state = apply_feedback(
        UserState(),
        Feedback(command_id="c", user_id="u", status="opened", timestamp=T0, channel="email"),  # type: ignore[arg-type]
    )
    opened_email = cond(
        {
            "kind": "message",
            "action": "opened",
            "channel": "email",
            "window": {"kind": "last", "n": 5},
        }
    )
    not_opened = cond(
        {"kind": "message", "action": "opened", "negate": True, "window": {"kind": "last", "n": 5}}
    )
    opened_push = cond({"kind": "message", "action": "opened", "channel": "push"})
    clicked = cond({"kind": "message", "action": "clicked"})
    assert check(opened_email, state)
    assert not check(not_opened, state)
    assert check(not_opened, state, T0 + timedelta(days=5))
    assert next_change(not_opened, state, T0, UTC_ZONE) == T0 + timedelta(days=5)
    assert not check(opened_push, state)
    assert not check(clicked, state)


def test_and_or_and_not_and_references() -> None:
    state = with_tags(Country="PT", Plan="free")
    portugal = {"kind": "tag", "tag": "Country", "type": "string", "op": "eq", "value": "PT"}
    paid = {"kind": "tag", "tag": "Plan", "type": "string", "op": "eq", "value": "paid"}
    assert not check(cond({"kind": "and", "conditions": [portugal, paid]}), state)
    assert check(cond({"kind": "or", "conditions": [portugal, paid]}), state)
    assert check(cond({"kind": "and_not", "include": portugal, "exclude": paid}), state)
    ref = cond({"kind": "segment", "segment": "vip"})
    assert evaluate(ref, state, T0, UTC_ZONE, lambda segment: segment == "vip")
    assert not evaluate(ref, state, T0, UTC_ZONE, lambda segment: False)
    assert next_change(ref, state, T0, UTC_ZONE) is None


# --- next_change ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "state", "expected"),
    [
        # "has not opened for 7 days" turns true 7 days after the last open, exactly.
        (
            {"kind": "last_performed", "event": "Open", "op": "before", "date": {"days_ago": 7}},
            OPENED,
            T0 + timedelta(days=7),
        ),
        (
            {
                "kind": "tag",
                "tag": "Last Application Open",
                "type": "date",
                "op": "more_than_ago",
                "value": 7,
            },
            with_events(("ApplicationOpen", T0)),
            T0 + timedelta(days=7) + MS,
        ),
        (  # count gte 2: true until the older of two leaves
            {
                "kind": "event",
                "event": "Buy",
                "count": {"op": "gte", "value": 2},
                "window": {"kind": "last", "n": 30},
            },
            with_events(("Buy", T0 - timedelta(days=2)), ("Buy", T0)),
            T0 + timedelta(days=28),
        ),
        (  # eq 0 within 7 days: becomes true when the last one leaves, not the first
            {
                "kind": "event",
                "event": "Buy",
                "count": {"op": "eq", "value": 0},
                "window": {"kind": "last", "n": 7},
            },
            with_events(("Buy", T0 - timedelta(days=2)), ("Buy", T0)),
            T0 + timedelta(days=7),
        ),
        ({"kind": "event", "event": "Buy"}, with_events(("Buy", T0)), None),  # ever
        (
            {"kind": "tag", "tag": "Country", "type": "string", "op": "eq", "value": "PT"},
            with_tags(Country="PT"),
            None,
        ),
        (
            {"kind": "last_performed", "event": "Open", "op": "before", "date": {"days_ago": 7}},
            UserState(),
            None,
        ),
        (  # date eq N days ago: at the local midnight the tag's day becomes "3 days ago"
            {"kind": "tag", "tag": "D", "type": "date", "op": "eq", "value": {"days_ago": 3}},
            with_tags(D={"type": "date", "value": "2024-05-01T08:00:00Z"}),
            datetime(2024, 5, 4, tzinfo=UTC),
        ),
        (
            {"kind": "tag", "tag": "D", "type": "date", "op": "within_last", "value": 1},
            with_tags(D={"type": "date", "value": "2024-05-03T08:00:00Z"}),
            datetime(2024, 5, 3, 8, tzinfo=UTC),
        ),
        (  # AND: the earliest of its parts
            {
                "kind": "and",
                "conditions": [
                    {
                        "kind": "last_performed",
                        "event": "Open",
                        "op": "within",
                        "n": 3,
                        "unit": "hours",
                    },
                    {"kind": "event", "event": "Open", "window": {"kind": "last", "n": 1}},
                ],
            },
            OPENED,
            T0 + timedelta(hours=3),
        ),
    ],
)
def test_next_change(
    condition: dict[str, Any], state: UserState, expected: datetime | None
) -> None:
    assert next_change(cond(condition), state, T0, UTC_ZONE) == expected


# Leaves whose result can change with time, drawn at random, over random histories.
ZONES = [UTC_ZONE, KOLKATA, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kathmandu")]
SPAN = timedelta(days=6)


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["last_minutes", "last_hours", "last_days", "exactly_ago", "ago_or_more", "between_ago"]
        )
    )
    if kind == "last_minutes":
        return {"kind": "last", "n": draw(st.integers(1, 240)), "unit": "minutes"}
    if kind == "last_hours":
        return {"kind": "last", "n": draw(st.integers(1, 30)), "unit": "hours"}
    if kind == "last_days":
        return {"kind": "last", "n": draw(st.integers(1, 4))}
    if kind == "between_ago":
        n = draw(st.integers(0, 3))
        return {"kind": kind, "n": n, "m": n + draw(st.integers(1, 2))}
    return {"kind": kind, "n": draw(st.integers(0, 4))}


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    choice = draw(st.sampled_from(["event", "last_performed", "date_tag"]))
    if choice == "event":
        op = draw(st.sampled_from(["eq", "gte", "lte", "between"]))
        low = draw(st.integers(0, 3))
        value: Any = [low, low + draw(st.integers(0, 2))] if op == "between" else low
        return {
            "kind": "event",
            "event": "E",
            "count": {"op": op, "value": value},
            "window": draw(windows()),
        }
    if choice == "last_performed":
        op = draw(st.sampled_from(["before", "after", "within"]))
        if op == "within":
            unit = draw(st.sampled_from(["minutes", "hours", "days"]))
            return {
                "kind": "last_performed",
                "event": "E",
                "op": op,
                "n": draw(st.integers(0, 50)),
                "unit": unit,
            }
        return {
            "kind": "last_performed",
            "event": "E",
            "op": op,
            "date": {"days_ago": draw(st.integers(0, 4))},
        }
    op = draw(
        st.sampled_from(["eq", "noteq", "gt", "gte", "lt", "lte", "within_last", "more_than_ago"])
    )
    operand: Any = draw(st.integers(0, 4))
    if op not in ("within_last", "more_than_ago"):
        operand = {"days_ago": operand}
    return {
        "kind": "tag",
        "tag": "Last Application Open",
        "type": "date",
        "op": op,
        "value": operand,
    }


# Days around clock changes: New York springs forward on 2024-03-10, Lisbon falls back
# on 2024-10-27 (a 23-hour and a 25-hour day within the windows).
STARTS = [T0, datetime(2024, 3, 6, tzinfo=UTC), datetime(2024, 10, 23, tzinfo=UTC)]


@settings(max_examples=300, deadline=None)
@given(
    leaf=leaves(),
    offsets=st.lists(st.integers(0, 5 * 24 * 60 * 60), max_size=8),
    zone=st.sampled_from([*ZONES, ZoneInfo("Europe/Lisbon")]),
    seconds=st.integers(0, 24 * 3600 - 1),
    start=st.sampled_from(STARTS),
)
def test_next_change_is_never_late_and_exact_for_leaves(
    leaf: dict[str, Any], offsets: list[int], zone: tzinfo, seconds: int, start: datetime
) -> None:
    """From ``now`` until next_change the result stays as at ``now`` (checked every 15
    minutes and a millisecond before the change); at the change it differs. The
    segment engine's verdict (result and change at once) says the same."""
    now = start + timedelta(days=5, seconds=seconds)
    history = [
        (name, now - timedelta(seconds=offset))
        for offset in offsets
        for name in ("E", "ApplicationOpen")
    ]
    state = with_events(*history, now=now)
    condition = cond(leaf)
    before = check(condition, state, now, zone)
    change = next_change(condition, state, now, zone)
    verdict = compile_verdict(condition)(state, to_ms(now), zone, no_refs)
    assert verdict == (before, None if change is None else to_ms(change))
    end = change if change is not None else now + SPAN
    assert end > now
    probes = [
        now + timedelta(minutes=15 * step)
        for step in range(int((end - now) / timedelta(minutes=15)) + 1)
    ]
    probes = [probe for probe in probes if probe < end] + [end - MS]
    for probe in probes:
        assert check(condition, state, probe, zone) is before, probe
    if change is not None:
        assert check(condition, state, change, zone) is not before
