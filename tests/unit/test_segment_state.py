"""Per-user segment state (engine/segments/state.py, counters.py, defaults.py): counters
and their buckets, tags, default tags, message facts, JSON round trip, size, pruning and
the horizon (windows.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.segments.counters import QUARTER_MS, buckets, count_into, encode, occurrences
from engine.segments.defaults import stored
from engine.segments.index import SegmentIndex
from engine.segments.keys import filter_key, message_key
from engine.segments.state import UserState, apply_event, apply_feedback, apply_tag_update
from engine.segments.windows import horizon_problems, window_problem
from engine.time import DAY, MINUTE, to_ms
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segments import EventCondition, MessageAction, SegmentDefinition, Window
from schemas.tags import TagUpdate
from schemas.values import DateValue, PriceValue, VersionValue

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
T0_MS = to_ms(T0)
HORIZON = timedelta(days=90)


def event(name: str, at: datetime, **attributes: Any) -> Event:
    return Event.model_validate(
        {"user_id": "u1", "name": name, "timestamp": at, "attributes": attributes}
    )


def tags(op: str, at: datetime = T0, **values: Any) -> TagUpdate:
    names: Any = list(values) if op == "unset" else values
    return TagUpdate.model_validate({"user_id": "u1", "op": op, "tags": names, "timestamp": at})


def feedback(status: str, at: datetime, channel: str | None = "push", cid: str = "c1") -> Feedback:
    return Feedback.model_validate(
        {"command_id": cid, "user_id": "u1", "status": status, "timestamp": at, "channel": channel}
    )


def definitions(*conditions: dict[str, Any]) -> dict[str, SegmentDefinition]:
    return {
        f"s{number}": SegmentDefinition.model_validate(
            {"id": f"s{number}", "name": f"s{number}", "condition": condition}
        )
        for number, condition in enumerate(conditions)
    }


def frozen(state: UserState) -> bytes:
    return orjson.dumps(state.to_json(), option=orjson.OPT_SORT_KEYS)


# --- counters -------------------------------------------------------------------------


@given(st.lists(st.integers(-(10**9), 10**9), unique=True, max_size=30), st.data())
def test_tiers_encode_newest_first_with_gaps(keys: list[int], data: st.DataObject) -> None:
    pairs = [(key, data.draw(st.integers(1, 1000))) for key in sorted(keys, reverse=True)]
    tier = encode(pairs)
    assert list(buckets(tier)) == pairs
    assert all(gap > 0 for gap in tier[2::2])


@given(st.lists(st.integers(0, 179), min_size=1, max_size=40))
def test_events_in_any_order_count_into_their_minutes(minutes: list[int]) -> None:
    newest = T0_MS + 179 * MINUTE
    counter = None
    for minute in minutes:
        counter = count_into(counter, T0_MS + minute * MINUTE, newest, HORIZON)
    assert counter is not None
    expected = {T0_MS // MINUTE + minute: minutes.count(minute) for minute in set(minutes)}
    assert dict(buckets(counter[2])) == expected
    assert [key for key, _ in buckets(counter[2])] == sorted(expected, reverse=True)
    assert counter[:2] == [len(minutes), T0_MS + max(minutes) * MINUTE]


def test_an_event_lands_in_its_minute_then_folds_into_its_quarter_hour() -> None:
    at = T0_MS + 7 * MINUTE + 30_000  # 10:07:30
    counter = count_into(None, at, at, HORIZON)
    assert counter == [1, at, [at // MINUTE, 1], []]
    later = T0_MS + 4 * 60 * MINUTE  # 14:00: 10:07 is more than three hours old
    counter = count_into(counter, later, later, HORIZON)
    assert list(buckets(counter[2])) == [(later // MINUTE, 1)]
    assert list(buckets(counter[3])) == [(T0_MS // QUARTER_MS, 1)]  # 10:00-10:15
    assert counter[:2] == [2, later]


def test_late_events_go_to_the_right_bucket_and_the_total() -> None:
    counter = count_into(None, T0_MS, T0_MS, HORIZON)
    late = T0_MS - 2 * DAY
    counter = count_into(counter, late, T0_MS, HORIZON)
    assert counter[0] == 2
    assert counter[1] == T0_MS  # the newest stays the newest
    assert (late // QUARTER_MS, 1) in list(buckets(counter[3]))
    ancient = T0_MS - 200 * DAY  # beyond the horizon: only the total knows it
    counter = count_into(counter, ancient, T0_MS, HORIZON)
    assert counter[0] == 3
    assert sum(count for _, count in occurrences(counter, fine=False)) == 2


def test_buckets_beyond_the_horizon_are_pruned_when_the_counter_is_touched() -> None:
    state = UserState()
    for day in range(0, 200, 10):
        at = T0 + timedelta(days=day)
        state = apply_event(state, event("Purchase", at), now=at)
    counter = state.events["Purchase"]
    kept = [start for start, _ in occurrences(counter, fine=False)]
    newest = T0_MS + 190 * DAY
    assert counter[0] == 20
    assert min(kept) >= newest - 91 * DAY  # horizon (90 days) plus one day of margin
    assert len(kept) == 10  # days 100..190


def test_a_future_dated_event_does_not_push_history_out() -> None:
    state = apply_event(UserState(), event("Open", T0), now=T0)
    future = T0 + timedelta(days=365)
    state = apply_event(state, event("Open", future), now=T0)
    assert sum(count for _, count in occurrences(state.events["Open"], fine=True)) == 2


# --- tags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Hindi", "Hindi"),
        (3, 3),
        (2.5, 2.5),
        (True, True),
        (["a", 1], ["a", 1]),
        (DateValue(type="date", value=T0), {"d": T0_MS}),
        (
            PriceValue(type="price", amount="19.90", currency="EUR"),  # type: ignore[arg-type]
            {"p": "19.90", "c": "EUR"},
        ),
        (VersionValue(type="version", value="4.12"), {"v": [4, 12, 0, 0]}),
    ],
)
def test_stored_values(value: Any, expected: Any) -> None:
    assert stored(value) == expected


@pytest.mark.parametrize(
    ("before", "update", "after"),
    [
        ({}, tags("set", Language="Hindi"), {"Language": "Hindi"}),
        ({"Language": "fr"}, tags("set", Language="Hindi"), {"Language": "Hindi"}),
        ({"Language": "fr", "City": "Lyon"}, tags("unset", Language=None), {"City": "Lyon"}),
        ({}, tags("unset", Language=None), {}),
        ({}, tags("increment", Visits=2), {"Visits": 2}),
        ({"Visits": 2}, tags("increment", Visits=-3), {"Visits": -1}),
        ({"Visits": 2}, tags("increment", Visits=0.5), {"Visits": 2.5}),
        ({"Visits": "many"}, tags("increment", Visits=1), {"Visits": "many"}),
        ({}, tags("append", Labels="a"), {"Labels": ["a"]}),
        ({"Labels": ["a"]}, tags("append", Labels=["b", "a", "b"]), {"Labels": ["a", "b"]}),
        ({"Labels": "a"}, tags("append", Labels="b"), {"Labels": "a"}),
        ({"Labels": ["a", "b", 1]}, tags("remove", Labels=["a", 1]), {"Labels": ["b"]}),
        ({"Labels": ["a"]}, tags("remove", Labels="a"), {"Labels": []}),
        ({}, tags("remove", Labels="a"), {}),
        # Default version tags read plain text as a version where they can.
        ({}, tags("set", **{"OS Version": "17.1"}), {"OS Version": {"v": [17, 1, 0, 0]}}),
        ({}, tags("set", **{"OS Version": "17 beta"}), {"OS Version": "17 beta"}),
        ({}, tags("set", Version="17.1"), {"Version": "17.1"}),
        (
            {},
            tags("set", Due={"type": "date", "value": "2024-05-03"}),
            {"Due": {"d": to_ms(datetime(2024, 5, 3, tzinfo=UTC))}},
        ),
    ],
)
def test_tag_updates(before: dict[str, Any], update: TagUpdate, after: dict[str, Any]) -> None:
    state = UserState(tags=before)
    snapshot = frozen(state)
    assert dict(apply_tag_update(state, update).tags) == after
    assert frozen(state) == snapshot  # pure: the old state is untouched


def test_default_tags_from_events() -> None:
    state = apply_event(
        UserState(),
        event(
            "ApplicationOpen",
            T0,
            language="hi",
            Country="IN",
            city="Pune",
            timezone="Asia/Kolkata",
            app_version="4.12.1",
            device_model="Pixel 8",
            os_version={"type": "version", "value": "14"},
        ),
    )
    assert dict(state.tags) == {
        "First Install": {"d": T0_MS},
        "Last Application Open": {"d": T0_MS},
        "Language": "hi",
        "Country": "IN",
        "City": "Pune",
        "Time zone": "Asia/Kolkata",
        "Application Version": {"v": [4, 12, 1, 0]},
        "Device Model": "Pixel 8",
        "OS Version": {"v": [14, 0, 0, 0]},
    }
    # A later screen view changes the language; an older (late) event cannot undo it.
    state = apply_event(state, event("ScreenOpen", T0 + timedelta(hours=1), language="pt"))
    state = apply_event(state, event("ScreenOpen", T0 - timedelta(hours=1), language="fr"))
    assert state.tags["Language"] == "pt"
    assert state.tags["Last Application Open"] == {"d": T0_MS}  # only app opens set it
    assert state.tags["First Install"] == {"d": T0_MS - 3_600_000}  # the earliest seen
    # Attributes of the wrong type are not taken.
    state = apply_event(state, event("ScreenOpen", T0 + timedelta(hours=2), country=7))
    assert state.tags["Country"] == "IN"


# --- filtered counters and messages ------------------------------------------------------

BIG_PURCHASE = {
    "kind": "event",
    "event": "Purchase",
    "filters": [
        {
            "attribute": "price",
            "type": "price",
            "op": "gt",
            "value": {"amount": "10", "currency": "EUR"},
        }
    ],
}


def test_filtered_counters_follow_the_definitions() -> None:
    index = SegmentIndex.build(definitions(BIG_PURCHASE))
    key = filter_key("Purchase", EventCondition.model_validate(BIG_PURCHASE).filters)
    state = UserState()
    for amount in ("5", "15", "25"):
        price = {"type": "price", "amount": amount, "currency": "EUR"}
        state = apply_event(state, event("Purchase", T0, price=price), index.counted)
    state = apply_event(state, event("Purchase", T0), index.counted)  # no price: no match
    assert state.events["Purchase"][0] == 4
    assert state.filtered[key][0] == 2
    # The definition goes: its counter goes with the next event.
    state = apply_event(state, event("Other", T0), SegmentIndex.build({}).counted)
    assert dict(state.filtered) == {}


def test_filter_keys_are_stable_and_ignore_filter_order() -> None:
    two = [
        {"attribute": "sku", "type": "string", "op": "eq", "value": "gems"},
        {"attribute": "n", "type": "integer", "op": "gte", "value": 2},
    ]
    first = EventCondition.model_validate({"event": "Purchase", "filters": two})
    second = EventCondition.model_validate({"event": "Purchase", "filters": two[::-1]})
    other = EventCondition.model_validate({"event": "Refund", "filters": two})
    assert filter_key("Purchase", first.filters) == filter_key("Purchase", second.filters)
    assert filter_key("Refund", other.filters) != filter_key("Purchase", first.filters)


def test_feedback_counts_any_message_its_channel_and_asked_journeys() -> None:
    journey_condition = {"kind": "message", "action": "opened", "journey": "welcome", "step": "s2"}
    index = SegmentIndex.build(definitions(journey_condition))
    state = apply_feedback(
        UserState(), feedback("opened", T0), index.counted, journey="welcome", step="s2"
    )
    state = apply_feedback(state, feedback("opened", T0), index.counted, journey="other")
    state = apply_feedback(state, feedback("delivered", T0, channel=None), index.counted)
    state = apply_feedback(state, feedback("bounced", T0), index.counted)
    opened = MessageAction.OPENED
    assert {key: counter[0] for key, counter in state.messages.items()} == {
        message_key(opened, None, None, None): 2,
        message_key(opened, "push", None, None): 2,
        message_key(opened, None, "welcome", "s2"): 1,
        message_key(MessageAction.RECEIVED, None, None, None): 1,
    }
    state = apply_feedback(state, feedback("opened", T0), SegmentIndex.build({}).counted)
    assert message_key(opened, None, "welcome", "s2") not in state.messages


def test_message_keys_escape_separators() -> None:
    clicked = MessageAction.CLICKED
    assert message_key(clicked, "a|b", None, None) != message_key(clicked, "a", "b", None)
    assert message_key(clicked, None, "welcome", None) == "C||welcome"


# --- JSON -----------------------------------------------------------------------------


def typical_user() -> UserState:
    """A few weeks of an ordinary app user: six default tags and one custom tag, a few
    event names, some message feedback."""
    state = apply_tag_update(UserState(), tags("set", Plan="free"))
    for day in range(21):
        at = T0 + timedelta(days=day, hours=(day * 5) % 12)
        attributes = (
            {"language": "hi", "country": "IN", "app_version": "4.12.1"} if day == 0 else {}
        )
        state = apply_event(state, event("ApplicationOpen", at, **attributes), now=at)
        if day % 3 == 0:
            state = apply_event(state, event("ScreenOpen", at + timedelta(minutes=2)), now=at)
        if day % 7 == 0:
            state = apply_event(state, event("InAppPurchase", at + timedelta(minutes=5)), now=at)
            state = apply_feedback(state, feedback("delivered", at), now=at)
    return state


def test_json_round_trip_keeps_everything() -> None:
    state = typical_user().with_(recent=(1, 2), timers={"s0": T0_MS})
    again = UserState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    assert again == state
    assert UserState.from_json(None) == UserState() == UserState.from_json({})
    assert UserState().to_json() == {}


def test_a_typical_user_is_well_under_a_kilobyte() -> None:
    size = len(orjson.dumps(typical_user().to_json()))
    assert size < 700, size


def test_apply_is_pure() -> None:
    state = typical_user()
    snapshot = frozen(state)
    apply_event(state, event("ApplicationOpen", T0 + timedelta(days=30), language="pt"))
    apply_feedback(state, feedback("opened", T0))
    apply_tag_update(state, tags("append", Plan="x"))
    assert frozen(state) == snapshot


# --- the horizon --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "refused"),
    [
        ({"kind": "ever"}, False),
        ({"kind": "last", "n": 90}, False),
        ({"kind": "last", "n": 91}, True),
        ({"kind": "last", "n": 2160, "unit": "hours"}, False),
        ({"kind": "last", "n": 2161, "unit": "hours"}, True),
        ({"kind": "exactly_ago", "n": 89}, False),
        ({"kind": "exactly_ago", "n": 90}, True),
        ({"kind": "ago_or_more", "n": 89}, False),
        ({"kind": "ago_or_more", "n": 365}, True),
        ({"kind": "between_ago", "n": 3, "m": 89}, False),
        ({"kind": "between_ago", "n": 3, "m": 120}, True),
        ({"kind": "between_dates", "start": "2000-01-01", "end": "2000-02-01"}, False),
    ],
)
def test_window_problem(window: dict[str, Any], refused: bool) -> None:
    problem = window_problem(Window.model_validate(window), HORIZON)
    assert (problem is not None) == refused
    if problem:
        assert "90 days" in problem


def test_horizon_problems_walk_the_tree_and_check_dates_against_now() -> None:
    condition = SegmentDefinition.model_validate(
        {
            "id": "x",
            "name": "x",
            "condition": {
                "kind": "and_not",
                "include": {"kind": "event", "event": "Open", "window": {"kind": "last", "n": 200}},
                "exclude": {
                    "kind": "message",
                    "action": "opened",
                    "window": {"kind": "between_dates", "start": "2024-01-01", "end": "2024-02-01"},
                },
            },
        }
    ).condition
    assert len(horizon_problems(condition, HORIZON)) == 1
    problems = horizon_problems(condition, HORIZON, now=T0)
    assert [problem.split(":")[0] for problem in problems] == ["Open", "message"]
    assert horizon_problems(condition, timedelta(days=400), now=T0) == []


@pytest.mark.parametrize(
    "data",
    [
        None,
        UserState().to_json(),
        UserState(tags={"Country": "PT"}).to_json(),
        UserState(tags={"Country": "PT"}, timers={"lapsed": 1_700_000_000_000}).to_json(),
    ],
)
def test_stored_parts_read_without_building_the_state(data: dict[str, Any] | None) -> None:
    assert UserState.stored_tags(data) == UserState.from_json(data).tags
    assert UserState.stored_timers(data) == UserState.from_json(data).timers
