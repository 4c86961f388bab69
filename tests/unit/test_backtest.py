"""The back-test's replay over hand-made archives: warm-up without outputs, the clock's
ticks, diverted delivery (archived feedback first, the simulator otherwise), the
figures it reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.backtest import Backtest, Report, Timeline, split_by_user
from engine.processor import Record, UserInput
from engine.time import to_ms
from files.journeys import load as load_journeys
from files.segments import load as load_segments
from schemas.commands import parse_command_id
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.journeys import JourneyDefinition
from schemas.tags import TagUpdate

SEGMENTS = load_segments(Path("examples/seed-segments.yaml"))
JOURNEYS = {j.id: j for j in load_journeys(Path("examples/seed-journeys.yaml"))}
START = datetime(2026, 12, 7, tzinfo=UTC)
END = datetime(2026, 12, 21, tzinfo=UTC)
RUN = datetime(2026, 12, 10, 8, tzinfo=UTC)  # 09:00 in Paris
DAY = timedelta(days=1)


def profile(user: str) -> TagUpdate:
    return TagUpdate.model_validate(
        {
            "user_id": user,
            "op": "set",
            "timestamp": "2026-10-01T00:00:00Z",
            "tags": {
                "First Install": {"type": "date", "value": "2026-10-01T00:00:00Z"},
                "Email": f"{user}@example.com",
                "Time zone": "Europe/Paris",
            },
        }
    )


def opens(user: str, first: datetime, last: datetime) -> list[Event]:
    found, day = [], first
    while day <= last:
        found.append(
            Event(user_id=user, name="ApplicationOpen", timestamp=day + timedelta(hours=12))
        )
        day += DAY
    return found


def archive() -> list[UserInput]:
    items: list[UserInput] = []
    for user in ("active", "lapsed-open", "lapsed-ignore", "warm"):
        items.append(profile(user))
    items += opens("active", datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 12, 20, tzinfo=UTC))
    items += opens(
        "lapsed-open", datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
    )
    items += opens(
        "lapsed-ignore", datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
    )
    # Opened the app the day before the back-test starts: not inactive for 7 days at the
    # run (the warm-up must have counted it).
    items += opens("warm", datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 6, tzinfo=UTC))
    return items


def backtest(journeys: Sequence[JourneyDefinition] = (), **options: Any) -> Backtest:
    return Backtest(
        SEGMENTS, list(journeys) or [JOURNEYS["reengage-once"]], START, END, keep=True, **options
    )


def sent(report: Report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for command in report.commands:
        found.setdefault(command["user_id"], []).append(command["step"])
    return found


def test_the_seed_campaign_replayed_sends_to_the_lapsed_users_only() -> None:
    report = backtest().run(split_by_user(archive()))
    assert sent(report) == {
        "lapsed-open": ["first-email", "second-email"],
        "lapsed-ignore": ["first-email", "second-email"],
    }
    first = [c for c in report.commands if c["step"] == "first-email"]
    assert {c["at"] for c in first} == {RUN}
    second = [c for c in report.commands if c["step"] == "second-email"]
    assert {c["at"] for c in second} == {RUN + 5 * DAY}
    counts = report.journeys["reengage-once"]
    assert counts.entries == 2
    assert counts.goals == 0
    assert counts.steps["first-email"]["not_opened"] == 2
    assert report.users == 4
    assert report.inputs["tags"] == 4


def test_nothing_before_the_start_is_emitted_and_the_state_at_the_start_is_built() -> None:
    report = backtest().run(split_by_user(archive()))
    assert all(row["at"] >= START for row in report.activity)
    # Everyone but "active" (who opens daily) and "warm" (opened on 6 December) was in
    # inactive-7d at the start.
    assert report.members_at_start["inactive-7d"] == 2
    sizes = dict(report.sizes("inactive-7d", DAY))
    # "warm" lapses 7 days after its open (6 December 12:00): in from the 13th.
    assert sizes[datetime(2026, 12, 13, tzinfo=UTC)] == 2
    assert sizes[datetime(2026, 12, 14, tzinfo=UTC)] == 3


def test_archived_feedback_replaces_the_simulator_for_commands_the_live_system_made() -> None:
    first = backtest().run(split_by_user(archive()))
    command = next(
        c for c in first.commands if c["user_id"] == "lapsed-open" and c["step"] == "first-email"
    )
    opened = Feedback(
        command_id=command["command_id"],
        user_id="lapsed-open",
        status=FeedbackStatus.OPENED,
        timestamp=RUN + DAY,
        channel="email",
    )
    asked: list[str] = []

    def simulate(command: Record, now: int) -> list[Feedback]:
        asked.append(command["command_id"])
        return []

    report = backtest(simulate=simulate).run(split_by_user([*archive(), opened]))
    assert sent(report)["lapsed-open"] == ["first-email"]
    assert sent(report)["lapsed-ignore"] == ["first-email", "second-email"]
    assert command["command_id"] not in asked
    assert len(asked) == 2
    assert report.feedback == {"archive": 1, "simulator": 2}
    rows = [r for r in report.activity if r["user_id"] == "lapsed-open"]
    assert [r["activity"] for r in rows if r["step"] == "first-email"] == [
        "entered",
        "sent",
        "opened",
    ]
    assert report.inputs["feedback"] == 0  # the journey's own feedback is no input


def test_the_simulator_decides_feedback_for_new_commands_released_at_the_next_tick() -> None:
    def simulate(command: Record, now: int) -> list[Feedback]:
        at = datetime.fromtimestamp(now / 1000, UTC) + timedelta(minutes=10)
        status = (
            FeedbackStatus.OPENED
            if command["user_id"] == "lapsed-ignore"
            else FeedbackStatus.DELIVERED
        )
        return [
            Feedback(
                command_id=command["command_id"],
                user_id=command["user_id"],
                status=status,
                timestamp=at,
                channel="email",
            )
        ]

    report = backtest(simulate=simulate).run(split_by_user(archive()))
    assert sent(report) == {
        "lapsed-open": ["first-email", "second-email"],
        "lapsed-ignore": ["first-email"],
    }
    opened = [r for r in report.activity if r["activity"] == "opened"]
    # Released at the tick after the open (09:00), applied at the open's own instant.
    assert [r["at"] for r in opened] == [RUN + timedelta(minutes=10)]


def test_commands_are_the_same_every_run_and_name_the_journey_step() -> None:
    one = backtest().run(split_by_user(archive()))
    two = backtest().run(split_by_user(archive()))
    assert [c["command_id"] for c in one.commands] == [c["command_id"] for c in two.commands]
    refs = [parse_command_id(c["command_id"]) for c in one.commands]
    assert {(r.journey, r.version) for r in refs if r} == {("reengage-once", 1)}


def test_two_versions_of_a_journey_differ_in_what_they_send() -> None:
    once = JOURNEYS["reengage-once"]
    document = once.model_dump(mode="json", exclude_none=True)
    document["nodes"] = [
        {**document["nodes"][0], "next": {"opened": "done", "not_opened": "done"}},
        document["nodes"][2],
    ]
    shorter = JourneyDefinition.model_validate({**document, "version": 2})
    report_one = backtest([once]).run(split_by_user(archive()))
    report_two = backtest([shorter]).run(split_by_user(archive()))
    assert report_one.journeys["reengage-once"].total("sent") == 4
    assert report_two.journeys["reengage-once"].total("sent") == 2


def test_a_trigger_journey_reacts_only_to_events_from_the_start() -> None:
    events: list[UserInput] = [
        Event(user_id="u", name="FlightChanged", timestamp=START - DAY),
        Event(user_id="u", name="FlightChanged", timestamp=START + DAY),
        TagUpdate.model_validate(
            {
                "user_id": "u",
                "op": "set",
                "timestamp": "2026-10-01T00:00:00Z",
                "tags": {"Push Token": "t", "Email": "u@x"},
            }
        ),
    ]
    report = backtest([JOURNEYS["follow-up-push-email"]]).run(split_by_user(events))
    assert [(c["step"], c["at"]) for c in report.commands] == [
        ("push", START + DAY),
        # No open within 30 minutes: the split ends at its own instant (its tick fires it).
        ("email", START + DAY + timedelta(minutes=30)),
    ]


def test_silent_hours_held_sends_are_counted() -> None:
    document = JOURNEYS["follow-up-push-email"].model_dump(mode="json", exclude_none=True)
    document["settings"]["silent_hours"] = [{"start": "22:00", "end": "08:00"}]
    journey = JourneyDefinition.model_validate(document)
    events: list[UserInput] = [
        TagUpdate.model_validate(
            {
                "user_id": "u",
                "op": "set",
                "timestamp": "2026-10-01T00:00:00Z",
                "tags": {"Push Token": "t", "Email": "u@x", "Time zone": "UTC"},
            }
        ),
        Event(user_id="u", name="FlightChanged", timestamp=START + timedelta(hours=23)),
    ]
    report = backtest([journey]).run(split_by_user(events))
    assert report.journeys[journey.id].silent["push"] == 1
    assert next(c["at"] for c in report.commands) == START + timedelta(days=1, hours=8)


def test_a_start_off_the_tick_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="on a tick"):
        Backtest(SEGMENTS, [JOURNEYS["reengage-once"]], START + timedelta(minutes=5), END)


def test_timelines_group_inputs_by_user_in_time_order() -> None:
    a2 = Event(user_id="a", name="X", timestamp=START + DAY)
    a1 = Event(user_id="a", name="X", timestamp=START)
    b1 = Event(user_id="b", name="X", timestamp=START)
    assert split_by_user([b1, a2, a1]) == [Timeline("a", [a1, a2]), Timeline("b", [b1])]


def test_feedback_that_reached_the_live_system_late_is_where_the_two_differ() -> None:
    """The one legitimate difference: live, feedback is applied when it arrives; the
    archive keeps its own instant, and the back-test applies it then. An open stamped
    within the split window that arrived after the split ended: live, the user got the
    second email; back-tested, the open came in time and the user left at ``done``."""
    from engine.testing import Harness
    from files.presets import load as load_presets

    once = JOURNEYS["reengage-once"]
    live = Harness(
        segments=SEGMENTS,
        presets=load_presets(Path("examples/seed-presets.yaml")),
        journeys=[once],
        now=datetime(2026, 10, 1, tzinfo=UTC),
        launch=False,
    )
    inputs: list[UserInput] = [
        profile("late"),
        *opens("late", datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)),
    ]
    for item in inputs:
        live.advance_to(max(live.now, item.timestamp))
        live.send(item)
    live.advance_to(START)
    live.act(once.id, "launch")
    live.advance_to(RUN + timedelta(hours=1), tick=timedelta(hours=1))
    (first,) = live.commands
    opened = Feedback(
        command_id=first["command_id"],
        user_id="late",
        status=FeedbackStatus.OPENED,
        timestamp=RUN + DAY,
        channel="email",
    )
    live.advance_to(RUN + 6 * DAY, tick=timedelta(hours=1))
    live.send(opened)  # arrives a day after the split ended
    assert live.sent("late") == ["first-email", "second-email"]

    report = backtest().run(split_by_user([*inputs, opened]))
    assert [c["command_id"] for c in report.commands] == [first["command_id"]]
    assert report.journeys[once.id].steps["first-email"]["opened"] == 1
    assert report.journeys[once.id].steps["first-email"]["not_opened"] == 0


def test_the_diverted_delivery_gives_the_simulator_s_feedback_as_the_worker_emits_it() -> None:
    from delivery.backtest import simulated
    from delivery.simulator import DEFAULTS, decide
    from schemas.commands import SendCommand

    report = backtest().run(split_by_user(archive()))
    command = report.commands[0]
    simulate = simulated(DEFAULTS, 3)
    now = to_ms(command["at"])
    found = simulate(command, now)
    result = decide(SendCommand.model_validate(command), DEFAULTS["email"], 3)
    expected = [result.outcome.status, *(later.status for later in result.later)]
    assert [f.status.value for f in found] == expected
    assert found[0].timestamp == result.outcome.at
    assert simulate(command, now) == found  # the same draws, the same feedback ids
    no_address = {**command, "address": None, "devices": []}
    (failed,) = simulate(no_address, now)
    assert failed.status is FeedbackStatus.FAILED
    assert failed.timestamp == command["at"]
    webhook = {**command, "channel": "webhook", "preset": None, "url": "https://example.com/hook"}
    assert [f.status.value for f in simulate(webhook, now)] == ["delivered"]


def test_feedback_on_another_journey_s_commands_counts_for_none_of_the_tested() -> None:
    weekly = "reengage-weekly:1:1-20261211T1700:first-email:1:0123456789abcdef"
    other = Feedback(
        command_id=weekly,
        user_id="lapsed-open",
        status=FeedbackStatus.OPENED,
        timestamp=RUN + DAY,
        channel="email",
    )
    report = backtest().run(split_by_user([*archive(), other]))
    assert set(report.journeys) == {"reengage-once"}
    assert report.inputs["feedback"] == 1  # an input all the same (message conditions)
    assert all(row["journey_id"] == "reengage-once" for row in report.activity)
