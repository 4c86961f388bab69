"""The user processor (engine/processor.py): one record, one input, the definitions and
the time in; the new record, its outputs and the next timer out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine import processor as core
from engine.journeys import logic as journeys
from engine.record import EMPTY_RECORD
from engine.segments.state import to_ms
from engine.testing import segment
from schemas.commands import JourneyEntryRequest
from schemas.events import Event
from schemas.tags import TagUpdate

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MODEL = core.Model.build(
    {
        "pt": segment("pt", 'T("Country", eq, "PT")', version=3),
        "active": segment("active", 'E("Open", count >= 1, last 1 days)', version=1),
    },
    {},
)


def open_app(at: datetime = NOW) -> Event:
    return Event(user_id="u1", name="Open", timestamp=at)


def test_an_input_moves_the_record_and_names_its_cause() -> None:
    outcome = core.process(MODEL, "u1", EMPTY_RECORD, core.Received(open_app(), "e", 7), NOW)
    assert outcome is not None
    record = outcome.record
    assert record.members == {"active": 1}
    assert record.offsets == {"e": 7}
    assert record.timer == to_ms(NOW + timedelta(days=1))
    [change] = outcome.changes
    assert change["user_id"] == "u1"
    assert change["change"] == "entered"
    assert change["cause"] == f"e:{open_app().event_id}"
    assert core.applied(record, "e", 7)
    assert not core.applied(record, "e", 8)
    assert not core.applied(record, "t", 7)


def test_a_timer_fires_only_when_it_is_the_records_timer() -> None:
    first = core.process(MODEL, "u1", EMPTY_RECORD, core.Received(open_app(), "e", 1), NOW)
    assert first is not None
    timer = first.record.timer
    assert timer is not None
    later = NOW + timedelta(days=2)
    assert core.process(MODEL, "u1", first.record, core.TimerDue(timer - 1), later) is None
    fired = core.process(MODEL, "u1", first.record, core.TimerDue(timer), later)
    assert fired is not None
    assert fired.record.members == {}
    assert fired.record.timer is None
    [change] = fired.changes
    # At the instant the timer was set for, not the (later) time of the tick.
    assert (change["change"], change["at"], change["cause"]) == (
        "exited",
        NOW + timedelta(days=1),
        f"timer:{timer}",
    )


def test_a_definition_change_that_changes_nothing_leaves_the_record_alone() -> None:
    update = TagUpdate(user_id="u1", tags={"Country": "FR"}, timestamp=NOW)
    moved = core.process(MODEL, "u1", EMPTY_RECORD, core.Received(update, "t", 1), NOW)
    assert moved is not None
    assert core.process(MODEL, "u1", moved.record, core.Redefined(frozenset({"pt"})), NOW) is None
    french = MODEL.with_segments({"pt": segment("pt", 'T("Country", eq, "FR")', version=4)})
    outcome = core.process(french, "u1", moved.record, core.Redefined(frozenset({"pt"})), NOW)
    assert outcome is not None
    assert outcome.record.members == {"pt": 4}
    assert outcome.changes[0]["cause"].startswith("d:")


def test_journey_inputs_leave_the_segment_state_as_stored() -> None:
    update = TagUpdate(user_id="u1", tags={"Country": "PT"}, timestamp=NOW)
    moved = core.process(MODEL, "u1", EMPTY_RECORD, core.Received(update, "t", 1), NOW)
    assert moved is not None
    swept = core.process(MODEL, "u1", moved.record, journeys.Tick(), NOW)
    assert swept is not None
    assert swept.record.segments is moved.record.segments  # not decoded, not re-encoded
    assert swept.record.members == moved.record.members
    assert swept.changes == []


def test_an_api_entry_records_its_offset() -> None:
    request = JourneyEntryRequest(journey_id="j", user_id="u1", at=NOW)
    outcome = core.process(MODEL, "u1", EMPTY_RECORD, core.Entered(request, 4), NOW)
    assert outcome is not None
    assert outcome.record.offsets == {"a": 4}
    assert outcome.commands == []  # no such journey
