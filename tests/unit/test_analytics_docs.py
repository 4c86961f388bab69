"""docs/analytics.md and the Grafana dashboard stay true: the doc lists every table and
view with exactly its columns, and every example query and every dashboard query (its
Grafana macros replaced by literals) passes the query door and runs on the schema. The
integration test (tests/integration/test_analytics.py) runs them on the demo's data and
requires rows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "analytics.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "reachstream.json"

# Internal objects analysts do not read directly (the rollups' storage and feeds).
INTERNAL = {
    "journey_daily",
    "journey_daily_from_activity",
    "journey_daily_from_feedback",
    "segment_daily",
    "segment_daily_from_memberships",
}

# Literals for Grafana's macros and the dashboard's variable, as Grafana would expand them.
MACROS = {
    "$__timeFilter(at)": "at BETWEEN toDateTime64('2000-01-01 00:00:00', 3, 'UTC') "
    "AND now64(3) + INTERVAL 3650 DAY",
    "$__fromTime": "toDateTime('2000-01-01 00:00:00', 'UTC')",
    "$__toTime": "(now() + INTERVAL 3650 DAY)",
}


def example_queries() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("## Example queries", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def dashboard_queries(journeys: list[str]) -> list[str]:
    """The dashboard's SQL, macros expanded; ``journeys``: the variable's selection."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    selected = ", ".join("'" + journey.replace("'", "\\'") + "'" for journey in journeys)
    queries = [dashboard["templating"]["list"][0]["query"]]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            sql = target["rawSql"]
            for macro, literal in MACROS.items():
                sql = sql.replace(macro, literal)
            queries.append(sql.replace("${journey:singlequote}", selected or "''"))
    return queries


def documented_columns() -> dict[str, list[str]]:
    """``### `name``` headings and the backquoted names of their "Columns:" paragraph."""
    text = DOC.read_text(encoding="utf-8").split("## Example queries", 1)[0]
    found: dict[str, list[str]] = {}
    for block in re.split(r"\n### ", text)[1:]:
        heading = re.match(r"`(\w+)`", block)
        if heading is None or "Columns:" not in block:
            continue
        paragraph = block.split("Columns:", 1)[1].split("\n\n", 1)[0]
        while True:  # what a column's note in parentheses names is not a column
            bare = re.sub(r"\([^()]*\)", "", paragraph)
            if bare == paragraph:
                break
            paragraph = bare
        found[heading.group(1)] = re.findall(r"`(\w+)`", paragraph)
    return found


RUN_QUERIES = """
import json, sys
from projections.clickhouse import QueryLimits, connect, connect_analyst, query_read_only

folder, queries = sys.argv[1], json.loads(sys.stdin.read())
connect("chdb://" + folder, "reach")
analyst = connect_analyst("chdb://" + folder, "reach", QueryLimits(60, 2 * 10**9, 10**6, 10**9))
columns = analyst.query(
    "SELECT table, groupArray(name) FROM (SELECT table, name FROM system.columns"
    " WHERE database = 'reach' ORDER BY table, position) GROUP BY table").result_rows
answers = []
for sql in queries:
    try:
        answers.append({"rows": len(query_read_only(analyst, sql, settings=None)[1])})
    except Exception as error:
        answers.append({"error": str(error).splitlines()[0][:500]})
print(json.dumps({"columns": {t: list(c) for t, c in columns}, "answers": answers}))
"""


def run_queries(folder: Path, queries: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_QUERIES, str(folder)],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_examples_and_the_dashboard_run_on_the_schema(tmp_path: Path) -> None:
    examples = example_queries()
    assert len(examples) == 15
    queries = [*examples, *dashboard_queries(["reengage-once"])]
    answer = run_queries(tmp_path / "clickhouse", queries)
    failed = [
        (sql.strip().splitlines()[0], result["error"])
        for sql, result in zip(queries, answer["answers"], strict=True)
        if "error" in result
    ]
    assert failed == []
    documented = documented_columns()
    tables = {name: columns for name, columns in answer["columns"].items() if name not in INTERNAL}
    assert set(documented) == set(tables)
    for name, columns in tables.items():
        assert sorted(documented[name]) == sorted(columns), name


def test_the_dashboard_uses_the_clickhouse_plugin_and_the_rollups() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    sources = {panel["datasource"]["type"] for panel in dashboard["panels"]}
    assert sources == {"grafana-clickhouse-datasource"}
    sql = " ".join(t["rawSql"] for p in dashboard["panels"] for t in p["targets"])
    for wanted in ("journey_daily_stats", "segment_daily_sizes", "send_commands", "dead_letters"):
        assert wanted in sql
    # Only the small tables are read with FINAL: the journey figures come from rollups.
    assert "journey_activity" not in sql
    provisioned = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "clickhouse.yml"
    text = provisioned.read_text(encoding="utf-8")
    assert "type: grafana-clickhouse-datasource" in text
    assert f"uid: {dashboard['panels'][0]['datasource']['uid']}" in text
