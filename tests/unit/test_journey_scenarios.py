"""Journeys as scenarios in simulated time: the seed campaign, every step type and
setting, and the edges (opens at the last instant, users leaving the segment, runs
overlapping, daylight-saving changes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.journeys.logic import AudienceRun, Facts, Tick, step
from schemas.commands import parse_command_id
from schemas.definitions import JourneyAction
from schemas.feedback import Feedback, FeedbackStatus
from tests.unit.journey_sim import T0, Sim, load_journeys

SEED = {journey.id: journey for journey in load_journeys("examples/seed-journeys.yaml")}
DAY = timedelta(days=1)


def journey(nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A journey with an API entry (unless ``entries`` is given), starting at the first node."""
    return {
        "id": extra.pop("id", "j"),
        "name": "J",
        "entries": extra.pop("entries", [{"kind": "api"}]),
        "start": nodes[0]["id"],
        "nodes": nodes,
        **extra,
    }


def message(node_id: str, channel: str = "email", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "message", "channel": channel, "preset": node_id, **extra}


EXIT = {"id": "done", "type": "exit"}


def launched(*definitions: Any) -> Sim:
    sim = Sim()
    sim.define(*definitions)
    for definition in definitions:
        journey_id = definition.id if hasattr(definition, "id") else definition["id"]
        sim.act(journey_id, "launch")
    return sim


# --- the seed campaign ------------------------------------------------------------------


def test_seed_campaign_once_opened_exits_not_opened_gets_the_second_email() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("opens", "inactive-7d", Email="a@x")
    sim.user("ignores", "inactive-7d", Email="b@x")
    sim.user("active", Email="c@x")  # not in the segment
    sim.run("reengage-once", "20261210T0900")
    assert sorted(sim.sent()) == ["first-email", "first-email"]
    first = {c["user_id"]: c for c in sim.commands}
    assert {c["channel"] for c in first.values()} == {"email"}
    sim.advance(2 * DAY)
    sim.feedback(first["opens"], "delivered")
    sim.feedback(first["opens"], "opened")
    sim.advance(3 * DAY + timedelta(minutes=1))
    assert sim.sent("opens") == ["first-email"]
    assert sim.sent("ignores") == ["first-email", "second-email"]
    assert sim.sent("active") == []
    second = sim.commands[-1]
    assert second["at"] == T0 + 5 * DAY
    counts = sim.counts()
    assert counts[("first-email", "sent")] == 2
    assert counts[("first-email", "opened")] == 1
    assert counts[("first-email", "not_opened")] == 1
    assert counts[("second-email", "sent")] == 1
    assert counts[("done", "exited")] == 2
    assert sim.users["opens"].state is not None
    assert sim.users["opens"].state.visits == {}  # nobody inside any more


def test_command_ids_name_their_step_and_are_deterministic() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "20261210T0900")
    command = sim.commands[0]
    ref = parse_command_id(command["command_id"])
    assert ref is not None
    assert (ref.journey, ref.version, ref.run, ref.node) == (
        "reengage-once",
        1,
        "1-20261210T0900",
        "first-email",
    )
    again = launched(SEED["reengage-once"])
    again.user("u1", "inactive-7d")
    again.run("reengage-once", "20261210T0900")
    assert again.commands[0]["command_id"] == command["command_id"]


def test_the_same_run_reaching_a_user_twice_enters_once() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "20261210T0900")
    sim.run("reengage-once", "20261210T0900")  # a redelivered launch
    sim.advance(6 * DAY)
    sim.run("reengage-once", "20261210T0900")  # after the user left
    assert sim.sent() == ["first-email", "second-email"]
    assert sim.counts()[("first-email", "skipped")] == 0


