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
from schemas.journeys import JourneyDefinition
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
    # The definitions as the registry holds them: versioned.
    moments = timeline(facts, definitions={INACTIVE.id: INACTIVE.model_copy(update={"version": 1})})
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


def api_journey(**settings: Any) -> JourneyDefinition:
    """An API entry, an email with a two-day split, a second email."""
    return JourneyDefinition.model_validate(
        {
            "id": "j",
            "name": "J",
            "entries": [{"kind": "api"}],
            "start": "first",
            "nodes": [
                {"id": "first", "type": "message", "channel": "email", "preset": "we-miss-you",
                 "split_after": {"amount": 2, "unit": "days"},
                 "next": {"opened": "done", "not_opened": "second"}},
                {"id": "second", "type": "message", "channel": "email",
                 "preset": "we-miss-you-reminder", "next": {"next": "done"}},
                {"id": "done", "type": "exit"},
            ],
            "settings": settings,
        }
    )  # fmt: skip


def entered(journey: JourneyDefinition, email: bool = True) -> Recorder:
    engine = Recorder(presets=load_presets(), journeys=[journey])
    if email:
        engine.tags("u", Email="u@example.com")
    engine.enter(journey.id, "u")
    return engine


@pytest.mark.parametrize(
    ("case", "answer", "words"),
    [
        ("unreachable", "unreachable", "no address on the channel (no Email)"),
        ("opted_out", "opted_out", "opted out"),
        ("capped", "capped", "frequency cap"),
        ("goal", "goal_reached", "reached the goal"),
        ("stopped", "journey_stopped", "the journey stopped"),
        ("refused", "entry_refused", "was refused"),
    ],
)
def test_why_not_names_what_kept_the_message_back(case: str, answer: str, words: str) -> None:
    settings: dict[str, Any] = {}
    if case == "goal":
        settings = {"goals": [{"name": "bought", "match": {"event": "Purchase"}}]}
    if case == "capped":
        settings = {"frequency_cap": {"messages": 1, "period": {"amount": 7, "unit": "days"}}}
    journey = api_journey(**settings)
    engine = entered(journey, email=case != "unreachable")
    first = [c for c in engine.commands if c["step"] == "first"]
    step = "first" if case in ("unreachable", "refused") else "second"
    if case == "opted_out":
        engine.feedback(first[0], "unsubscribed")
    elif case == "goal":
        engine.event("u", "Purchase")
    elif case == "stopped":
        engine.act("j", "stop")
    elif case == "refused":
        engine = Recorder(presets=load_presets(), journeys=[journey])
        engine.tags("u", Email="u@example.com")
        engine.event("u", "Unrelated")
        engine.enter(journey.id, "u")
        engine.enter(journey.id, "u")  # already inside
        engine.advance(3 * DAY)
        engine.enter(journey.id, "u")  # re-entry not allowed
        engine.advance(DAY)
        step = "never-sent"
    engine.advance(3 * DAY)
    facts = engine.facts("u")
    if case == "refused":
        result = why_not(facts, journey, {}, "first")
        assert result["answer"] == "sent"
        rows = [row for row in facts.activity if row["activity"] == "skipped"]
        assert rows
        result = _inside(facts, journey)
    else:
        result = why_not(facts, journey, {}, step)
    assert result["answer"] == answer, result
    assert words in result["text"]
    assert result["cites"]
    assert all(cite for cite in result["cites"])


def _inside(facts: Facts, journey: JourneyDefinition) -> dict[str, Any]:
    """The answer for the step of a visit that never came, after a refused entry."""
    from projections.explain import _inside_answer

    rows = [row for row in facts.activity if row["journey_id"] == journey.id]
    return _inside_answer(rows, journey, "second")
