"""The public testing harness (engine/testing.py): the example of docs/testing.md runs,
and the harness moves users as the runtime does."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from engine.testing import Harness, segment
from schemas.definitions import JourneyAction

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_the_docs_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)\n```", DOCS.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {})


def test_a_changed_definition_reevaluates_every_user() -> None:
    engine = Harness(segments=[segment("pt", 'T("Country", eq, "PT")')])
    engine.tags("u1", Country="PT")
    engine.tags("u2", Country="FR")
    assert engine.members("pt") == {"u1"}
    engine.define(segment("pt", 'T("Country", eq, "FR")'))
    assert engine.members("pt") == {"u2"}
    assert engine.record("u2") is not None
    assert engine.record("u2").members == {"pt": 2}  # type: ignore[union-attr]
    engine.delete("pt")
    assert engine.members("pt") == set()
    assert [c["change"] for c in engine.changes] == ["entered", "exited", "entered", "exited"]


def test_a_window_exit_fires_at_its_own_instant() -> None:
    engine = Harness(segments=[segment("active", 'E("Open", count >= 1, last 2 days)')])
    engine.event("u1", "Open")
    start = engine.now
    assert engine.timer("u1") == start + timedelta(days=2)
    engine.advance(timedelta(days=30))
    assert [(c["change"], c["at"]) for c in engine.changes] == [
        ("entered", start),
        ("exited", start + timedelta(days=2)),
    ]
    assert engine.timer("u1") is None


def test_a_replayed_input_counts_once() -> None:
    engine = Harness(segments=[segment("twice", 'E("Open", count >= 2, last 7 days)')])
    engine.event("u1", "Open")
    engine.event("u1", "Open")  # the same event again: a re-send
    assert engine.members("twice") == set()


def audience_journey(schedule: dict[str, object]) -> dict[str, object]:
    return {
        "id": "weekly",
        "name": "Weekly",
        "entries": [{"kind": "audience", "segment": "pt", "schedule": schedule}],
        "start": "tag",
        "nodes": [
            {
                "id": "tag",
                "type": "update_profile",
                "tags": {"Seen": True},
                "next": {"next": "done"},
            },
            {"id": "done", "type": "exit"},
        ],
        "settings": {"reentry": {"kind": "every_run"}},
    }


def test_audience_runs_start_when_time_reaches_them() -> None:
    engine = Harness(
        segments=[segment("pt", 'T("Country", eq, "PT")')],
        journeys=[
            audience_journey(
                {"kind": "recurring", "unit": "days", "at": "10:00", "timezone": "UTC"}
            )
        ],
    )
    engine.tags("u1", Country="PT")
    engine.tags("u2", Country="FR")
    engine.advance(timedelta(days=3), tick=timedelta(minutes=15))
    # 10:00 on each of the three days, for the segment's member only.
    assert [update["user_id"] for update in engine.tag_updates] == ["u1", "u1", "u1"]
    engine.act("weekly", JourneyAction.STOP)
    engine.advance(timedelta(days=3), tick=timedelta(minutes=15))
    assert len(engine.tag_updates) == 3
