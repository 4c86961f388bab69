"""Goals users ask for, as scenarios in simulated time: a conversion window after exit
(a goal event counted up to N days after the journey's last message, attributed to the
last opened step, else the last sent one), and a global holdout (a stable share of
users kept out of every journey, their goals still counted for lift)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine.journeys.codec import decode, encode
from engine.journeys.holdout import Holdout
from engine.journeys.state import ConversionWindow, JourneyState
from engine.processor import Model
from schemas.commands import JourneyActivity
from schemas.events import Event
from streams.settings import Settings
from tests.unit.journey_sim import T0, Sim, load_journeys

DAY = timedelta(days=1)
PURCHASED = {"name": "purchased", "match": {"event": "Purchase"}}
AFTER_3_DAYS = {**PURCHASED, "after_exit": {"amount": 3, "unit": "days"}}
EXIT = {"id": "done", "type": "exit"}


def journey(nodes: list[dict[str, Any]], goals: list[dict[str, Any]], **extra: Any) -> Any:
    return {
        "id": extra.pop("id", "j"),
        "name": "J",
        "entries": [{"kind": "api"}],
        "start": nodes[0]["id"],
        "nodes": nodes,
        "settings": {"goals": goals, **extra},
    }


def message(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "message", "channel": "email", "preset": node_id, **extra}


SEND_THEN_EXIT = journey([message("email", next={"next": "done"}), EXIT], [AFTER_3_DAYS])


def launched(*definitions: Any, holdout: Holdout | None = None) -> Sim:
    sim = Sim(holdout=holdout)
    sim.define(*definitions)
    for definition in definitions:
        sim.act(definition["id"], "launch")
    return sim


def state_of(sim: Sim, user: str) -> JourneyState:
    record = sim.engine.record(user)
    assert record is not None
    assert record.journeys is not None
    return record.journeys.state


# --- a conversion window after exit ---------------------------------------------------


def test_a_goal_after_a_send_then_exit_journey_counts_at_the_sent_step() -> None:
    sim = launched(SEND_THEN_EXIT)
    sim.enter("j", "u1")
    (command,) = sim.commands
    assert [r["detail"] for r in sim.rows("u1", "exited")] == ["exit"]
    sim.advance(2 * DAY)
    sim.event("u1", "Purchase")
    (goal,) = sim.rows("u1", "goal")
    assert goal["step"] == "email"
    assert goal["detail"] == "purchased after exit"
    assert goal["command_id"] == command["command_id"]
    assert (goal["journey_version"], goal["run"]) == (command["journey_version"], command["run"])
    assert goal["at"] == T0 + 2 * DAY
    assert goal["cause"].startswith("e:")


def test_a_goal_after_the_window_does_not_count_and_the_window_is_forgotten_on_time() -> None:
    sim = launched(SEND_THEN_EXIT)
    sim.enter("j", "u1")
    assert state_of(sim, "u1").windows  # remembered after the exit
    assert sim.engine.timer("u1") == T0 + 3 * DAY  # the window's end is a timer
    sim.advance(3 * DAY)
    assert not state_of(sim, "u1").windows
    assert sim.engine.timer("u1") is None
    sim.advance(DAY)
    sim.event("u1", "Purchase")
    assert sim.rows("u1", "goal") == []


def test_the_window_counts_from_the_last_message_and_each_goal_once() -> None:
    definition = journey(
        [
            message(
                "first",
                split_after={"amount": 1, "unit": "days"},
                next={"opened": "second", "not_opened": "second"},
            ),
            message("second", next={"next": "done"}),
            EXIT,
        ],
        [AFTER_3_DAYS],
    )
    sim = launched(definition)
    sim.enter("j", "u1")
    sim.advance(DAY)
    assert sim.sent("u1") == ["first", "second"]
    sim.advance(2 * DAY + timedelta(hours=23))  # 3 days after the first, not the last
    sim.event("u1", "Purchase")
    sim.event("u1", "Purchase")
    (goal,) = sim.rows("u1", "goal")
    assert goal["step"] == "second"  # nothing opened: the last sent step
    assert goal["command_id"] == sim.commands[-1]["command_id"]


def test_the_goal_is_attributed_to_the_last_opened_step() -> None:
    definition = journey(
        [
            message(
                "first",
                split_after={"amount": 1, "unit": "days"},
                next={"opened": "second", "not_opened": "second"},
            ),
            message("second", next={"next": "done"}),
            EXIT,
        ],
        [AFTER_3_DAYS],
    )
    sim = launched(definition)
    sim.enter("j", "u1")
    first = sim.commands[0]
    sim.feedback(first, "opened")
    assert sim.sent("u1") == ["first", "second"]
    sim.advance(DAY)
    sim.event("u1", "Purchase")
    (goal,) = sim.rows("u1", "goal")
    assert (goal["step"], goal["command_id"]) == ("first", first["command_id"])


def test_an_open_after_exit_moves_the_attribution() -> None:
    definition = journey(
        [message("first", next={"next": "second"}), message("second", next={"next": "done"}), EXIT],
        [AFTER_3_DAYS],
    )
    sim = launched(definition)
    sim.enter("j", "u1")
    first, _ = sim.commands
    sim.advance(DAY)
    sim.feedback(first, "opened")  # after the exit
    sim.event("u1", "Purchase")
    (goal,) = sim.rows("u1", "goal")
    assert goal["step"] == "first"


def test_a_goal_that_ended_the_visit_is_not_counted_again_after_exit() -> None:
    definition = journey(
        [
            message(
                "email",
                split_after={"amount": 2, "unit": "days"},
                next={"opened": "done", "not_opened": "done"},
            ),
            EXIT,
        ],
        [AFTER_3_DAYS],
    )
    sim = launched(definition)
    sim.enter("j", "u1")
    sim.event("u1", "Purchase")  # inside: the goal, and the exit
    sim.event("u1", "Purchase")
    assert [r["detail"] for r in sim.rows("u1", "goal")] == ["purchased"]


def test_goals_without_a_window_count_only_inside() -> None:
    sim = launched(journey([message("email", next={"next": "done"}), EXIT], [PURCHASED]))
    sim.enter("j", "u1")
    sim.event("u1", "Purchase")
    assert sim.rows("u1", "goal") == []
    assert sim.users["u1"].state is None or not sim.users["u1"].state.windows


def test_entering_again_drops_the_window() -> None:
    definition = journey(
        [message("email", next={"next": "done"}), EXIT],
        [AFTER_3_DAYS],
        reentry={"kind": "every_run"},
    )
    sim = launched(definition)
    sim.enter("j", "u1")
    sim.advance(DAY)
    sim.enter("j", "u1")  # sent and out again: a new window, of the new visit
    windows = state_of(sim, "u1").windows
    assert windows["j"].run.endswith("-e2")
    sim.event("u1", "Purchase")
    (goal,) = sim.rows("u1", "goal")
    assert goal["run"].endswith("-e2")


def test_the_goal_row_is_the_same_on_a_replay() -> None:
    sim = launched(SEND_THEN_EXIT)
    sim.enter("j", "u1")
    before = dict(sim.engine.stored["u1"])
    purchase = Event(user_id="u1", name="Purchase", timestamp=sim.now)
    sim.apply("u1", purchase)
    sim.engine.stored["u1"] = before  # the same input again, from the same state
    sim.now += timedelta(hours=1)  # applied later: the row is still the same
    sim.apply("u1", purchase)
    rows = sim.rows("u1", "goal")
    assert len(rows) == 2
    assert len({JourneyActivity.model_validate(row).activity_id for row in rows}) == 1


def test_windows_are_stored_compactly_and_read_back() -> None:
    state = JourneyState(
        windows={"j": ConversionWindow(3, "1-e1", "email", "j:3:1-e1:email:1:ab", 1000, 5000)}
    )
    stored = encode(state)
    assert stored == {"cw": {"j": [3, "1-e1", "email", "j:3:1-e1:email:1:ab", 1000, 5000]}}
    assert decode(stored) == state
    done = JourneyState(
        windows={"j": ConversionWindow(3, "1-e1", "email", "", 1000, 5000, ("purchased",), True)}
    )
    assert decode(encode(done)) == done
    # A value stored by an earlier version (no windows) still reads.
    old = decode({"h": {"j": ["1-e1", 5, 1]}, "x": [5]})
    assert old is not None
    assert old.windows == {}


# --- a global holdout -----------------------------------------------------------------


def test_the_holdout_is_stable_and_a_new_salt_reshuffles() -> None:
    holdout = Holdout(10, "s1")
    users = [f"user-{n}" for n in range(2000)]
    held = {user for user in users if holdout.holds(user)}
    assert 150 <= len(held) <= 250
    assert held == {user for user in users if Holdout(10, "s1").holds(user)}
    reshuffled = {user for user in users if Holdout(10, "s2").holds(user)}
    assert 150 <= len(reshuffled) <= 250
    assert reshuffled != held
    assert not any(Holdout(0, "s1").holds(user) for user in users)
    assert {user for user in users if Holdout(20, "s1").holds(user)} >= held  # it grows


def test_held_out_users_get_no_message_from_any_journey_and_are_recorded() -> None:
    holdout = Holdout(30, "salt")
    other = journey([message("push-1", next={"next": "done"}), EXIT], [], id="other")
    sim = launched(SEND_THEN_EXIT, other, holdout=holdout)
    users = [f"u{n}" for n in range(100)]
    for user in users:
        sim.enter("j", user)
        sim.enter("other", user)
    held = {user for user in users if holdout.holds(user)}
    assert 10 < len(held) < 50
    assert {c["user_id"] for c in sim.commands} == set(users) - held
    for user in held:
        rows = [r for r in sim.activity if r["user_id"] == user]
        assert sorted((r["journey_id"], r["activity"]) for r in rows) == [
            ("j", "held_out"),
            ("other", "held_out"),
        ]
        assert rows[0]["step"] == "email"
        assert rows[0]["detail"] == "global holdout"
        assert rows[0]["cause"] == ""  # one row per entry (its run), whatever input made it
    treated = next(user for user in users if user not in held)
    assert sim.rows(treated, "held_out") == []


def test_held_out_users_goals_are_counted_for_the_holdout_group() -> None:
    holdout = Holdout(50, "salt")
    sim = launched(SEND_THEN_EXIT, holdout=holdout)
    user = next(f"u{n}" for n in range(100) if holdout.holds(f"u{n}"))
    sim.enter("j", user)
    sim.advance(DAY)
    sim.event(user, "Purchase")
    sim.event(user, "Purchase")
    (row,) = sim.rows(user, "holdout_goal")
    assert (row["step"], row["detail"], row["command_id"]) == ("email", "purchased", "")
    assert sim.rows(user, "goal") == []
    sim.advance(3 * DAY)  # the window (counted from the entry) is over
    assert not state_of(sim, user).windows


# --- frequency caps in the example workspace ------------------------------------------


def test_the_example_workspace_sends_no_user_more_than_two_messages_in_seven_days() -> None:
    """The two re-engagement journeys share a segment: the one-off run on Thursday and
    the weekly one on Friday would send four emails within a week to a user who opens
    none. Their caps keep it to two in any seven days; later runs send again."""
    seed = {j.id: j for j in load_journeys("examples/seed-journeys.yaml")}
    sim = Sim(now=datetime(2026, 12, 9, tzinfo=UTC))
    sim.engine.schedules = True  # the runs start when their time comes
    sim.define(seed["reengage-once"], seed["reengage-weekly"])
    users = [f"u{n}" for n in range(20)]
    for user in users:
        sim.user(user, "inactive-7d")
    for journey_id in ("reengage-once", "reengage-weekly"):
        sim.act(journey_id, "launch")
    sim.advance(21 * DAY, tick=timedelta(hours=1))
    week = 7 * DAY
    for user in users:
        times = sorted(c["at"] for c in sim.commands if c["user_id"] == user)
        assert len(times) >= 3, user  # every week brings its email
        busiest = max(sum(1 for t in times if start <= t < start + week) for start in times)
        assert busiest <= 2, (user, times)
    assert sim.counts()[("second-email", "capped")] > 0


def test_the_holdout_setting_reaches_every_catalog() -> None:
    settings = Settings(global_holdout_percent=12.5, global_holdout_salt="spring")
    holdout = Holdout(settings.global_holdout_percent, settings.global_holdout_salt)
    model = Model.build({}, None, holdout=holdout)
    assert model.catalog.holdout == holdout
    assert model.with_journeys({}).with_segments({}).catalog.holdout == holdout
    assert Model.build({}, {}, holdout=Holdout(0, "x")).catalog.holdout is None
    assert Settings().global_holdout_percent == 0
