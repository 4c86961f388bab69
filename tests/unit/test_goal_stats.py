"""Goals after exit and the global holdout in the statistics, on a real ClickHouse
engine: the journey engine's rows (from the scenarios of test_journey_goals) projected
as the worker projects them, read through the step statistics and the daily rollup. A
goal after exit is a conversion of the step it is attributed to; the holdout group's
entries and goals are counted apart, never as the journey's."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.journeys.holdout import Holdout
from tests.unit.journey_sim import Sim
from tests.unit.test_analytics_docs import example_queries

ROOT = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)

_RUN = """
import json, sys
from types import SimpleNamespace
from projections import rows
from projections.clickhouse import connect
from projections.journeys import item_rows
from schemas.commands import JourneyActivity

folder, payload = sys.argv[1], json.loads(sys.stdin.read())
client = connect("chdb://" + folder, "reach")
to_rows = item_rows("activity", JourneyActivity, rows.journey_activity_row)
for offset, value in enumerate(payload["records"]):
    found = to_rows(SimpleNamespace(value=value.encode()), rows.Origin(0, offset))
    table = rows.JOURNEY_ACTIVITY
    client.insert(table.name, found, column_names=list(table.columns))
answers = [client.query(sql).named_results() for sql in payload["queries"]]
print(json.dumps([list(answer) for answer in answers], default=str))
"""

JOURNEY = {
    "id": "j",
    "name": "J",
    "entries": [{"kind": "api"}],
    "start": "email",
    "nodes": [
        {"id": "email", "type": "message", "channel": "email", "preset": "p",
         "next": {"next": "push"}},
        {"id": "push", "type": "message", "channel": "push", "preset": "q",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
    "settings": {"goals": [{"name": "purchased", "match": {"event": "Purchase"},
                            "after_exit": {"amount": 3, "unit": "days"}}]},
}  # fmt: skip


(LIFT,) = [sql for sql in example_queries() if "holdout_rate" in sql]
"""The documented lift query."""


def engine_rows() -> list[dict[str, Any]]:
    """Three treated users and a held-out one; two treated users and the held-out one
    purchase after exit (one of them opened the email first), one of them twice."""
    holdout = Holdout(25, "s")
    users = [f"u{n}" for n in range(40)]
    held = next(user for user in users if holdout.holds(user))
    treated = [user for user in users if not holdout.holds(user)][:3]
    sim = Sim(holdout=holdout)
    sim.define(JOURNEY)
    sim.act("j", "launch")
    for user in [*treated, held]:
        sim.enter("j", user)
    email = next(c for c in sim.commands if c["user_id"] == treated[0] and c["step"] == "email")
    sim.feedback(email, "opened")
    sim.advance(DAY)
    for user in (treated[0], treated[1], treated[1], held):
        sim.event(user, "Purchase")
    return list(sim.activity)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    items = orjson.loads(orjson.dumps(engine_rows(), option=orjson.OPT_UTC_Z))
    record = orjson.dumps(items).decode()
    payload = {
        "records": [record, record],  # re-sent whole: counted once
        "queries": [
            "SELECT step, goal, entered, sent FROM journey_step_stats "
            "WHERE journey_id = 'j' ORDER BY step",
            "SELECT step, sum(converted) AS converted, sum(held_out) AS held_out, "
            "sum(holdout_converted) AS holdout_converted, sum(entries) AS entries "
            "FROM journey_daily_stats WHERE journey_id = 'j' GROUP BY step ORDER BY step",
            "SELECT goals, entries, inside_now FROM journey_stats WHERE journey_id = 'j'",
            LIFT,
        ],
    }
    folder = tmp_path_factory.mktemp("goal-stats") / "clickhouse"
    completed = subprocess.run(
        [sys.executable, "-c", _RUN, str(folder)],
        input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: list[list[dict[str, Any]]] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_goals_after_exit_are_conversions_of_the_attributed_step(
    answers: list[list[dict[str, Any]]],
) -> None:
    steps = {row["step"]: row for row in answers[0]}
    assert steps["email"]["goal"] == 1  # opened before the purchase
    assert steps["push"]["goal"] == 1  # the last sent step: nothing opened
    assert steps["done"]["goal"] == 0
    daily = {row["step"]: row for row in answers[1]}
    assert (daily["email"]["converted"], daily["push"]["converted"]) == (1, 1)


def test_the_holdout_is_counted_apart(answers: list[list[dict[str, Any]]]) -> None:
    daily = {row["step"]: row for row in answers[1]}
    assert daily["email"]["held_out"] == 1
    assert daily["email"]["holdout_converted"] == 1
    assert daily["email"]["entries"] == 3  # the treated users only
    assert answers[2] == [{"goals": 2, "entries": 3, "inside_now": 0}]


def test_the_documented_lift_query_compares_both_groups(
    answers: list[list[dict[str, Any]]],
) -> None:
    (row,) = answers[3]
    assert (row["journey_id"], row["treated"], row["holdout"]) == ("j", 3, 1)
    assert row["treated_rate"] == pytest.approx(0.6667)  # two of three purchased
    assert row["holdout_rate"] == pytest.approx(1.0)
    assert row["lift"] == pytest.approx(-0.3333)