def test_open_at_the_last_instant_of_the_wait_counts_and_at_the_end_does_not() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("last", "inactive-7d")
    sim.user("late", "inactive-7d")
    sim.run("reengage-once", "20261210T0900")
    first = {c["user_id"]: c for c in sim.commands}
    sim.advance(5 * DAY - timedelta(milliseconds=1))
    sim.feedback(first["last"])  # one millisecond before the wait ends
    sim.now = T0 + 5 * DAY  # the timer has not fired yet: the open arrives at the end
    sim.feedback(first["late"])
    assert sim.sent("last") == ["first-email"]
    assert sim.sent("late") == ["first-email", "second-email"]
    assert sim.rows("late", "opened")  # the open is still counted in the stats


def test_every_friday_in_the_users_own_zone_with_a_run_overlapping_the_previous() -> None:
    sim = launched(SEED["reengage-weekly"])
    sim.user("paris", "inactive-7d", Time_zone="Europe/Paris")
    sim.user("tokyo", "inactive-7d", Time_zone="Asia/Tokyo")
    friday = datetime(2026, 12, 11, 3, 0, tzinfo=UTC)  # 17:00 in Kiritimati: the earliest
    sim.now = friday
    for user_id, local_5pm in [
        ("paris", datetime(2026, 12, 11, 16, 0, tzinfo=UTC)),
        ("tokyo", datetime(2026, 12, 11, 8, 0, tzinfo=UTC)),
    ]:
        sim.apply(user_id, AudienceRun("reengage-weekly", "20261211T1700", _ms(local_5pm)))
    assert sim.commands == []  # nobody's 17:00 yet
    sim.advance(DAY)
    assert [(c["user_id"], c["at"]) for c in sim.commands] == [
        ("tokyo", datetime(2026, 12, 11, 8, 0, tzinfo=UTC)),
        ("paris", datetime(2026, 12, 11, 16, 0, tzinfo=UTC)),
    ]
    # The next Friday's run starts while both still wait for an open (5 days: Wednesday
    # evening); with every_run they enter it, since by then they are out.
    sim.advance(6 * DAY)
    assert sim.sent("tokyo") == ["first-email", "second-email"]
    sim.now = datetime(2026, 12, 18, 8, 0, tzinfo=UTC)
    sim.apply("tokyo", AudienceRun("reengage-weekly", "20261218T1700"))
    assert sim.sent("tokyo") == ["first-email", "second-email", "first-email"]
    runs = {c["run"] for c in sim.commands if c["user_id"] == "tokyo"}
    assert runs == {"1-20261211T1700", "1-20261218T1700"}


def test_a_run_starting_while_the_user_is_still_inside_skips_them() -> None:
    sim = launched(SEED["reengage-weekly"])
    sim.user("u1", "inactive-7d")
    sim.apply("u1", AudienceRun("reengage-weekly", "20261211T1700"))
    sim.advance(3 * DAY)  # still waiting for an open
    sim.apply("u1", AudienceRun("reengage-weekly", "20261218T1700"))
    skipped = sim.rows("u1", "skipped")
    assert [(row["run"], row["detail"]) for row in skipped] == [("1-20261218T1700", "inside")]
    sim.advance(10 * DAY)
    assert sim.sent("u1") == ["first-email", "second-email"]


@pytest.mark.parametrize(
    ("journey_id", "channels"),
    [
        ("follow-up-push-email", ["push", "email"]),
        ("follow-up-email-sms", ["email", "sms"]),
        ("follow-up-push-whatsapp", ["push", "whatsapp"]),
        ("follow-up-email-sms-whatsapp", ["email", "sms", "whatsapp"]),
    ],
)
def test_follow_up_pairs_send_the_next_channel_to_who_did_not_open(
    journey_id: str, channels: list[str]
) -> None:
    sim = launched(SEED[journey_id])
    sim.user("opens", "lapsed-portuguese")
    sim.user("ignores", "lapsed-portuguese")
    definition = SEED[journey_id]
    for user_id in ("opens", "ignores"):
        entry = definition.entries[0]
        if entry.kind == "trigger":
            attributes = {"value": 80} if entry.match.filters else {}
            sim.event(user_id, entry.match.event, **attributes)
        elif entry.kind == "api":
            sim.enter(journey_id, user_id, plan="gold")
        else:
            sim.apply(user_id, AudienceRun(journey_id, "now"))
    first = {c["user_id"]: c for c in sim.commands}
    sim.feedback(first["opens"])
    sim.advance(30 * DAY)
    assert [c["channel"] for c in sim.commands if c["user_id"] == "ignores"] == channels
    assert [c["channel"] for c in sim.commands if c["user_id"] == "opens"] == channels[:1]
    if definition.entries[0].kind == "api":
        assert {str(c["properties"]) for c in sim.commands} == {"{'plan': 'gold'}"}


