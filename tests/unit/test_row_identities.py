"""Row identities come from what happened, never from when it was computed: an input
processed again (after a crash, or by a full replay under another ``now``) rewrites
the rows it wrote the first time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from projections import rows
from schemas.commands import JourneyActivity
from schemas.memberships import MembershipChanged
from tests.unit.journey_sim import Sim, load_journeys

ADDRESSES = {"Push Token": "token-1", "Email": "u1@example.com"}


def _journey(journey_id: str) -> Any:
    [journey] = [j for j in load_journeys("examples/seed-journeys.yaml") if j.id == journey_id]
    return journey


def _ids(activity: list[dict[str, Any]]) -> list[str]:
    return [JourneyActivity.model_validate(row).activity_id for row in activity]


def _flight_changed(delay: timedelta) -> Sim:
    """The same input, evaluated ``delay`` after its own instant (as the wall clock
    evaluates an input processed again)."""
    sim = Sim()
    sim.define(_journey("follow-up-push-email"))
    sim.act("follow-up-push-email", "launch")
    sim.user("u1", **{k.replace(" ", "_"): v for k, v in ADDRESSES.items()})
    sim.now += delay
    sim.event("u1", "FlightChanged")
    return sim


def test_an_input_processed_later_writes_the_same_activity_rows() -> None:
    first, again = _flight_changed(timedelta(0)), _flight_changed(timedelta(seconds=7))
    assert first.activity
    assert [r["at"] for r in first.activity] != [r["at"] for r in again.activity]
    assert _ids(first.activity) == _ids(again.activity)
    assert [c["command_id"] for c in first.commands] == [c["command_id"] for c in again.commands]


def test_rows_of_one_visit_stay_distinct() -> None:
    sim = _flight_changed(timedelta(0))
    sim.advance(timedelta(hours=1))  # not opened: the email, then the exit
    ids = _ids(sim.activity)
    assert len(ids) == len(set(ids)) >= 5


def test_each_feedback_is_a_row_of_its_own_and_a_replayed_one_the_same_row() -> None:
    sim = _flight_changed(timedelta(0))
    [command] = sim.commands
    sim.feedback(command, "opened")
    sim.now += timedelta(minutes=1)
    sim.feedback(command, "clicked")
    opened = [r for r in sim.activity if r["activity"] in ("opened", "clicked")]
    assert len(set(_ids(opened))) == 2
    # The same feedback (same id) applied again later gives the same row.
    replay = _flight_changed(timedelta(0))
    replay.feedback(command, "opened")
    [row] = [r for r in replay.activity if r["activity"] == "opened"]
    assert _ids([row]) == _ids(opened[:1])


def test_a_trigger_entry_refused_twice_makes_two_rows() -> None:
    sim = _flight_changed(timedelta(0))
    sim.now += timedelta(minutes=1)
    sim.event("u1", "FlightChanged")
    sim.now += timedelta(minutes=1)
    sim.event("u1", "FlightChanged")
    skipped = [r for r in sim.activity if r["activity"] == "skipped"]
    assert len(skipped) == 2
    assert len(set(_ids(skipped))) == 2


def _change(at: str, cause: str) -> dict[str, Any]:
    return {
        "segment_id": "vip",
        "user_id": "u1",
        "change": "entered",
        "at": at,
        "version": 3,
        "cause": cause,
    }


def test_a_membership_change_has_the_identity_of_its_cause() -> None:
    first = rows.membership_row(_change("2026-11-02T10:00:00Z", "e:ev1"), rows.Origin(0, 1))
    later = rows.membership_row(_change("2026-11-02T10:00:07Z", "e:ev1"), rows.Origin(1, 9))
    other = rows.membership_row(_change("2026-11-02T10:00:00Z", "e:ev2"), rows.Origin(0, 1))
    assert first[0] == later[0] != other[0]
    model = MembershipChanged.model_validate(
        {**_change("2026-11-02T10:00:07Z", "e:ev1"), "at": datetime(2026, 11, 2, tzinfo=UTC)}
    )
    assert model.change_id == first[0]


def test_the_trusted_activity_row_keeps_visit_and_cause() -> None:
    from projections.journeys import activity_row

    sim = _flight_changed(timedelta(0))
    sim.feedback(sim.commands[0], "opened")
    for item in orjson.loads(orjson.dumps(sim.activity, option=orjson.OPT_UTC_Z)):
        model = JourneyActivity.model_validate(item)
        origin = rows.Origin(0, 1)
        assert activity_row(item, origin) == rows.journey_activity_row(model, origin)


# --- unreachable users are not "sent" -----------------------------------------------


def test_a_user_without_an_address_gets_no_command_and_goes_on() -> None:
    sim = Sim()
    sim.define(_journey("follow-up-push-email"))
    sim.act("follow-up-push-email", "launch")
    del sim.user("u1").tags["Email"]
    sim.user("u2").tags.clear()  # no address at all
    sim.event("u1", "FlightChanged")
    sim.event("u2", "FlightChanged")
    sim.advance(timedelta(hours=1))  # the push split ends: not opened → the email
    assert sim.sent("u1") == ["push"]
    assert sim.sent("u2") == []
    [u1_email] = sim.rows("u1", "unreachable")
    assert (u1_email["step"], u1_email["detail"]) == ("email", "no Email")
    assert [r["step"] for r in sim.rows("u2", "unreachable")] == ["push", "email"]
    # Each went on along the step's path, to the exit.
    assert [r["detail"] for r in sim.rows("u2", "exited")] == ["exit"]
    assert not [r for r in sim.activity if r["activity"] == "sent" and r["user_id"] == "u2"]
