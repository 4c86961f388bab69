"""Journey statistics on a real ClickHouse engine: records as the journey engine writes
them, projected (each one more than once, as replays and re-sends do) into the
tables, then read through the views by ``journey_stats``; and their rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from projections.journey_stats import STEP_COUNTS, format_stats

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

# In a child process: the embedded engine allows one data path per process.
_RUN = """
import json, sys
from types import SimpleNamespace
from projections.journeys import item_rows
from projections import rows
from projections.clickhouse import connect, query_read_only
from projections.journey_stats import inside_now, journey_stats
from schemas.commands import JourneyActivity, SendCommand

folder, payload = sys.argv[1], json.loads(sys.stdin.read())
client = connect("chdb://" + folder, "reach")
kinds = {
    "activity": (JourneyActivity, rows.JOURNEY_ACTIVITY, rows.journey_activity_row),
    "commands": (SendCommand, rows.SEND_COMMANDS, rows.send_command_row),
}
# One insert per record: separate parts, so only FINAL collapses the duplicates.
for offset, (kind, value) in enumerate(payload["records"]):
    model, table, row_of = kinds[kind]
    record = SimpleNamespace(value=value.encode())
    found = item_rows(kind, model, row_of)(record, rows.Origin(0, offset))
    client.insert(table.name, found, column_names=list(table.columns))
