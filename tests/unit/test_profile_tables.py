"""On a real ClickHouse engine: the profile records of a user's inputs, projected
twice (a replay), give one ``user_profiles`` row per user under FINAL, the latest, and
a ``user_profile_changes`` history where a tag's value at an instant is one argMax."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a child process: the embedded engine allows one data path per process.
_RUN = """
import json, sys
from datetime import timedelta
import orjson
from engine.testing import Harness
from projections.clickhouse import connect
from projections.profiles import USER_PROFILE_CHANGES, USER_PROFILES, profile_rows
from projections.rows import Origin

engine = Harness()
engine.tags("u1", Country="PT", Plan="free")
engine.now += timedelta(days=1)
engine.event("u1", "ApplicationOpen", country="FR", app_version="3.1")
engine.now += timedelta(days=1)
engine.tags("u1", op="increment", Sessions=4)
engine.tags("u1", op="unset", Plan="")
engine.tags("u2", Country="DE")
client = connect("chdb://" + sys.argv[1], "reach")
for replay in range(2):
    for offset, record in enumerate(engine.profiles):
        loaded = orjson.loads(orjson.dumps(record, option=orjson.OPT_UTC_Z))
        profile, changes = profile_rows(loaded, Origin(0, offset))
        client.insert(USER_PROFILES.name, [profile], column_names=list(USER_PROFILES.columns))
        if changes:
            client.insert(USER_PROFILE_CHANGES.name, changes,
                          column_names=list(USER_PROFILE_CHANGES.columns))
answers = {}
answers["profiles"] = client.query(
    "SELECT user_id, country, application_version, tags, "
    "toString(last_application_open) FROM user_profiles FINAL ORDER BY user_id").result_rows
answers["rows"] = client.query("SELECT count() FROM user_profile_changes FINAL").result_rows
answers["country_on_day_1"] = client.query(
    "SELECT user_id, argMax(value, version) FROM user_profile_changes "
    "WHERE tag = 'Country' AND at <= toDateTime64('2026-01-05 12:00:00', 3, 'UTC') "
    "GROUP BY user_id ORDER BY user_id").result_rows
answers["plan_now"] = client.query(
    "SELECT argMax(value, version), argMax(removed, version) FROM user_profile_changes "
    "WHERE tag = 'Plan' AND user_id = 'u1'").result_rows
answers["sessions"] = client.query(
    "SELECT number FROM user_profile_changes FINAL WHERE tag = 'Sessions'").result_rows
print(json.dumps(answers, default=str))
"""


def test_profiles_replayed_are_one_row_per_user_and_the_history_answers_argmax(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(tmp_path / "clickhouse")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["profiles"] == [
        ["u1", "FR", "3.1.0.0", {"Sessions": "4"}, "2026-01-06 09:00:00.000"],
        ["u2", "DE", "", {}, None],
    ]
    # u1: Country, Plan; First Install, Last Application Open, Country, Application
    # Version; Sessions; Plan removed. u2: Country.
    assert answers["rows"] == [[9]]
    assert answers["country_on_day_1"] == [["u1", "PT"]]  # u2 had none yet
    assert answers["plan_now"] == [["", True]]
    assert answers["sessions"] == [[4.0]]