def test_trigger_entry_filters_and_reentry_after_a_week() -> None:
    sim = launched(SEED["follow-up-push-whatsapp"])
    sim.event("u1", "CartAbandoned", value=10)  # below the filter
    assert sim.commands == []
    sim.event("u1", "CartAbandoned", value=60)
    sim.event("u1", "CartAbandoned", value=70)  # inside already
    assert sim.sent("u1") == ["push"]
    sim.advance(DAY)  # push ignored -> whatsapp -> exit
    sim.event("u1", "CartAbandoned", value=70)  # too soon after the last entry
    sim.advance(7 * DAY)
    sim.event("u1", "CartAbandoned", value=70)
    assert sim.sent("u1") == ["push", "whatsapp", "push"]
    assert [row["detail"] for row in sim.rows("u1", "skipped")] == ["inside", "re-entry too soon"]
    assert len({c["command_id"] for c in sim.commands}) == 3  # each entry its own ids


def test_goal_ends_the_journey_for_that_user() -> None:
    sim = launched(SEED["follow-up-email-sms-whatsapp"])
    sim.enter("follow-up-email-sms-whatsapp", "u1")
    sim.advance(DAY)
    sim.event("u1", "SubscriptionRenewed")
    sim.advance(10 * DAY)
    assert sim.sent("u1") == ["email"]
    assert [r["detail"] for r in sim.rows("u1", "goal")] == ["renewed"]
    assert [r["detail"] for r in sim.rows("u1", "exited")] == ["goal renewed"]


# --- step types ---------------------------------------------------------------------------


def test_delay_for_a_duration_then_until_a_time_of_day_in_the_users_zone() -> None:
    sim = launched(
        journey(
            [
                {
                    "id": "wait",
                    "type": "delay",
                    "duration": {"amount": 1, "unit": "days"},
                    "until": "09:00",
                    "next": {"next": "m"},
                },
                message("m", next={"next": "done"}),
                EXIT,
            ]
        )
    )
    sim.user("u1", Time_zone="America/New_York")
    sim.now = datetime(2026, 12, 10, 20, 0, tzinfo=UTC)  # 15:00 in New York
    sim.enter("j", "u1")
    sim.advance(3 * DAY)
    # a day later 15:00, then the next 09:00 local: Dec 12 09:00 EST = 14:00 UTC
    assert sim.commands[0]["at"] == datetime(2026, 12, 12, 14, 0, tzinfo=UTC)


def test_delay_across_a_daylight_saving_change_keeps_the_local_time() -> None:
    sim = launched(
        journey(
            [
                {
                    "id": "wait",
                    "type": "delay",
                    "duration": {"amount": 1, "unit": "days"},
                    "next": {"next": "m"},
                },
                message("m", next={"next": "done"}),
                EXIT,
            ]
        )
    )
    sim.user("u1", Time_zone="Europe/Paris")
    sim.now = datetime(2026, 3, 28, 16, 0, tzinfo=UTC)  # 17:00 CET, the day before DST
    sim.enter("j", "u1")
    sim.advance(2 * DAY)
    assert sim.commands[0]["at"] == datetime(2026, 3, 29, 15, 0, tzinfo=UTC)  # 17:00 CEST


