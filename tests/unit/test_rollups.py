"""The daily rollups on a real ClickHouse engine: rows as the projections write them,
each written more than once (replays and re-sends do), counted once per identity in
journey_daily_stats and segment_daily_sizes; bounces counted from feedback; feedback
rows naming their journey step; and a data directory of the earlier layout upgraded
(rollups backfilled, feedback's new columns computed, send_commands re-sorted) by a
migration that changes nothing when it runs again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from projections import rows

ROOT = Path(__file__).resolve().parents[2]

# In a child process: the embedded engine allows one data path per process.
_RUN = """
import json, sys
from datetime import datetime
from projections import rows
from projections.clickhouse import connect
from schemas import Feedback
from schemas.commands import JourneyActivity, SendCommand, command_id

folder, payload = sys.argv[1], json.loads(sys.stdin.read())
NOW = datetime.fromisoformat("2026-11-05T00:00:00+00:00")
CMD = {u: command_id("welcome", 1, "r1", u, "greet", 1) for u in ("u1", "u2", "u3")}

def activity(user, step, kind, at, **more):
    return JourneyActivity(journey_id="welcome", journey_version=1, run="r1", user_id=user,
                           step=step, activity=kind, at=at, **more)

ACTIVITY = [
    activity("u1", "greet", "entered", "2026-11-01T09:00:00Z", detail="journey"),
    activity("u1", "greet", "sent", "2026-11-01T09:01:00Z", command_id=CMD["u1"], visit=1),
    activity("u1", "greet", "delivered", "2026-11-01T09:02:00Z", command_id=CMD["u1"], visit=1),
    activity("u1", "greet", "opened", "2026-11-02T08:00:00Z", command_id=CMD["u1"], visit=1),
    activity("u1", "greet", "clicked", "2026-11-02T08:01:00Z", command_id=CMD["u1"], visit=1),
    activity("u1", "done", "goal", "2026-11-02T09:00:00Z", detail="purchase"),
    activity("u2", "greet", "entered", "2026-11-01T10:00:00Z", detail="journey"),
    activity("u2", "greet", "sent", "2026-11-01T10:01:00Z", command_id=CMD["u2"], visit=1),
    activity("u2", "greet", "delivered", "2026-11-01T10:02:00Z", command_id=CMD["u2"], visit=1),
    activity("u3", "greet", "entered", "2026-11-01T11:00:00Z", detail="journey"),
    activity("u3", "greet", "sent", "2026-11-01T11:01:00Z", command_id=CMD["u3"], visit=1),
    activity("u3", "greet", "bounced", "2026-11-01T11:02:00Z", command_id=CMD["u3"], visit=1,
             cause="f:b1"),
    activity("u3", "greet", "bounced", "2026-11-01T11:05:00Z", command_id=CMD["u3"], visit=1,
             cause="f:b2"),
]
FEEDBACK = [
    # u3's email bounced, reported twice (two feedback ids): one bounced command.
    Feedback(command_id=CMD["u3"], user_id="u3", status="bounced", channel="email",
             timestamp="2026-11-01T11:02:00Z"),
    Feedback(command_id=CMD["u3"], user_id="u3", status="bounced", channel="email",
             timestamp="2026-11-01T11:05:00Z"),
    Feedback(command_id=CMD["u2"], user_id="u2", status="unsubscribed", channel="email",
             timestamp="2026-11-03T10:00:00Z"),
    Feedback(command_id="not-a-journey-command", user_id="u9", status="bounced",
             timestamp="2026-11-01T11:00:00Z"),
]
CHANGES = [
    {"segment_id": "vip", "user_id": u, "change": c, "at": at, "version": 1, "cause": "e:" + u + c}
    for u, c, at in [("u1", "entered", "2026-11-01T09:00:00Z"),
                     ("u2", "entered", "2026-11-01T10:00:00Z"),
                     ("u1", "exited", "2026-11-04T10:00:00Z")]
]
COMMAND = SendCommand(command_id=CMD["u1"], user_id="u1", channel="email", preset="hello",
                      journey_id="welcome", journey_version=1, run="r1", step="greet", visit=1,
                      at="2026-11-01T09:01:00Z", tags={"Country": "PT", "Language": 3},
                      variant="b", event_at="2026-11-01T09:00:00Z")

def write(client, times):
    for _ in range(times):  # one insert per copy: separate parts, as replays make
        client.insert("journey_activity", [rows.journey_activity_row(a, rows.Origin(0, 1))
                                           for a in ACTIVITY],
                      column_names=list(rows.JOURNEY_ACTIVITY.columns))
        client.insert("feedback", [rows.feedback_row(f, rows.Origin(0, 2), NOW) for f in FEEDBACK],
                      column_names=list(rows.FEEDBACK.columns))
        client.insert("segment_memberships", [rows.membership_row(c, rows.Origin(0, 3))
                                              for c in CHANGES],
                      column_names=list(rows.SEGMENT_MEMBERSHIPS.columns))
        client.insert("send_commands", [rows.send_command_row(COMMAND, rows.Origin(0, 4))],
                      column_names=list(rows.SEND_COMMANDS.columns))

