"""The analysts' view of the demo: ``reach demo --keep`` leaves its data, and on it
every example query of docs/analytics.md and every query of the Grafana dashboard
returns rows, and the daily rollups agree with the raw facts read with FINAL."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo import kept_message, run_demo
from streams.settings import Settings
from tests.unit.test_analytics_docs import dashboard_queries, example_queries, run_queries

pytestmark = pytest.mark.integration

# Each returns one row when the rollup and the facts agree, none otherwise.
AGREEMENT = [
    f"SELECT 1 WHERE (SELECT sum({rollup}) FROM journey_daily_stats)"
    f" = (SELECT countIf({fact}) FROM journey_activity FINAL) AND ({rollup_sum}) > 0"
    for rollup, fact, rollup_sum in [
        ("sent", "activity = 'sent'", "SELECT sum(sent) FROM journey_daily_stats"),
        ("delivered", "activity = 'delivered'", "SELECT sum(delivered) FROM journey_daily_stats"),
        ("opened", "activity = 'opened'", "SELECT sum(opened) FROM journey_daily_stats"),
        ("entries", "activity = 'entered' AND detail = 'journey'", "SELECT 1"),
    ]
] + [
    "SELECT 1 WHERE (SELECT sum(bounced) FROM journey_daily_stats)"
    " = (SELECT uniqExactIf(command_id, status = 'bounced' AND journey_id != '')"
    " FROM feedback FINAL)",
    "SELECT 1 WHERE (SELECT argMax(members, day) FROM segment_daily_sizes"
    " WHERE segment_id = 'country-portugal')"
    " = (SELECT countIf(change = 'entered') - countIf(change = 'exited')"
    " FROM segment_memberships FINAL WHERE segment_id = 'country-portugal')",
    # One profile per user, whose country is the last Country of its history.
    "SELECT 1 WHERE (SELECT count() FROM user_profiles FINAL)"
    " = (SELECT uniqExact(user_id) FROM user_profiles) AND (SELECT count() FROM user_profiles) > 0",
    "SELECT 1 WHERE (SELECT countIf(country != last) FROM user_profiles AS p FINAL"
    " JOIN (SELECT user_id, argMax(value, version) AS last FROM user_profile_changes"
    " WHERE tag = 'Country' GROUP BY user_id) AS h ON h.user_id = p.user_id) = 0"
    " AND (SELECT countIf(country != '') FROM user_profiles FINAL) > 0",
]


def test_the_kept_demo_answers_the_documented_queries(tmp_path: Path) -> None:
    kept = tmp_path / "demo-data"
    report = tmp_path / "report.html"
    assert run_demo(Settings(), users=150, days=14, report_path=report, keep=kept)
    assert f"REACH_DATA_DIR={kept.resolve()} reach query" in kept_message(kept.resolve())
    assert "Daily figures" in report.read_text(encoding="utf-8")
    journeys = ["reengage-once", "reengage-weekly"]
    queries = [*example_queries(), *dashboard_queries(journeys), *AGREEMENT]
    answer = run_queries(kept / "clickhouse", queries)
    empty = [
        (sql.strip().splitlines()[0], result)
        for sql, result in zip(queries, answer["answers"], strict=True)
        if result.get("rows", 0) == 0
    ]
    assert empty == []
