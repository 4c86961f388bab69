"""On a real ClickHouse engine: a row written again with the same identity but another
instant (a replay under another ``now``, even in another month) is one row under
FINAL; tables of the earlier layout, which sorted by instant, are upgraded in place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# The layout of the previous version, as its data directories hold it.
OLD_TABLES = [
    """CREATE TABLE {database:Identifier}.segment_memberships
(
    change_id        String,
    segment_id       LowCardinality(String),
    user_id          String,
    change           Enum8('entered' = 1, 'exited' = -1),
    at               DateTime64(3, 'UTC'),
    version          UInt32,
    source_partition UInt32,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (segment_id, at, user_id, change_id)""",
    """CREATE TABLE {database:Identifier}.journey_activity
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
    source_partition UInt32,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (journey_id, step, activity, at, activity_id)""",
]

# In a child process: the embedded engine allows one data path per process.
_RUN = """
import json, sys
from datetime import datetime
from projections import rows
from projections.clickhouse import connect
from schemas.commands import JourneyActivity

folder, payload = sys.argv[1], json.loads(sys.stdin.read())
if payload.get("old"):
    import chdb, clickhouse_connect
    client = clickhouse_connect.get_client(dsn="chdb://" + folder)
    client.command("CREATE DATABASE reach")
    for text in payload["old"]:
        client.command(text, parameters={"database": "reach"})
    client.insert("reach.segment_memberships", [
        ("old-id", "vip", "u1", "entered", datetime.fromisoformat("2026-10-31T10:00:00+00:00"),
         2, 0, 7),
    ])
    client.insert("reach.journey_activity", [
        ("old-act", "welcome", 1, "1-now", "u1", "greet", "sent",
         datetime.fromisoformat("2026-10-31T10:00:00+00:00"), "", "c1", 0, 8),
    ])
    if payload.get("crash_after_rename"):
        client.command(
            "RENAME TABLE reach.journey_activity TO reach.journey_activity__before_upgrade"
        )
    client.close()
client = connect("chdb://" + folder, "reach")
for at in payload["instants"]:
    change = {"segment_id": "vip", "user_id": "u1", "change": "entered", "at": at,
              "version": 3, "cause": "e:ev1"}
    client.insert("segment_memberships", [rows.membership_row(change, rows.Origin(0, 1))],
                  column_names=list(rows.SEGMENT_MEMBERSHIPS.columns))
    activity = JourneyActivity(journey_id="welcome", journey_version=1, run="1-now",
                               user_id="u1", step="greet", activity="sent", at=at,
                               command_id="c2", visit=1)
    client.insert("journey_activity", [rows.journey_activity_row(activity, rows.Origin(0, 2))],
                  column_names=list(rows.JOURNEY_ACTIVITY.columns))
def one(sql):
    return client.query(sql).result_rows
print(json.dumps({
    "memberships": one("SELECT change_id, cause FROM segment_memberships FINAL ORDER BY change_id"),
    "activity": one("SELECT activity_id, visit FROM journey_activity FINAL ORDER BY activity_id"),
    "keys": one("SELECT name, sorting_key, partition_key FROM system.tables"
                " WHERE database = 'reach' AND engine LIKE '%MergeTree' ORDER BY name"),
}))
"""

# The same facts, computed in two months.
INSTANTS = ["2026-10-31T23:59:59Z", "2026-11-01T00:00:07Z"]


def _run(folder: Path, **payload: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(folder)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _keys(answer: dict[str, Any]) -> dict[str, list[str]]:
    return {name: [key, partition] for name, key, partition in answer["keys"]}


def test_a_row_written_again_at_another_instant_is_one_row(tmp_path: Path) -> None:
    answer = _run(tmp_path, instants=INSTANTS)
    assert len(answer["memberships"]) == 1
    assert answer["memberships"][0][1] == "e:ev1"
    assert len(answer["activity"]) == 1


def test_tables_of_the_earlier_layout_are_upgraded_in_place(tmp_path: Path) -> None:
    answer = _run(tmp_path, instants=INSTANTS, old=OLD_TABLES)
    keys = _keys(answer)
    assert keys["segment_memberships"] == ["segment_id, user_id, change_id", ""]
    assert keys["journey_activity"] == ["journey_id, step, activity, activity_id", ""]
    # The earlier rows are kept (new columns at their defaults), beside the new ones.
    assert ["old-id", ""] in answer["memberships"]
    assert len(answer["memberships"]) == 2
    assert ["old-act", 0] in answer["activity"]
    assert len(answer["activity"]) == 2
    # Starting again changes nothing.
    again = _run(tmp_path, instants=INSTANTS)
    assert _keys(again) == keys
    assert sorted(again["activity"]) == sorted(answer["activity"])


def test_an_upgrade_cut_off_after_its_first_statement_completes(tmp_path: Path) -> None:
    answer = _run(tmp_path, instants=INSTANTS, old=OLD_TABLES, crash_after_rename=True)
    assert "journey_activity__before_upgrade" not in _keys(answer)
    assert ["old-act", 0] in answer["activity"]
    assert len(answer["activity"]) == 2
