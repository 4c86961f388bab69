"""``reach explain`` over ClickHouse: the demo-like fixture's rows (the seed campaign's
three cases, tests/unit/test_explain.py) inserted into the embedded engine, in tables
created by the previous version and upgraded in place; read back by the queries of
``projections.explain``, the answers are those over the same rows in memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from datetime import datetime, timezone
import chdb
import clickhouse_connect
from projections import rows
from projections.clickhouse import connect, sql_files
from projections.explain import explain, fetch
from schemas.commands import JourneyActivity, SendCommand
from tests.unit.test_explain import INACTIVE, SEED, ORIGIN, fixture

folder = sys.argv[1]
NEW = ("condition_values ", "input_source ", "input_offset ", "trigger ")
raw = clickhouse_connect.get_client(dsn="chdb://" + folder)
for name, text in sql_files():
    if name.startswith(("001", "050", "080")):
        # The tables as the previous version created them: without the new columns.
        old = "\\n".join(line for line in text.splitlines() if not line.strip().startswith(NEW))
        old = old.replace("source_offset    UInt64,\\n)", "source_offset    UInt64\\n)")
        old = old.replace("COMMENT 'the instant of the input that made it',\\n)",
                          "COMMENT 'the instant of the input that made it'\\n)")
        raw.command(old, parameters={"database": "reach"})
client = connect("chdb://" + folder, "reach")

engine, first = fixture()
now = engine.now
tables = {}
def add(table, row):
    tables.setdefault(table, []).append(row)
for item in engine.inputs:
    if type(item).__name__ == "Event":
        add(rows.EVENTS, rows.event_row(item, ORIGIN, now))
    elif type(item).__name__ == "TagUpdate":
        add(rows.TAG_UPDATES, rows.tag_update_row(item, ORIGIN, now))
    else:
        add(rows.FEEDBACK, rows.feedback_row(item, ORIGIN, now))
for change in engine.changes:
    written = {**change, "at": change["at"].isoformat().replace("+00:00", "Z")}
    add(rows.SEGMENT_MEMBERSHIPS, rows.membership_row(written, ORIGIN))
for item in engine.activity:
    activity = JourneyActivity.model_validate(item)
    add(rows.JOURNEY_ACTIVITY, rows.journey_activity_row(activity, ORIGIN))
for command in engine.commands:
    add(rows.SEND_COMMANDS, rows.send_command_row(SendCommand.model_validate(command), ORIGIN))
for table, found in tables.items():
    client.insert(table.name, found, column_names=list(table.columns))

answers = {}
segments = {INACTIVE.id: INACTIVE.model_copy(update={"version": 1})}
for user, step in (("both", "second-email"), ("opener", "second-email"), ("active", None)):
    journey = SEED["reengage-once"]
    stored = explain(fetch(client, "reach", user, journey.id), journey, segments, step)
    memory = explain(engine.facts(user), SEED["reengage-once"], segments, step)
    whole = explain(fetch(client, "reach", user), None, segments)
    assert any("count 0 -> true" in m["why"] for m in whole["timeline"]), whole
    answers[user] = {"stored": stored, "memory": memory, "whole": len(whole["timeline"]),
                     "whole_memory": len(explain(engine.facts(user), None, segments)["timeline"])}
columns = client.query(
    "SELECT table, groupArray(name) FROM system.columns WHERE database = 'reach'"
    " AND table IN ('journey_activity', 'segment_memberships') GROUP BY table").result_rows
print(json.dumps({"answers": answers, "columns": {t: list(c) for t, c in columns}}))
"""


def test_explain_reads_the_demo_cases_back_from_clickhouse(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "clickhouse")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    columns = result["columns"]
    for column in ("trigger", "input_source", "input_offset"):
        assert column in columns["journey_activity"]
    for column in ("condition_values", "input_source", "input_offset"):
        assert column in columns["segment_memberships"]
    answers = result["answers"]
    for user, answer in answers.items():
        assert answer["stored"] == answer["memory"], user
        assert answer["whole"] == answer["whole_memory"] > 0, user
    assert answers["both"]["stored"]["why"]["answer"] == "sent"
    assert answers["opener"]["stored"]["why"]["answer"] == "other_branch"
    never = answers["active"]["stored"]["why"]
    assert never["answer"] == "not_in_segment"
    assert 'E("ApplicationOpen", count = 0, last 7 days): count 1 -> false' in never["conditions"]