def test_wait_for_event_branches_and_timeout() -> None:
    sim = launched(
        journey(
            [
                {
                    "id": "wait",
                    "type": "wait_for_event",
                    "branches": [
                        {
                            "name": "bought",
                            "events": [
                                {
                                    "event": "Purchase",
                                    "filters": [
                                        {
                                            "attribute": "amount",
                                            "type": "integer",
                                            "op": "gte",
                                            "value": 10,
                                        }
                                    ],
                                }
                            ],
                        },
                        {"name": "browsed", "events": [{"event": "View"}, {"event": "Search"}]},
                    ],
                    "timeout": {"amount": 2, "unit": "days"},
                    "next": {"bought": "thanks", "browsed": "nudge", "timeout": "miss"},
                },
                message("thanks", next={"next": "done"}),
                message("nudge", next={"next": "done"}),
                message("miss", next={"next": "done"}),
                EXIT,
            ]
        )
    )
    for user_id in ("buyer", "browser", "idle"):
        sim.enter("j", user_id)
    sim.advance(timedelta(hours=1))
    sim.event("buyer", "Purchase", amount=5)  # filtered out
    sim.event("buyer", "Purchase", amount=50)
    sim.event("browser", "Search")
    sim.advance(3 * DAY)
    sim.event("idle", "Purchase", amount=50)  # too late: timed out already
    assert (sim.sent("buyer"), sim.sent("browser"), sim.sent("idle")) == (
        ["thanks"],
        ["nudge"],
        ["miss"],
    )
    assert sim.commands[-1]["at"] == T0 + 2 * DAY


def test_an_event_after_a_missed_timer_loses_to_the_timeout() -> None:
    sim = launched(
        journey(
            [
                {
                    "id": "wait",
                    "type": "wait_for_event",
                    "branches": [{"name": "came", "events": [{"event": "Open"}]}],
                    "timeout": {"amount": 1, "unit": "hours"},
                    "next": {"came": "yes", "timeout": "no"},
                },
                message("yes", next={"next": "done"}),
                message("no", next={"next": "done"}),
                EXIT,
            ]
        )
    )
    sim.enter("j", "u1")
    sim.now += timedelta(hours=2)  # the timer was late; the event arrives first
    sim.event("u1", "Open")
    assert sim.sent("u1") == ["no"]
    assert sim.commands[0]["at"] == T0 + timedelta(hours=1)


def test_segment_split_ab_split_reachability_update_profile_webhook() -> None:
    sim = launched(
        journey(
            [
                {
                    "id": "vip",
                    "type": "segment_split",
                    "segment": "vips",
                    "next": {"in": "hook", "not_in": "ab"},
                },
                {
                    "id": "hook",
                    "type": "webhook",
                    "url": "https://example.com/hook",
                    "next": {"next": "done"},
                },
                {
                    "id": "ab",
                    "type": "ab_split",
                    "variants": [{"name": "a", "percent": 30}, {"name": "b", "percent": 70}],
                    "next": {"a": "reach", "b": "tag"},
                },
                {
                    "id": "reach",
                    "type": "reachability",
                    "channel": "sms",
                    "next": {"reachable": "sms", "unreachable": "done"},
                },
                message("sms", "sms", next={"next": "done"}),
                {
                    "id": "tag",
                    "type": "update_profile",
                    "tags": {"Variant": "b"},
                    "next": {"next": "done"},
                },
                EXIT,
            ]
        )
    )
    sim.user("v", "vips")
    for index in range(1000):
        sim.user(f"u{index}", Phone="+351" if index % 2 else "")
        sim.enter("j", f"u{index}")
    sim.enter("j", "v")
    assert next(c for c in sim.commands if c["user_id"] == "v")["channel"] == "webhook"
    assert sim.commands[-1]["url"] == "https://example.com/hook"
    a = sim.counts()[("reach", "entered")]
    assert 250 < a < 350  # about 30%
    b = len(sim.tag_updates)
    assert a + b == 1000
    assert sim.tag_updates[0]["tags"] == {"Variant": "b"}
    sms = [c for c in sim.commands if c["channel"] == "sms"]
    assert 0 < len(sms) < a  # only those with a phone number
    # Stable per user: the same user takes the same variant in another run.
    again = launched(sim.registry.journeys["j"].latest)
    for index in range(20):
        again.user(f"u{index}", Phone="+351" if index % 2 else "")
        again.enter("j", f"u{index}")
    assert [u["user_id"] for u in again.tag_updates] == [
        u["user_id"] for u in sim.tag_updates if int(u["user_id"][1:]) < 20
    ]