if payload.get("old"):
    import chdb, clickhouse_connect
    old = clickhouse_connect.get_client(dsn="chdb://" + folder)
    old.command("CREATE DATABASE reach")
    old.database = "reach"
    for text in payload["old"]:
        old.command(text, parameters={"database": "reach"})
    # The rows an earlier version wrote: the columns its tables had.
    def old_insert(table, columns, values):
        old.insert(table, [v[:len(columns)] for v in values], column_names=list(columns))
    for _ in range(2):
        old_insert("feedback", rows.FEEDBACK.columns[:10],
                   [rows.feedback_row(f, rows.Origin(0, 2), NOW) for f in FEEDBACK])
        old_insert("send_commands", rows.SEND_COMMANDS.columns[:14],
                   [rows.send_command_row(COMMAND, rows.Origin(0, 4))])
    old.close()
    client = connect("chdb://" + folder, "reach")
    write(client, 1)
    client.close()
client = connect("chdb://" + folder, "reach")
write(client, 0 if payload.get("old") else 2)
if payload.get("reopen"):
    # Started again; then as after a crash between a view's creation and its note.
    client.close()
    client = connect("chdb://" + folder, "reach")
    client.command("ALTER TABLE journey_daily MODIFY COMMENT ''")
    client.close()
    client = connect("chdb://" + folder, "reach")
def one(sql):
    return [list(row) for row in client.query(sql).result_rows]
print(json.dumps({
    "daily": one("SELECT day, step, entries, entered, sent, delivered, opened, clicked,"
                 " failed, converted, bounced, unsubscribed, open_rate, bounce_rate"
                 " FROM journey_daily_stats ORDER BY day, step"),
    "sizes": one("SELECT day, entered, exited, members FROM segment_daily_sizes"
                 " WHERE segment_id = 'vip' ORDER BY day"),
    "feedback": one("SELECT DISTINCT command_id, journey_id, journey_version, run, step"
                    " FROM feedback ORDER BY command_id"),
    "commands": one("SELECT command_id, count() FROM send_commands FINAL GROUP BY command_id"),
    "keys": one("SELECT name, sorting_key FROM system.tables WHERE database = 'reach'"
                " AND name IN ('send_commands', 'feedback') ORDER BY name"),
    "tables": one("SELECT name FROM system.tables WHERE database = 'reach' ORDER BY name"),
    "dimensions": one("SELECT DISTINCT country, language, variant, event_at < at"
                      " FROM send_commands ORDER BY country"),
    "activity_columns": one("SELECT name FROM system.columns WHERE database = 'reach'"
                            " AND table = 'journey_activity' ORDER BY position"),
    "steps": one("SELECT step, failed, bounced FROM journey_step_stats ORDER BY step"),
    "journey": one("SELECT failed, bounced FROM journey_stats"),
    "comments": one("SELECT name, comment FROM system.tables WHERE database = 'reach'"
                    " AND name IN ('journey_daily', 'segment_daily') ORDER BY name"),
}, default=str))
"""

OLD_TABLES = [
    """CREATE TABLE {database:Identifier}.feedback (
        feedback_id String, command_id String, user_id String,
        status LowCardinality(String), channel LowCardinality(String), reason String,
        ts DateTime64(3, 'UTC'), source_partition UInt32, source_offset UInt64,
        ingested_at DateTime64(3, 'UTC'))
    ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts)
    ORDER BY (status, command_id, feedback_id)""",
    """CREATE TABLE {database:Identifier}.send_commands (
        command_id String, user_id String, channel LowCardinality(String), preset String,
        url String, journey_id LowCardinality(String), journey_version UInt32, run String,
        step LowCardinality(String), visit UInt32, properties String,
        at DateTime64(3, 'UTC'), source_partition UInt32, source_offset UInt64)
    ENGINE = ReplacingMergeTree ORDER BY command_id""",
    # journey_activity before its rows carried their dimensions.
    """CREATE TABLE IF NOT EXISTS {database:Identifier}.journey_activity
