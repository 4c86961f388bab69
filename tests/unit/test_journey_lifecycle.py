"""The derived ``finished`` status (engine/journeys/lifecycle.py): a launched journey
whose entries can admit nobody any more and that nobody is inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.journeys.catalog import Catalog
from engine.journeys.lifecycle import (
    derived_status,
    entries_over,
    last_due_run,
    schedule_over,
)
from engine.journeys.logic import Facts, step
from engine.journeys.state import JourneyState, Visit
from schemas.definitions import JourneyAction, JourneyStatus, JourneyStatusChanged
from schemas.events import Event
from schemas.journeys import JourneyDefinition, Schedule

LAUNCHED_AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def audience(**schedule: Any) -> dict[str, Any]:
    return {"kind": "audience", "segment": "inactive-7d", "schedule": schedule}


ONCE = audience(kind="once", date="2026-12-10", at="09:00", timezone="Europe/Paris")
ONCE_IN_USER_ZONES = audience(kind="once", date="2026-12-10", at="09:00", timezone="user")
WEEKLY = audience(kind="recurring", unit="weeks", weekdays=["fri"], at="17:00", timezone="user")
WEEKLY_UNTIL = audience(
    kind="recurring",
    unit="weeks",
    weekdays=["fri"],
    at="17:00",
    timezone="Europe/Paris",
    until="2026-12-25",
)
TRIGGER = {"kind": "trigger", "match": {"event": "FlightChanged"}}
API = {"kind": "api"}


def journey(*entries: dict[str, Any]) -> JourneyDefinition:
    return JourneyDefinition.model_validate(
        {
            "id": "j",
            "name": "J",
            "entries": list(entries),
            "start": "done",
            "nodes": [{"id": "done", "type": "exit"}],
        }
    )


def lifecycle(
    status: JourneyStatus = JourneyStatus.LAUNCHED,
    launched_at: datetime | None = LAUNCHED_AT,
    launch: int = 1,
) -> JourneyStatusChanged:
    action = {
        JourneyStatus.LAUNCHED: JourneyAction.LAUNCH,
        JourneyStatus.PAUSED: JourneyAction.PAUSE,
        JourneyStatus.STOPPED: JourneyAction.STOP,
        JourneyStatus.DRAFT: JourneyAction.RENAME,
    }[status]
    return JourneyStatusChanged(
        journey_id="j",
        action=action,
        status=status,
        name="J",
        launch=launch,
        launched_at=launched_at,
        at=launched_at or LAUNCHED_AT,
    )


def schedule(entry: dict[str, Any]) -> Schedule:
    return Schedule.model_validate(entry["schedule"])


# --- schedules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "now", "over"),
    [
        # 09:00 in Paris is 08:00 UTC.
        (ONCE, "2026-12-10T07:59:59", False),
        (ONCE, "2026-12-10T08:00:00", True),
        # In users' zones the run starts at UTC+14 and reaches UTC-12 last.
        (ONCE_IN_USER_ZONES, "2026-12-09T18:59:59", False),
        (ONCE_IN_USER_ZONES, "2026-12-09T19:00:00", False),  # started, not everywhere
        (ONCE_IN_USER_ZONES, "2026-12-10T20:59:59", False),
        (ONCE_IN_USER_ZONES, "2026-12-10T21:00:00", True),
        (WEEKLY, "2036-01-01T00:00:00", False),  # no end
        (WEEKLY_UNTIL, "2026-12-19T00:00:00", False),  # between two runs
        (WEEKLY_UNTIL, "2026-12-25T15:59:59", False),
        (WEEKLY_UNTIL, "2026-12-25T16:00:00", True),  # the Friday of 'until'
    ],
)
def test_when_a_schedule_is_over(entry: dict[str, Any], now: str, over: bool) -> None:
    assert schedule_over(schedule(entry), LAUNCHED_AT, at(now)) is over


def test_a_run_now_is_over_at_launch() -> None:
    now = Schedule(kind="now")
    assert schedule_over(now, LAUNCHED_AT, LAUNCHED_AT)
    assert not schedule_over(now, LAUNCHED_AT, LAUNCHED_AT - timedelta(seconds=1))


def test_a_once_run_before_the_launch_comes_due_at_the_launch() -> None:
    # The engine starts a 'once' run whose date has passed when the journey is launched
    # (again): that run is the last.
    relaunched = at("2026-12-20T10:00:00")
    assert schedule_over(schedule(ONCE), relaunched, relaunched)


def test_a_recurring_schedule_that_ended_before_the_launch_has_no_run() -> None:
    ended = Schedule(kind="recurring", every=1, at="09:00", until="2026-11-01")
    assert last_due_run(ended, LAUNCHED_AT, LAUNCHED_AT) is None
    assert schedule_over(ended, LAUNCHED_AT, LAUNCHED_AT)


def test_many_runs_past_are_walked_to_the_last() -> None:
    daily = Schedule(kind="recurring", every=1, at="06:00", date="2020-01-01", until="2026-01-01")
    launched = at("2020-01-01T00:00:00")
    last = last_due_run(daily, launched, at("2025-06-01T12:00:00"))
    assert last is not None
    assert last.id == "20250601T0600"
    assert not schedule_over(daily, launched, at("2025-12-31T23:59:59"))
    assert schedule_over(daily, launched, at("2026-01-01T06:00:00"))


# --- the journey's status ----------------------------------------------------------


def test_a_once_journey_finishes_when_its_run_came_due_and_nobody_is_inside() -> None:
    definition = journey(ONCE)
    before, after = at("2026-12-10T07:00:00"), at("2026-12-16T00:00:00")
    assert derived_status(definition, lifecycle(), before, 0) == "launched"
    assert derived_status(definition, lifecycle(), after, 3) == "launched"
    assert derived_status(definition, lifecycle(), after, 0) == "finished"
    # Who is inside is not known (no ClickHouse here): not finished.
    assert derived_status(definition, lifecycle(), after, None) == "launched"


def test_every_entry_must_be_over() -> None:
    after = at("2027-01-01T00:00:00")
    assert derived_status(journey(ONCE, WEEKLY_UNTIL), lifecycle(), after, 0) == "finished"
    assert derived_status(journey(ONCE, WEEKLY), lifecycle(), after, 0) == "launched"
    assert (
        derived_status(journey(ONCE, WEEKLY_UNTIL), lifecycle(), at("2026-12-20T00:00:00"), 0)
        == "launched"
    )


@pytest.mark.parametrize("entry", [TRIGGER, API])
def test_trigger_and_api_entries_never_finish(entry: dict[str, Any]) -> None:
    for definition in (journey(entry), journey(ONCE, entry)):
        assert not entries_over(definition, lifecycle(), at("2030-01-01T00:00:00"))
        assert derived_status(definition, lifecycle(), at("2030-01-01T00:00:00"), 0) == "launched"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (JourneyStatus.PAUSED, "paused"),
        (JourneyStatus.STOPPED, "stopped"),
        (JourneyStatus.DRAFT, "draft"),
    ],
)
def test_only_a_launched_journey_finishes(status: JourneyStatus, expected: str) -> None:
    after = at("2027-01-01T00:00:00")
    assert derived_status(journey(ONCE), lifecycle(status), after, 0) == expected


def test_a_journey_never_launched_is_a_draft() -> None:
    assert derived_status(journey(ONCE), None, at("2027-01-01T00:00:00"), 0) == "draft"


def test_a_launch_without_its_instant_does_not_finish() -> None:
    status = lifecycle(launched_at=None)
    assert derived_status(journey(ONCE), status, at("2027-01-01T00:00:00"), 0) == "launched"


def test_schedules_count_from_the_current_launch() -> None:
    definition = journey(WEEKLY_UNTIL)
    # Launched again after the last Friday: the schedule has no run left at all.
    relaunched = lifecycle(launched_at=at("2026-12-26T00:00:00"), launch=2)
    assert derived_status(definition, relaunched, at("2026-12-26T00:00:00"), 0) == "finished"


def test_an_unloaded_catalog_ends_no_visit() -> None:
    """Before the registry is read, a journey the catalog lacks is unknown yet, not
    stopped: the user's visit is kept as it is."""
    visit = Visit(version=1, run="1-now", node="email", steps=1, kind="api", due=10**13)
    state = JourneyState(visits={"welcome": visit})
    later = Event(user_id="a", name="Browse", timestamp=datetime(2026, 12, 10, 9, tzinfo=UTC))
    moved = step(Catalog.unloaded(), state, Facts("a", {}, {}), later, 1_800_000_000_000)
    assert moved.activity == []
    assert moved.state == state
    # Once loaded, a journey the registry lacks is gone: the visit ends.
    moved = step(Catalog.build({}), state, Facts("a", {}, {}), later, 1_800_000_000_000)
    assert [row["detail"] for row in moved.activity] == ["journey stopped"]