# --- settings -----------------------------------------------------------------------------


def test_frequency_cap_across_journeys_records_capped_sends() -> None:
    cap = {"frequency_cap": {"messages": 2, "period": {"amount": 1, "unit": "days"}}}
    first = journey([message("a", next={"next": "done"}), EXIT], id="first", settings=cap)
    second = journey(
        [
            message(
                "b",
                split_after={"amount": 1, "unit": "hours"},
                next={"opened": "done", "not_opened": "c"},
            ),
            message("c", next={"next": "done"}),
            EXIT,
        ],
        id="second",
        settings=cap,
    )
    sim = launched(first, second)
    sim.enter("first", "u1")
    sim.enter("second", "u1")
    sim.advance(timedelta(hours=2))  # c would be the third message in a day
    assert sim.sent("u1") == ["a", "b"]
    assert [row["step"] for row in sim.rows("u1", "capped")] == ["c"]
    assert sim.rows("u1", "exited")
    sim.advance(DAY)
    sim.enter("first", "u2")
    assert sim.sent("u2") == ["a"]


def test_silent_hours_hold_the_send_until_the_window_ends_in_the_users_zone() -> None:
    settings = {"silent_hours": [{"start": "22:00", "end": "08:00", "channels": ["push"]}]}
    sim = launched(
        journey(
            [message("p", "push", next={"next": "e"}), message("e", next={"next": "done"}), EXIT],
            settings=settings,
        )
    )
    sim.user("u1", Time_zone="Europe/Paris")
    sim.now = datetime(2026, 12, 10, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    sim.enter("j", "u1")
    assert sim.commands == []
    sim.advance(DAY)
    assert sim.sent("u1") == ["p", "e"]
    assert sim.commands[0]["at"] == datetime(2026, 12, 11, 7, 0, tzinfo=UTC)  # 08:00 Paris


def test_opted_out_channel_is_suppressed_and_the_user_goes_on() -> None:
    sim = launched(
        journey(
            [
                message(
                    "e",
                    split_after={"amount": 1, "unit": "days"},
                    next={"opened": "done", "not_opened": "s"},
                ),
                message("s", "sms", next={"next": "done"}),
                EXIT,
            ]
        )
    )
    sim.user("u1", Unsubscribed=["email"])
    sim.enter("j", "u1")
    assert sim.sent("u1") == ["s"]
    assert [r["step"] for r in sim.rows("u1", "suppressed")] == ["e"]


def test_unsubscribe_feedback_is_remembered() -> None:
    sim = launched(
        journey(
            [message("e", next={"next": "done"}), EXIT], settings={"reentry": {"kind": "every_run"}}
        )
    )
    sim.enter("j", "u1")
    sim.feedback(sim.commands[0], "unsubscribed")
    sim.now += timedelta(minutes=1)
    sim.enter("j", "u1")
    assert sim.sent("u1") == ["e"]
    assert sim.rows("u1", "suppressed")


def test_leaving_the_segment_mid_journey_drops_only_where_the_journey_says_so() -> None:
    seed = SEED["reengage-once"]
    # Uncapped: both copies send their second email to the user who stays.
    base = seed.model_copy(
        update={"settings": seed.settings.model_copy(update={"frequency_cap": None})}
    )
    strict = base.model_copy(
        update={
            "id": "strict",
            "settings": base.settings.model_copy(update={"exit_when_leaving_segment": True}),
        }
    )
    sim = launched(base, strict)
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "r")
    sim.run("strict", "r")
    sim.advance(DAY)
    sim.leave("u1", "inactive-7d")
    sim.advance(10 * DAY)
    assert [c["journey_id"] for c in sim.commands] == ["reengage-once", "strict", "reengage-once"]
    dropped = sim.rows("u1", "dropped")
    assert [(r["journey_id"], r["detail"]) for r in dropped] == [("strict", "left segment")]


