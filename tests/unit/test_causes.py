"""Causes recorded with effects: every membership change and journey activity row says
what made it (the input, its record's position, a timer, a sweep) and, for a segment
change, the values of the conditions that decided it; none of it enters the rows'
identities, so a replay by another path rewrites the same rows."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from engine.segments.reasons import describe
from engine.testing import Harness, segment
from engine.time import to_ms
from schemas.commands import JourneyActivity
from schemas.memberships import MembershipChanged, membership_change_id
from tests.unit.journey_sim import load_journeys, load_presets

SEED = {journey.id: journey for journey in load_journeys("examples/seed-journeys.yaml")}
DAY = timedelta(days=1)
ZONE = UTC

INACTIVE = segment(
    "inactive-7d", 'E("ApplicationOpen", count = 0, last 7 days) * T("Email", exists)'
)


def test_a_segment_change_records_its_input_and_the_condition_values() -> None:
    engine = Harness(segments=[INACTIVE])
    engine.tags("u1", Email="a@x")
    (entered,) = engine.changes
    assert entered["change"] == "entered"
    assert entered["cause"].startswith("t:")
    assert (entered["source"], entered["offset"]) == ("t", 1)
    assert entered["values"] == [0, "a@x"]
    assert describe(INACTIVE.condition, entered["values"], to_ms(entered["at"]), UTC) == [
        'E("ApplicationOpen", count = 0, last 7 days): count 0 -> true',
        "T(\"Email\", exists): value 'a@x' -> true",
    ]
    engine.event("u1", "ApplicationOpen")
    exited = engine.changes[-1]
    assert exited["change"] == "exited"
    assert (exited["source"], exited["offset"]) == ("e", 1)
    assert exited["values"] == [1, "a@x"]
    # A change the clock makes names its timer; the values are those at that instant.
    opened = engine.now
    engine.advance(8 * DAY)
    back = engine.changes[-1]
    assert back["change"] == "entered"
    assert back["cause"] == f"timer:{to_ms(back['at'])}"
    assert back["at"] == opened + 7 * DAY
    assert "source" not in back
    assert back["values"] == [0, "a@x"]


def test_the_values_and_the_origin_stay_out_of_a_change_identity() -> None:
    engine = Harness(segments=[INACTIVE])
    engine.tags("u1", Email="a@x")
    (change,) = engine.changes
    model = MembershipChanged.model_validate(change)
    bare = {
        key: value for key, value in change.items() if key not in ("values", "source", "offset")
    }
    assert model.change_id == MembershipChanged.model_validate(bare).change_id
    assert model.change_id == membership_change_id("inactive-7d", "u1", "entered", change["cause"])


def test_a_deleted_segment_says_so() -> None:
    engine = Harness(segments=[INACTIVE])
    engine.tags("u1", Email="a@x")
    engine.delete("inactive-7d")
    assert "values" not in engine.changes[-1]
    assert engine.changes[-1]["cause"].startswith("d:")


def seeded() -> Harness:
    engine = Harness(
        segments=[INACTIVE],
        journeys=[SEED["reengage-once"]],
        presets=load_presets(),
        schedules=False,
    )
    for user in ("opens", "ignores"):
        engine.tags(user, Email=f"{user}@x")
    return engine


def test_every_journey_row_names_what_made_it() -> None:
    engine = seeded()
    engine.run("reengage-once", "20261210T0900")
    engine.advance(DAY)
    first = {c["user_id"]: c for c in engine.commands}
    engine.feedback(first["opens"], "opened")
    engine.advance(5 * DAY)
    assert engine.activity
    assert all(row["trigger"] for row in engine.activity), [
        row for row in engine.activity if not row["trigger"]
    ]
    by = {(row["user_id"], row["step"], row["activity"]): row for row in engine.activity}
    run = by["ignores", "first-email", "entered"]
    assert run["trigger"] == "r:20261210T0900"
    opened = by["opens", "first-email", "opened"]
    assert opened["trigger"].startswith("f:")
    assert opened["trigger"] == opened["cause"]
    assert (opened["source"], opened["offset"]) == ("f", 1)
    taken = by["opens", "done", "exited"]
    assert taken["trigger"] == opened["trigger"]
    second = by["ignores", "second-email", "sent"]
    due = to_ms(run["at"] + 5 * DAY)
    assert second["trigger"] == f"timer:{due}"
    assert "source" not in second


def test_a_stop_names_the_journey() -> None:
    engine = seeded()
    engine.run("reengage-once", "20261210T0900")
    engine.act("reengage-once", "stop")
    dropped = [row for row in engine.activity if row["activity"] == "dropped"]
    assert dropped
    assert {row["trigger"] for row in dropped} == {"stop:reengage-once"}


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(JourneyActivity.model_validate(row).activity_id for row in rows)


def test_a_wait_moved_by_an_event_or_by_its_timer_makes_the_same_rows() -> None:
    """The live runtime may move a due wait on a tick or on the user's next input; a
    replay may take the other path: the rows are the same facts, the same ids."""
    by_timer, by_event = seeded(), seeded()
    for engine in (by_timer, by_event):
        engine.run("reengage-once", "20261210T0900")
    by_timer.advance(5 * DAY + timedelta(minutes=1))
    by_timer.event("ignores", "Unrelated")
    # No tick: the event arrives after the due instant and moves the wait first.
    by_event.now += 5 * DAY + timedelta(minutes=1)
    by_event.event("ignores", "Unrelated")
    mine = [row for row in by_timer.activity if row["user_id"] == "ignores"]
    theirs = [row for row in by_event.activity if row["user_id"] == "ignores"]
    assert ids(mine) == ids(theirs)
    assert {row["trigger"] for row in mine} == {row["trigger"] for row in theirs}


def test_the_trigger_and_the_origin_stay_out_of_an_activity_identity() -> None:
    engine = seeded()
    engine.run("reengage-once", "20261210T0900")
    for row in engine.activity:
        bare = {k: v for k, v in row.items() if k not in ("trigger", "source", "offset")}
        assert (
            JourneyActivity.model_validate(row).activity_id
            == JourneyActivity.model_validate(bare).activity_id
        )


def test_the_values_of_every_kind_of_condition_in_words() -> None:
    from engine.segments.reasons import MAX_REASONS, explain_at, values
    from engine.segments.state import UserState
    from schemas.segment_language import parse

    condition = parse(
        'S("buyers") * L("Open", within, 3 days) - (T("Country", eq, "PT")'
        ' + M(opened, channel "email", last 2 days))'
    )
    state = UserState(tags={"Country": "FR"})
    member_of = {"buyers"}.__contains__
    assert values(condition, state, 0, ZONE, member_of) == [True, None, "FR", 0]
    assert explain_at(condition, state, 0, ZONE, member_of) == [
        'S("buyers"): member -> true',
        'L("Open", within, 3 days): never -> false',
        'except T("Country", eq, "PT"): value \'FR\' -> false',
        'except M(opened, channel "email", last 2 days): count 0 -> false',
    ]
    wide = parse(" + ".join(f'T("t{index}", exists)' for index in range(MAX_REASONS + 3)))
    lines = explain_at(wide, UserState(), 0, ZONE, lambda segment: False)
    assert len(lines) == MAX_REASONS + 1
    assert lines[-1] == "… 3 more conditions"


def test_the_words_agree_with_the_verdict() -> None:
    """Each leaf's "held" in words is its test on the value it read: a whole
    definition's verdict follows from them."""
    from engine.segments.evaluate import holds
    from engine.segments.reasons import explain_at
    from engine.segments.state import UserState

    engine = Harness(segments=[INACTIVE])
    engine.tags("u1", Email="a@x")
    engine.event("u1", "ApplicationOpen")
    record = engine.record("u1")
    assert record is not None
    for later in (0, 3, 8):
        now = to_ms(engine.now) + later * 86_400_000
        lines = explain_at(INACTIVE.condition, record.state, now, UTC, lambda s: False)
        verdict = holds(INACTIVE.condition, record.state, now, UTC, lambda s: False)
        assert all(line.endswith("-> true") for line in lines) == verdict
        assert UserState is not None
