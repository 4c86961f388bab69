"""Engine-written journey activity is projected without the model, to the very row the
model would give; anything unexpected goes through the model."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from projections import rows
from projections.journeys import activity_row, command_row, item_rows
from schemas.commands import JourneyActivity, SendCommand
from tests.unit.journey_sim import Sim, load_journeys

ORIGIN = rows.Origin(3, 42)


def engine_outputs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sim = Sim()
    [journey] = [
        j for j in load_journeys("examples/seed-journeys.yaml") if j.id == "follow-up-push-email"
    ]
    [renewal] = [
        j
        for j in load_journeys("examples/seed-journeys.yaml")
        if j.id == "follow-up-email-sms-whatsapp"
    ]
    sim.define(journey, renewal)
    sim.act(journey.id, "launch")
    sim.act(renewal.id, "launch")
    sim.user("u1", Country="PT", Time_zone="Europe/Lisbon")  # dimensions on its rows
    sim.event("u1", "FlightChanged")
    sim.now += timedelta(milliseconds=1234)
    sim.feedback(sim.commands[0], "delivered")
    sim.advance(timedelta(hours=1))
    sim.enter("follow-up-email-sms-whatsapp", "u2", plan={"tier": "gold"})
    return tuple(
        orjson.loads(orjson.dumps(items, option=orjson.OPT_UTC_Z))
        for items in (sim.activity, sim.commands)
    )


def engine_activity() -> list[dict[str, Any]]:
    return engine_outputs()[0]


def test_the_trusted_command_row_is_the_models_row() -> None:
    commands = engine_outputs()[1]
    assert {c["channel"] for c in commands} >= {"push", "email"}
    for item in commands:
        model = SendCommand.model_validate(item)
        assert command_row(item, ORIGIN) == rows.send_command_row(model, ORIGIN)


def test_the_trusted_row_is_the_models_row() -> None:
    items = engine_activity()
    assert len(items) >= 5
    assert any("country" in item for item in items)
    assert any("country" not in item for item in items)
    for item in items:
        model = JourneyActivity.model_validate(item)
        assert activity_row(item, ORIGIN) == rows.journey_activity_row(model, ORIGIN)
    # With the input record that made it, and as a record of an earlier version wrote it.
    item = items[0]
    for changed in (
        {**item, "trigger": "e:x", "source": "e", "offset": 12},
        {key: value for key, value in item.items() if key != "trigger"},
    ):
        model = JourneyActivity.model_validate(changed)
        assert activity_row(changed, ORIGIN) == rows.journey_activity_row(model, ORIGIN)
    assert all(item["trigger"] for item in items)


@pytest.mark.parametrize(
    "change",
    [
        {"activity": "teleported"},
        {"journey_version": "1"},
        {"at": "2026-12-10T08:00:00+01:00"},
        {"at": "2400-01-01T00:00:00Z"},
        {"extra": 1},
    ],
)
def test_anything_unexpected_goes_through_the_model(change: dict[str, Any]) -> None:
    good = engine_activity()[0]
    bad = {**good, **change}
    with pytest.raises((KeyError, TypeError, ValueError)):
        activity_row(bad, ORIGIN)
    to_rows = item_rows("t", JourneyActivity, rows.journey_activity_row, activity_row)
    record = SimpleNamespace(value=orjson.dumps([good, bad]))
    projected = to_rows(record, ORIGIN)  # type: ignore[arg-type]
    # The model takes what it can (a +01:00 instant is converted); the rest is left out.
    assert projected[0] == activity_row(good, ORIGIN)
    assert len(projected) in (1, 2)


def test_a_not_opened_rows_identity_leaves_its_command_out() -> None:
    # Rows of earlier versions named no command: a replay must rewrite the same row.
    fields: dict[str, Any] = {
        "journey_id": "j",
        "journey_version": 1,
        "run": "1-e1",
        "user_id": "u1",
        "step": "e",
        "activity": "not_opened",
        "at": "2026-12-01T10:00:00Z",
        "event_at": "2026-12-01T10:00:00Z",
        "visit": 1,
    }
    named = JourneyActivity(**fields, command_id="j:1:1-e1:e:1:0123456789abcdef")
    before = JourneyActivity(**fields)
    assert named.activity_id == before.activity_id
    item = orjson.loads(orjson.dumps(named.model_dump(mode="json")))
    assert activity_row(item, ORIGIN)[0] == before.activity_id
    sent = JourneyActivity(**{**fields, "activity": "sent"}, command_id=named.command_id)
    assert sent.activity_id != JourneyActivity(**{**fields, "activity": "sent"}).activity_id