# --- lifecycle ----------------------------------------------------------------------------


def test_pause_holds_users_resume_moves_them_stop_drops_them() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    sim.user("u2", "inactive-7d")
    sim.run("reengage-once", "r")
    first = {c["user_id"]: c for c in sim.commands}
    sim.act("reengage-once", "pause")
    sim.advance(DAY)
    sim.feedback(first["u1"])  # seen while paused
    sim.advance(9 * DAY)
    assert len(sim.commands) == 2  # nobody moved
    sim.run("reengage-once", "r2")  # no entries while paused
    sim.act("reengage-once", "resume")
    assert sim.sent("u1") == ["first-email"]  # opened: exit
    assert sim.sent("u2") == ["first-email", "second-email"]
    sim.act("reengage-once", "stop")
    assert not sim.rows("u1", "dropped")  # already out
    sim2 = launched(SEED["reengage-once"])
    sim2.user("u3", "inactive-7d")
    sim2.run("reengage-once", "r")
    sim2.act("reengage-once", "stop")
    assert [r["detail"] for r in sim2.rows("u3", "dropped")] == ["journey stopped"]
    sim2.advance(10 * DAY)
    assert sim2.sent("u3") == ["first-email"]


def test_users_inside_stay_on_the_version_they_entered() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("old", "inactive-7d")
    sim.user("new", "inactive-7d")
    sim.apply("old", AudienceRun("reengage-once", "r1"))
    changed = SEED["reengage-once"].model_copy(
        update={
            "nodes": (
                SEED["reengage-once"].nodes[0],
                SEED["reengage-once"].nodes[1].model_copy(update={"preset": "v2-reminder"}),
                SEED["reengage-once"].nodes[2],
            )
        }
    )
    sim.define(changed)
    sim.apply("new", AudienceRun("reengage-once", "r1"))
    sim.advance(6 * DAY)
    presets = {(c["user_id"], c["step"]): (c["preset"], c["journey_version"]) for c in sim.commands}
    assert presets[("old", "second-email")] == ("we-miss-you-reminder", 1)
    assert presets[("new", "second-email")] == ("v2-reminder", 2)


def test_an_unrelated_event_costs_nothing_for_a_user_outside_every_journey() -> None:
    sim = launched(SEED["follow-up-push-email"])
    sim.event("u1", "ScreenOpen")
    assert sim.users["u1"].state is None
    result = step(sim.catalog, None, Facts("u2", {}, {}), Tick(), 0)
    assert result.state is None
    assert result.next_due is None


def test_an_unrelated_event_leaves_the_state_of_a_user_out_of_every_journey_as_it_is() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "r")
    sim.advance(10 * DAY)  # through the journey and out: only its history is left
    state = sim.users["u1"].state
    assert state is not None
    assert state.visits == {}
    result = step(sim.catalog, state, Facts("u1", {}, {}), Tick(), _ms(sim.now))
    assert result.state is state  # nothing to store again
    assert (result.commands, result.activity, result.next_due) == ([], [], None)


def test_replaying_inputs_from_the_same_state_gives_the_same_commands() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    before = sim.users["u1"].state
    facts = Facts("u1", {}, {"inactive-7d": 1})
    once = step(sim.catalog, before, facts, AudienceRun("reengage-once", "r"), _ms(T0))
    twice = step(sim.catalog, before, facts, AudienceRun("reengage-once", "r"), _ms(T0))
    assert once.commands == twice.commands
    assert once.state == twice.state
    again = step(sim.catalog, once.state, facts, AudienceRun("reengage-once", "r"), _ms(T0))
    assert again.commands == []


def _ms(moment: datetime) -> int:
    from engine.time import to_ms

    return to_ms(moment)


