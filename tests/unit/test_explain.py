"""``reach explain``'s timeline and "why not", over the rows the projections hold for
demo-like data: the seed campaign (one email, five days to open it, a second email),
its segment ``inactive-7d``, and three users: one who got both emails, one who opened
the first, one who kept using the app and never entered."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from engine.testing import Harness
from projections import rows
from projections.explain import Facts, explain, timeline, why_not
from schemas.commands import JourneyActivity, SendCommand
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from tests.unit.journey_sim import load_journeys, load_presets

DAY = timedelta(days=1)
SEED = {journey.id: journey for journey in load_journeys("examples/seed-journeys.yaml")}
INACTIVE = SegmentDefinition(
    id="inactive-7d",
    name="Has not opened the app for 7 days",
    condition=parse(
        'T("First Install", date, exists) * E("ApplicationOpen", count = 0, last 7 days)'
    ),
)
ORIGIN = rows.Origin(0, 0)


class Recorder(Harness):
    """A harness that keeps the rows the projections would hold."""

    def __init__(self, **options: Any) -> None:
        self.inputs: list[Event | TagUpdate | Feedback] = []
        super().__init__(**options)

    def send(self, item: Any) -> Any:
        if isinstance(item, Event | TagUpdate | Feedback):
            self.inputs.append(item)
        return super().send(item)

    def facts(self, user: str, journey: str | None = None) -> Facts:
        def table(name: rows.Table, row: rows.Row) -> dict[str, Any]:
            return dict(zip(name.columns, row, strict=True))

        facts = Facts(user)
        for item in self.inputs:
            if item.user_id != user:
                continue
            if isinstance(item, Event):
                facts.events.append(table(rows.EVENTS, rows.event_row(item, ORIGIN, self.now)))
            elif isinstance(item, TagUpdate):
                row = rows.tag_update_row(item, ORIGIN, self.now)
                facts.tag_updates.append(table(rows.TAG_UPDATES, row))
            else:
                facts.feedback.append(
                    table(rows.FEEDBACK, rows.feedback_row(item, ORIGIN, self.now))
                )
        for change in self.changes:
            if change["user_id"] == user:
                written = {**change, "at": change["at"].isoformat().replace("+00:00", "Z")}
                row = rows.membership_row(written, ORIGIN)
                facts.memberships.append(table(rows.SEGMENT_MEMBERSHIPS, row))
        for item in self.activity:
            row = rows.journey_activity_row(JourneyActivity.model_validate(item), ORIGIN)
            if item["user_id"] == user:
                facts.activity.append(table(rows.JOURNEY_ACTIVITY, row))
            if item["activity"] == "entered" and item["detail"] == "journey":
                at = facts.runs.get(item["run"])
                facts.runs[item["run"]] = min(at, item["at"]) if at else item["at"]
        for command in self.commands:
            if command["user_id"] == user:
                row = rows.send_command_row(SendCommand.model_validate(command), ORIGIN)
                facts.commands.append(table(rows.SEND_COMMANDS, row))
        return facts


def fixture() -> tuple[Recorder, dict[str, Any]]:
    """The demo's story in small: installs, app opens, the campaign's run, an open."""
    engine = Recorder(
        segments=[INACTIVE], presets=load_presets(), journeys=[SEED["reengage-once"]],
        now=datetime.fromisoformat("2026-12-01T08:00:00+00:00"), schedules=False,
    )  # fmt: skip
    for user in ("both", "opener", "active"):
        engine.tags(
            user, First_Install={"type": "date", "value": "2026-01-01"}, Email=f"{user}@example.com"
        )
    engine.event("active", "ApplicationOpen")
    engine.advance(8 * DAY)  # both and opener lapse; active keeps opening the app
    engine.event("active", "ApplicationOpen")
    engine.advance(timedelta(hours=1))
    engine.run("reengage-once", "20261210T0900")
    first = {command["user_id"]: command for command in engine.commands}
    engine.advance(DAY)
    engine.feedback(first["opener"], "opened")
    engine.advance(5 * DAY)
    return engine, first


@pytest.fixture(scope="module")
def demo() -> tuple[Recorder, dict[str, Any]]:
    return fixture()


def test_the_user_who_got_both_emails(demo: tuple[Recorder, dict[str, Any]]) -> None:
    engine, first = demo
    facts = engine.facts("both")
    answer = why_not(facts, SEED["reengage-once"], {INACTIVE.id: INACTIVE}, "second-email")
    assert answer["answer"] == "sent"
    second = [c for c in engine.commands if c["user_id"] == "both"][-1]
    assert second["command_id"] in answer["cites"]
    moments = timeline(facts)
    whats = [moment["what"] for moment in moments]
    assert whats.index("entered segment inactive-7d (v1)") < whats.index(
        "reengage-once: entered the journey (run 1-20261210T0900) at first-email"
    )
    entered = next(m for m in moments if m["what"].startswith("entered segment"))
    assert 'E("ApplicationOpen", count = 0, last 7 days): count 0 -> true' in entered["why"]
    branch = next(m for m in moments if "via first-email.not_opened" in m["what"])
    assert "timer due" in branch["why"]
    sends = [m for m in moments if m["kind"] == "send"]
    assert [m["id"] for m in sends] == [first["both"]["command_id"], second["command_id"]]
    assert [m["at"] for m in moments] == sorted(m["at"] for m in moments)


def test_the_user_who_opened(demo: tuple[Recorder, dict[str, Any]]) -> None:
    engine, first = demo
    facts = engine.facts("opener")
    answer = why_not(facts, SEED["reengage-once"], {INACTIVE.id: INACTIVE}, "second-email")
    assert answer["answer"] == "other_branch"
    assert "first-email.opened" in answer["text"]
    assert "feedback" in answer["text"]
    got = why_not(facts, SEED["reengage-once"], {INACTIVE.id: INACTIVE})
    assert got["answer"] == "sent"
    assert "opened it" in got["text"]
    assert first["opener"]["command_id"] in got["cites"]


def test_the_user_who_never_entered(demo: tuple[Recorder, dict[str, Any]]) -> None:
    engine, _ = demo
    facts = engine.facts("active")
    answer = why_not(facts, SEED["reengage-once"], {INACTIVE.id: INACTIVE})
    assert answer["answer"] == "not_in_segment"
    assert 'E("ApplicationOpen", count = 0, last 7 days): count 1 -> false' in answer["text"]
    assert "run 1-20261210T0900" in answer["text"]
    assert any(cite.startswith("run ") for cite in answer["cites"])
    assert facts.events[-1]["event_id"] in answer["cites"]


def test_a_user_still_waiting() -> None:
    engine = Recorder(
        segments=[INACTIVE], presets=load_presets(), journeys=[SEED["reengage-once"]],
        schedules=False,
    )  # fmt: skip
    engine.tags("u", First_Install={"type": "date", "value": "2026-01-01"}, Email="u@example.com")
    engine.advance(8 * DAY)
    engine.run("reengage-once", "20261210T0900")
    engine.advance(DAY)
    answer = why_not(engine.facts("u"), SEED["reengage-once"], {}, "second-email")
    assert answer["answer"] == "waiting"
    assert "until" in answer["text"]


def test_the_journey_view_keeps_its_rows(demo: tuple[Recorder, dict[str, Any]]) -> None:
    engine, _ = demo
    answer = explain(engine.facts("opener"), SEED["reengage-once"], {INACTIVE.id: INACTIVE}, None)
    kinds = {moment["kind"] for moment in answer["timeline"]}
    assert kinds == {"membership", "journey", "send", "input"}
    assert all("event " not in m["what"] for m in answer["timeline"])
    assert answer["why"]["answer"] == "sent"


def test_reach_explain_prints_the_timeline_and_the_answer(
    demo: tuple[Recorder, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from cli import common as cli_common
    from cli.main import main

    engine, _ = demo
    answer = explain(engine.facts("active"), SEED["reengage-once"], {INACTIVE.id: INACTIVE})
    asked: list[str] = []

    def call(api_key: str | None, method: str, path: str, body: Any = None) -> Any:
        asked.append(path)
        return orjson.loads(orjson.dumps(answer))

    monkeypatch.setattr(cli_common, "call", call)
    result = CliRunner().invoke(
        main, ["explain", "a user/1", "--journey", "reengage-once", "--from", "2026-12-01"]
    )
    assert result.exit_code == 0, result.output
    assert asked == ["/v1/users/a%20user%2F1/explain?journey=reengage-once&from=2026-12-01"]
    assert "not_in_segment" in result.output
    assert "count 1 -> false" in result.output
    result = CliRunner().invoke(main, ["explain", "u", "--json"])
    assert orjson.loads(result.output)["why"]["answer"] == "not_in_segment"
    assert CliRunner().invoke(main, ["explain", "u", "--step", "s"]).exit_code == 2