answer = {
    "stats": {journey: journey_stats(client, journey) for journey in payload["journeys"]},
    "queries": [query_read_only(client, sql)[1] for sql in payload["queries"]],
    "inside": inside_now(client, payload["journeys"]),
    "inside_of_none": inside_now(client, []),
}
print(json.dumps(answer, default=str))
"""


def _activity(
    user: str, step: str, activity: str, minutes: float, run: str = "r1", **more: Any
) -> dict[str, Any]:
    return {
        "journey_id": more.pop("journey_id", "welcome"),
        "journey_version": 2 if run == "r2" else 1,
        "run": run,
        "user_id": user,
        "step": step,
        "activity": activity,
        "at": T0 + timedelta(minutes=minutes),
        **more,
    }


def _entry(user: str, minutes: float, run: str = "r1", **more: Any) -> list[dict[str, Any]]:
    """Into the journey: one row at its start node, which is also entering that step."""
    return [_activity(user, "greet", "entered", minutes, run, detail="journey", **more)]


DAY = 24 * 60
ACTIVITY = [
    # u1 opens, clicks and reaches the goal.
    *_entry("u1", 0),
    _activity("u1", "greet", "sent", 1, command_id="c1"),
    _activity("u1", "greet", "delivered", 2, command_id="c1"),
    _activity("u1", "greet", "opened", 3, command_id="c1"),
    _activity("u1", "greet", "clicked", 4, command_id="c1"),
    _activity("u1", "done", "entered", 10),
    _activity("u1", "done", "goal", 10, detail="purchase"),
    _activity("u1", "done", "exited", 10),
    # u2 does not open, is capped at the reminder, then leaves the segment.
    *_entry("u2", 1),
    _activity("u2", "greet", "sent", 2, command_id="c2"),
    _activity("u2", "greet", "delivered", 3, command_id="c2"),
    _activity("u2", "greet", "not_opened", DAY + 2, command_id="c2"),
    _activity("u2", "reminder", "entered", DAY + 2),
    _activity("u2", "reminder", "capped", DAY + 2),
    _activity("u2", "reminder", "dropped", DAY + 5, detail="left_segment"),
    # u3 opted out and leaves; enters again under version 2, and is still inside.
    *_entry("u3", 5),
    _activity("u3", "greet", "suppressed", 5),
    _activity("u3", "done", "entered", 20),
    _activity("u3", "done", "exited", 20),
    *_entry("u3", 2 * DAY, "r2"),
    _activity("u3", "greet", "sent", 2 * DAY + 1, "r2", command_id="c3"),
    _activity("u3", "greet", "failed", 2 * DAY + 2, "r2", command_id="c3"),
    _activity("u3", "reminder", "entered", 3 * DAY, "r2"),
    # u4's entry is refused: counted nowhere.
    _activity("u4", "greet", "skipped", 30, detail="already_inside"),
    # Another journey.
    *_entry("u1", 40, journey_id="other"),
]
COMMAND = {
    "command_id": "welcome:1:r1:greet:1:0123456789abcdef",
    "user_id": "u1",
    "channel": "push",
    "preset": "welcome-push",
    "journey_id": "welcome",
    "journey_version": 1,
    "run": "r1",
    "step": "greet",
    "visit": 1,
    "properties": {"plan": "pro"},
    "at": T0,
}


def _json(items: list[Any]) -> str:
    return orjson.dumps(items, option=orjson.OPT_UTC_Z).decode()


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    replayed = [{**ACTIVITY[6], "activity": "no-such-kind"}, *ACTIVITY[:8]]
    records = [
        ("activity", _json(ACTIVITY)),
        ("activity", _json(ACTIVITY)),  # re-sent whole
        ("activity", _json(replayed)),  # a replay, with an item the engine got wrong
        ("commands", _json([COMMAND])),
        ("commands", _json([COMMAND, {**COMMAND, "at": T0 + timedelta(days=40)}])),
        ("commands", _json([{**COMMAND, "command_id": "welcome:1:r1:greet:1:other"}])),
    ]
    payload = {
        "records": records,
        "journeys": ["welcome", "other", "nobody"],
        "queries": [
            "SELECT command_id, count() FROM send_commands FINAL "
            "GROUP BY command_id ORDER BY command_id",
            "SELECT journey_version, step, entered FROM journey_step_stats "
            "WHERE journey_id = 'welcome' ORDER BY journey_version, step",
        ],
    }
    folder = tmp_path_factory.mktemp("journey-stats") / "clickhouse"
    completed = subprocess.run(
        [sys.executable, "-c", _RUN, str(folder)],
        input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _counts(**nonzero: int) -> dict[str, int]:
    return {name: nonzero.get(name, 0) for name in STEP_COUNTS}


def test_journey_totals_count_each_activity_once(answer: dict[str, Any]) -> None:
    stats = answer["stats"]["welcome"]
    assert stats["journey_id"] == "welcome"
    assert stats["journey"] == {
        "entries": 4,  # u3 entered twice
        "unique_users": 3,
        "inside_now": 1,  # u3's second entry
        "goals": 1,
        "sent": 3,
        "opened": 1,
        "clicked": 1,
        "ctr": pytest.approx(1 / 2),  # clicked / delivered (c1, c2), not / sent
    }


def test_steps_in_the_order_users_reached_them(answer: dict[str, Any]) -> None:
    steps = answer["stats"]["welcome"]["steps"]
    assert [step["step"] for step in steps] == ["greet", "done", "reminder"]
    greet, done, reminder = ({k: v for k, v in step.items() if k != "step"} for step in steps)
    assert greet == _counts(
        entered=4, sent=3, suppressed=1, delivered=2, opened=1, clicked=1, not_opened=1, failed=1
    )
    assert done == _counts(entered=2, goal=1, exited=2)
    assert reminder == _counts(entered=2, capped=1, dropped=1)


def test_step_counts_add_up_over_versions(answer: dict[str, Any]) -> None:
    per_version = answer["queries"][1]
    assert per_version == [
        [1, "done", 2],
        [1, "greet", 3],
        [1, "reminder", 1],
        [2, "greet", 1],
        [2, "reminder", 1],
    ]


def test_journeys_are_apart(answer: dict[str, Any]) -> None:
    other = answer["stats"]["other"]
    assert other["journey"] == {
        "entries": 1, "unique_users": 1, "inside_now": 1, "goals": 0, "sent": 0,
        "opened": 0, "clicked": 0, "ctr": None,
    }  # fmt: skip
    assert other["steps"] == [{"step": "greet", **_counts(entered=1)}]


def test_a_journey_without_activity_has_zeros(answer: dict[str, Any]) -> None:
    nobody = answer["stats"]["nobody"]
    assert nobody["journey"] == {**dict.fromkeys(nobody["journey"], 0), "ctr": None}
    assert nobody["steps"] == []


def test_inside_now_of_several_journeys_at_once(answer: dict[str, Any]) -> None:
    assert answer["inside"] == {"welcome": 1, "other": 1, "nobody": 0}
    assert answer["inside_of_none"] == {}


def test_every_send_command_appears_once(answer: dict[str, Any]) -> None:
    assert answer["queries"][0] == [
        ["welcome:1:r1:greet:1:0123456789abcdef", 1],
        ["welcome:1:r1:greet:1:other", 1],
    ]


def test_format_stats_on_the_engine_answer(answer: dict[str, Any]) -> None:
    text = format_stats(answer["stats"]["welcome"])
    lines = text.splitlines()
    assert lines[0].split() == [
        "journey", "entries", "unique_users", "inside_now", "goals", "sent", "opened",
        "clicked", "ctr",
    ]  # fmt: skip
    assert lines[1].split() == ["welcome", "4", "3", "1", "1", "3", "1", "1", "50.0%"]
    assert lines[2] == ""
    assert lines[3].split() == ["step", *STEP_COUNTS]
    assert [line.split()[0] for line in lines[4:]] == ["greet", "done", "reminder"]
    assert lines[6].split() == [
        "reminder",
        "2",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "1",
        "0",  # bounced
    ]


def test_format_stats_aligns_columns() -> None:
    stats = {
        "journey_id": "j",
        "journey": {
            "entries": 1200, "unique_users": 1000, "inside_now": 40, "goals": 7, "sent": 990,
            "opened": 300, "clicked": 45, "ctr": 45 / 990,
        },
        "steps": [
            {"step": "a-long-step-name", **_counts(entered=1200, sent=990)},
            {"step": "b", **_counts(entered=3, dropped=12345678901)},
        ],
    }  # fmt: skip
    lines = format_stats(stats).splitlines()
    assert lines[:2] == [
        "journey  entries  unique_users  inside_now  goals  sent  opened  clicked   ctr",
        "j           1200          1000          40      7   990     300       45  4.5%",
    ]
    table = lines[3:]
    # Every column's numbers end where its header ends; the step names start the lines.
    header = table[0]
    for line in table[1:]:
        for column in ("entered", "sent", "dropped"):
            end = header.index(column) + len(column)
            assert line[end - 1] != " "
            assert line[end : end + 1] in ("", " ")
    assert table[2].startswith("b ")
    assert table[2].split()[1 + STEP_COUNTS.index("dropped")] == "12345678901"
    assert table[2].endswith(" 0")  # the last column (bounced) ends the line
    assert len({len(line) for line in table}) == 1


def test_format_stats_without_activity() -> None:
    stats = {
        "journey_id": "j",
        "journey": {
            "entries": 0, "unique_users": 0, "inside_now": 0, "goals": 0, "sent": 0,
            "opened": 0, "clicked": 0, "ctr": None,
        },
        "steps": [],
    }  # fmt: skip
    assert format_stats(stats).splitlines()[1:] == [
        "j              0             0           0      0     0       0        0    -",
        "",
        "no activity yet",
    ]


def test_format_stats_with_the_status() -> None:
    stats = {
        "journey_id": "j",
        "status": "finished",
        "journey": {
            "entries": 3, "unique_users": 3, "inside_now": 0, "goals": 0, "sent": 3,
            "opened": 1, "clicked": 0, "ctr": 0.0,
        },
        "steps": [{"step": "greet", **_counts(entered=3, sent=3, opened=1)}],
    }  # fmt: skip
    lines = format_stats(stats).splitlines()
    assert lines[:2] == [
        "journey  status    entries  unique_users  inside_now  goals  sent  opened  clicked   ctr",
        "j        finished        3             3           0      0     3       1        0  0.0%",
    ]