def test_a_stop_missed_by_a_sweep_still_ends_the_visit_and_a_relaunch_starts_afresh() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "r")
    # Stopped and launched again while this user's worker was down: no sweep reached them.
    sim.registry.fold(sim.registry.prepare_action("reengage-once", JourneyAction.STOP, sim.now))
    sim.registry.fold(sim.registry.prepare_action("reengage-once", JourneyAction.LAUNCH, sim.now))
    sim._rebuild()
    sim.advance(10 * DAY)
    assert sim.sent("u1") == ["first-email"]
    assert [r["detail"] for r in sim.rows("u1", "dropped")] == ["journey stopped"]
    sim.run("reengage-once", "r")  # the same schedule, a new launch: a new run...
    skipped = sim.rows("u1", "skipped")  # ...which re-entry "never" keeps them out of
    assert [(r["run"], r["detail"]) for r in skipped] == [("2-r", "already entered")]


def test_events_and_opens_seen_while_paused_count_on_resume_if_in_time() -> None:
    sim = launched(
        journey(
            [
                {
                    "id": "wait",
                    "type": "wait_for_event",
                    "branches": [{"name": "came", "events": [{"event": "Open"}]}],
                    "timeout": {"amount": 2, "unit": "days"},
                    "next": {"came": "yes", "timeout": "no"},
                },
                message("yes", next={"next": "done"}),
                message("no", next={"next": "done"}),
                EXIT,
            ]
        )
    )
    for user_id in ("early", "late", "idle"):
        sim.enter("j", user_id)
    sim.act("j", "pause")
    sim.advance(DAY)
    sim.event("early", "Open")  # within the wait: decided on resume
    sim.advance(2 * DAY)
    sim.event("late", "Open")  # after the wait ended (still paused)
    assert sim.commands == []
    sim.act("j", "resume")
    assert (sim.sent("early"), sim.sent("late"), sim.sent("idle")) == (["yes"], ["no"], ["no"])
    by_user = {c["user_id"]: c["at"] for c in sim.commands}
    assert by_user["early"] == T0 + DAY  # at the event's instant
    assert by_user["late"] == by_user["idle"] == T0 + 2 * DAY


def test_an_open_seen_while_paused_after_the_wait_ended_is_not_opened() -> None:
    sim = launched(SEED["reengage-once"])
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "r")
    [first] = sim.commands
    sim.act("reengage-once", "pause")
    sim.advance(6 * DAY)  # the 5-day wait ended while paused
    sim.feedback(first)
    sim.act("reengage-once", "resume")
    assert sim.sent("u1") == ["first-email", "second-email"]


def test_a_bounce_is_a_bounce_not_a_failure() -> None:
    sim = launched(journey([message("e", next={"next": "done"}), EXIT]))
    sim.enter("j", "u1")
    sim.enter("j", "u2")
    first, second = sim.commands
    sim.feedback(first, "bounced")
    sim.feedback(second, "failed")
    [bounced] = sim.rows("u1", "bounced")
    assert bounced["command_id"] == first["command_id"]
    assert not sim.rows("u1", "failed")
    assert [row["command_id"] for row in sim.rows("u2", "failed")] == [second["command_id"]]


def test_not_opened_and_suppressed_rows_name_the_message() -> None:
    sim = launched(
        journey(
            [
                message(
                    "e",
                    split_after={"amount": 1, "unit": "hours"},
                    next={"opened": "done", "not_opened": "s"},
                ),
                message("s", "sms", next={"next": "done"}),
                EXIT,
            ],
        )
    )
    sim.user("u1", Unsubscribed=["sms"])
    sim.enter("j", "u1")
    [command] = sim.commands
    sim.advance(timedelta(hours=2))
    [not_opened] = sim.rows("u1", "not_opened")
    assert not_opened["command_id"] == command["command_id"]
    [suppressed] = sim.rows("u1", "suppressed")
    assert suppressed["step"] == "s"
    assert suppressed["command_id"] == ""  # no message went out: none to name


def dimensions(fields: dict[str, Any]) -> dict[str, Any]:
    """A row's or command's fields with the defaults of those the engine leaves out."""
    defaults = {"country": "", "language": "", "timezone": "", "variant": ""}
    return {**defaults, "event_at": fields["at"], **fields}