(
    activity_id      String,
    journey_id       LowCardinality(String),
    journey_version  UInt32,
    run              String,
    user_id          String,
    step             LowCardinality(String),
    activity         LowCardinality(String),
    at               DateTime64(3, 'UTC'),
    detail           String,
    command_id       String,
    visit            UInt32,
    cause            String,
    source_partition UInt32,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (journey_id, step, activity, activity_id)""",
    (ROOT / "projections/sql/100_journey_daily.sql").read_text(),
    # The daily rollup's view before bounces came from feedback alone.
    """CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.journey_daily_from_activity
    TO {database:Identifier}.journey_daily
    AS
    SELECT toDate(at) AS day, journey_id, journey_version, step,
        if(activity = 'entered' AND detail = 'journey', 'entered_journey', activity) AS measure,
        uniqExactState(sipHash64(activity_id)) AS ids
    FROM journey_activity
    GROUP BY day, journey_id, journey_version, step, measure""",
]


def _run(folder: Path, **payload: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(folder)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


# day, step, entries, entered, sent, delivered, opened, clicked, failed, converted,
# bounced, unsubscribed, open_rate, bounce_rate
EXPECTED_DAILY = [
    ["2026-11-01", "greet", 3, 3, 3, 2, 0, 0, 0, 0, 1, 0, 0.0, 1 / 3],
    ["2026-11-02", "done", 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, None, None],
    ["2026-11-02", "greet", 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, None, None],
    ["2026-11-03", "greet", 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, None, None],
]
EXPECTED_SIZES = [
    ["2026-11-01", 2, 0, 2],
    ["2026-11-02", 0, 0, 2],  # no change that day: the snapshot carries the size
    ["2026-11-03", 0, 0, 2],
    ["2026-11-04", 0, 1, 1],
]


def test_rollups_count_each_identity_once_and_bounces_from_feedback(tmp_path: Path) -> None:
    answer = _run(tmp_path / "clickhouse")
    assert answer["daily"] == EXPECTED_DAILY
    assert answer["sizes"] == EXPECTED_SIZES
    # The views count rows: one 'bounced' row per bounce reported; none is a failure.
    assert answer["steps"] == [["done", 0, 0], ["greet", 0, 2]]
    assert answer["journey"] == [[0, 2]]


def test_feedback_rows_name_their_journey_step(tmp_path: Path) -> None:
    answer = _run(tmp_path / "clickhouse")
    by_command = {row[0]: row[1:] for row in answer["feedback"]}
    assert by_command["not-a-journey-command"] == ["", 0, "", ""]
    journey_steps = [value for key, value in by_command.items() if key.startswith("welcome:")]
    assert journey_steps == [["welcome", 1, "r1", "greet"]] * 2


def test_send_commands_are_sorted_by_user(tmp_path: Path) -> None:
    answer = _run(tmp_path / "clickhouse")
    assert dict(answer["keys"])["send_commands"] == "user_id, command_id"
    assert [count for _, count in answer["commands"]] == [1]


def test_facts_carry_their_dimensions(tmp_path: Path) -> None:
    answer = _run(tmp_path / "clickhouse")
    # The country and language from the command's tags (a value not text: empty).
    assert answer["dimensions"] == [["PT", "", "b", 1]]
    columns = [name for (name,) in answer["activity_columns"]]
    assert columns == list(rows.JOURNEY_ACTIVITY.columns)


def test_an_earlier_data_directory_is_upgraded_and_backfilled(tmp_path: Path) -> None:
    # Rows written by the earlier version (without rollups, feedback without its step
    # columns, send_commands sorted by command_id), then by this one; opened twice.
    answer = _run(tmp_path / "clickhouse", old=OLD_TABLES)
    assert dict(answer["keys"]) == {
        "feedback": "status, command_id, feedback_id",
        "send_commands": "user_id, command_id",
    }
    assert [count for _, count in answer["commands"]] == [1]
    by_command = {row[0]: row[1:] for row in answer["feedback"]}
    assert by_command["not-a-journey-command"] == ["", 0, "", ""]
    assert [v for k, v in by_command.items() if k.startswith("welcome:")] == [
        ["welcome", 1, "r1", "greet"]
    ] * 2
    # The rollup's view of the earlier definition is replaced: bounces count once.
    assert answer["daily"] == EXPECTED_DAILY
    assert answer["sizes"] == EXPECTED_SIZES
    # The earlier version's rows: no dimensions, their own instant as event_at.
    assert answer["dimensions"] == [["", "", "", 0], ["PT", "", "b", 1]]
    columns = [name for (name,) in answer["activity_columns"]]
    assert columns == list(rows.JOURNEY_ACTIVITY.columns)
    assert not [name for (name,) in answer["tables"] if name.endswith("__before_upgrade")]


def test_the_backfill_runs_once_per_view_and_again_harmlessly(tmp_path: Path) -> None:
    answer = _run(tmp_path / "clickhouse", old=OLD_TABLES, reopen=True)
    assert answer["comments"] == [
        [
            "journey_daily",
            "backfilled by: journey_daily_from_activity, journey_daily_from_feedback",
        ],
        ["segment_daily", "backfilled by: segment_daily_from_memberships"],
    ]
    assert answer["daily"] == EXPECTED_DAILY
    assert answer["sizes"] == EXPECTED_SIZES
