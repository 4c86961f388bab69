"""Back-test agrees with reality: the demo's live system (broker, worker, ClickHouse,
simulated clock and channels) plays the seed campaign over two weeks; then the same
journey definitions are back-tested over the same period from the archive it left.
Every send command has the same id, and every step the same statistics.

(Where they may legitimately differ, feedback that reached the live system after its
own instant, is tested in tests/unit/test_backtest.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.demo import run_demo
from streams.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]

_COMPARE = """
import json, sys
from datetime import timedelta
from cli.demo import START
from cli.demo_check import LAUNCHED
from delivery.backtest import simulated
from delivery.simulator import profiles
from engine.backtest import Backtest
from files.journeys import load as load_journeys
from files.segments import load as load_segments
from projections.archive import replay
from projections.journey_stats import STEP_COUNTS
import chdb, clickhouse_connect
from streams.settings import Settings

days = int(sys.argv[2])
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1] + "/clickhouse")
settings = Settings()
segments = load_segments(__import__("pathlib").Path("examples/seed-segments.yaml"))
journeys = [j for j in load_journeys(__import__("pathlib").Path("examples/seed-journeys.yaml"))
            if j.id in LAUNCHED]
test = Backtest(segments, journeys, START, START + timedelta(days=days), keep=True,
                simulate=simulated(profiles(settings.simulator), settings.simulator_seed))
def table_rows():
    return {table: int(client.query(f"SELECT count() FROM reach.{table}").result_rows[0][0])
            for table in ("events", "tag_updates", "feedback", "send_commands",
                          "journey_activity", "segment_memberships")}
before = table_rows()
(report,) = replay(client, "reach", [test])
untouched = table_rows() == before
live_commands = sorted(r[0] for r in client.query(
    "SELECT command_id FROM reach.send_commands FINAL").result_rows)
columns = ", ".join(STEP_COUNTS)
live_steps = {f"{r[0]}/{r[1]}": dict(zip(STEP_COUNTS, map(int, r[2:]))) for r in client.query(
    f"SELECT journey_id, step, {columns} FROM reach.journey_step_stats").result_rows}
tested_steps = {
    f"{journey_id}/{step}": {name: counts[name] for name in STEP_COUNTS}
    for journey_id, found in report.journeys.items()
    for step, counts in found.steps.items()
}
print(json.dumps({
    "live_commands": live_commands,
    "tested_commands": sorted(c["command_id"] for c in report.commands),
    "live_steps": live_steps,
    "tested_steps": tested_steps,
    "feedback": dict(report.feedback),
    "untouched": untouched,
}))
"""


def _compare(folder: Path, days: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _COMPARE, str(folder), str(days)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_a_backtest_of_the_demo_period_agrees_with_what_the_live_system_did(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    days = 14
    assert run_demo(
        Settings(), users=150, days=days, report_path=tmp_path / "report.html", keep=folder
    )
    found = _compare(folder, days)
    assert len(found["live_commands"]) > 0
    # Both branches of the campaign's split happened: opens, and second emails.
    steps = found["live_steps"]
    assert sum(s["opened"] for k, s in steps.items() if k.endswith("/first-email")) > 0
    assert sum(s["sent"] for k, s in steps.items() if k.endswith("/second-email")) > 0
    assert found["tested_commands"] == found["live_commands"]
    assert found["tested_steps"] == found["live_steps"]
    assert found["untouched"]  # nothing written to the live tables
    # Every command existed live: its archived feedback was used, none simulated.
    assert found["feedback"] == {"archive": len(found["live_commands"])}