AB_JOURNEY = journey(
    [
        message(
            "first",
            split_after={"amount": 1, "unit": "hours"},
            next={"opened": "done", "not_opened": "ab"},
        ),
        {
            "id": "ab",
            "type": "ab_split",
            "variants": [{"name": "a", "percent": 50}, {"name": "b", "percent": 50}],
            "next": {"a": "e", "b": "e"},
        },
        message(
            "e",
            split_after={"amount": 1, "unit": "hours"},
            next={"opened": "done", "not_opened": "done"},
        ),
        EXIT,
    ]
)


def test_rows_and_commands_carry_the_users_dimensions_at_the_decision() -> None:
    sim = launched(AB_JOURNEY)
    sim.user("u1", Country="PT", Language="pt", Time_zone="Europe/Lisbon")
    sim.enter("j", "u1")
    [command] = sim.commands
    assert command["tags"]["Country"] == "PT"  # the send's dimensions: its tags
    for row in map(dimensions, sim.activity):
        assert (row["country"], row["language"], row["timezone"]) == (
            "PT",
            "pt",
            "Europe/Lisbon",
        )
    sim.user("u1", Country="ES")
    sim.advance(timedelta(hours=2))
    not_opened = dimensions(sim.rows("u1", "not_opened")[0])
    assert not_opened["country"] == "ES"
    sim.user("u2")
    sim.enter("j", "u2")
    u2 = [row for row in sim.activity if row["user_id"] == "u2"]
    assert u2
    assert not {"country", "language", "timezone"} & {key for row in u2 for key in row}


def test_the_ab_variant_is_carried_on_the_visits_later_rows() -> None:
    sim = launched(AB_JOURNEY)
    for index in range(20):
        sim.enter("j", f"u{index}")
    first = {c["user_id"]: c for c in sim.commands}
    sim.advance(timedelta(minutes=90))  # the second message's split waits
    chosen = {}
    for row in map(dimensions, sim.activity):
        if row["step"] in ("first", "ab"):
            assert row["variant"] == "", row  # before the split
        if row["step"] == "e" and row["activity"] == "sent":
            chosen[row["user_id"]] = row["variant"]
    assert set(chosen.values()) == {"a", "b"}
    second = {c["user_id"]: dimensions(c) for c in sim.commands if c["step"] == "e"}
    assert {user: c["variant"] for user, c in second.items()} == chosen
    assert not any("variant" in c for c in first.values())
    # Feedback on the message before the split does not take the variant; after, it does.
    sim.feedback(first["u1"], "delivered")
    sim.feedback(second["u1"], "delivered")
    delivered = {
        row["step"]: row["variant"] for row in map(dimensions, sim.rows("u1", "delivered"))
    }
    assert delivered == {"first": "", "e": chosen["u1"]}
    sim.advance(timedelta(hours=2))
    [exited] = map(dimensions, sim.rows("u1", "exited"))
    assert exited["variant"] == chosen["u1"]


def test_rows_carry_the_inputs_own_instant_beside_the_processing_instant() -> None:
    sim = launched(AB_JOURNEY)
    sim.enter("j", "u1")
    [command] = map(dimensions, sim.commands)
    [sent] = map(dimensions, sim.rows("u1", "sent"))
    assert sent["event_at"] == sent["at"] == command["event_at"] == command["at"]
    reported = sim.now - timedelta(minutes=90)
    sim.now += timedelta(minutes=30)
    feedback = Feedback(
        feedback_id="late",
        command_id=command["command_id"],
        user_id="u1",
        status=FeedbackStatus.DELIVERED,
        timestamp=reported,
        channel="email",
    )
    sim.apply("u1", feedback)
    [delivered] = map(dimensions, sim.rows("u1", "delivered"))
    assert delivered["at"] == sim.now
    assert delivered["event_at"] == reported
    # Rows that time alone makes happen at their own instant.
    sim.advance(timedelta(hours=2))
    not_opened = sim.rows("u1", "not_opened")[0]
    assert "event_at" not in not_opened  # the same as at
