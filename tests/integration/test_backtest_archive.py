"""The back-test's archive reader on a real ClickHouse engine (chDB, in a process of its
own: one chDB store per process): inputs written as the projections write them come
back user by user, in time order, deduplicated, and a back-test over them equals one
over the inputs themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]

_RUN = """
import json, sys
from datetime import UTC, datetime
from engine.backtest import Backtest, split_by_user
from projections import rows
from projections.archive import Selection, count_inputs, store_inputs, timelines
from projections.clickhouse import connect
from tests.unit.test_backtest import END, JOURNEYS, SEGMENTS, START, archive

client = connect("chdb://" + sys.argv[1], "reach")
items = archive()
now = datetime(2026, 12, 30, tzinfo=UTC)
store_inputs(client, items, now)
store_inputs(client, items[:7], now)  # a replay: the same rows again, in other parts
change = {"segment_id": "inactive-7d", "user_id": "warm", "change": "entered",
          "at": "2026-12-13T12:00:00Z", "version": 1, "cause": "timer:1"}
client.insert("segment_memberships", [rows.membership_row(change, rows.Origin(0, 1))],
              column_names=list(rows.SEGMENT_MEMBERSHIPS.columns))
read = list(timelines(client, "reach", END, block_rows=5))
direct = split_by_user([item for item in items if item.timestamp < END])
def run(timelines):
    test = Backtest(SEGMENTS, [JOURNEYS["reengage-once"]], START, END, keep=True)
    return [c["command_id"] for c in test.run(timelines).commands]
first = list(timelines(client, "reach", END, Selection(users=2)))
segment = list(timelines(client, "reach", END, Selection(segment="inactive-7d")))
print(json.dumps({
    "same": read == direct,
    "users": [t.user for t in read],
    "counted": count_inputs(client, "reach", END),
    "inputs": sum(len(t.inputs) for t in read),
    "commands_equal": run(read) == run(direct),
    "commands": len(run(read)),
    "first": [t.user for t in first],
    "first_counted": count_inputs(client, "reach", END, Selection(users=2)),
    "first_inputs": sum(len(t.inputs) for t in first),
    "segment": [t.user for t in segment],
    "early": sum(len(t.inputs) for t in timelines(client, "reach", START)),
    "early_direct": sum(1 for item in items if item.timestamp < START),
}))
"""


def _run(folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_archive_reads_back_user_by_user_in_time_order(tmp_path: Path) -> None:
    found = _run(tmp_path / "store")
    assert found["same"], found
    assert found["users"] == ["active", "lapsed-ignore", "lapsed-open", "warm"]
    assert found["counted"] == found["inputs"]
    assert found["commands_equal"]
    assert found["commands"] == 4
    assert found["first"] == ["active", "lapsed-ignore"]
    assert found["first_counted"] == found["first_inputs"] > 0
    assert found["segment"] == ["warm"]
    assert found["early"] == found["early_direct"]


_ARCHIVE = """
import sys
from datetime import UTC, datetime
from projections.archive import store_inputs
from projections.clickhouse import connect
from tests.unit.test_backtest import archive
client = connect("chdb://" + sys.argv[1], "reach")
store_inputs(client, archive(), datetime(2026, 12, 30, tzinfo=UTC))
"""


def test_reach_backtest_reports_from_the_archive_as_json_and_html(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-c", _ARCHIVE, str(data / "clickhouse")],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    seed = ROOT / "examples"
    report = tmp_path / "backtest.html"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "reach"),
            "backtest",
            str(seed / "seed-journeys.yaml"),
            "--journey",
            "reengage-once",
            "--segments",
            str(seed / "seed-segments.yaml"),
            "--from",
            "2026-12-07",
            "--to",
            "2026-12-21",
            "--compare",
            str(seed / "seed-journeys.yaml"),
            "--format",
            "json",
            "--html",
            str(report),
        ],
        cwd=ROOT,
        env={**os.environ, "REACH_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    first = found["backtest"]["journeys"]["reengage-once"]
    assert first["entries"] == 2
    assert first["steps"]["first-email"]["sent"] == 2
    assert found["backtest"]["users"] == 4
    assert found["compare"]["journeys"]["reengage-once"]["entries"] == 2
    # The same definition compared is its next version: new command ids, simulated
    # feedback; the same entries, sends on both sides of the difference.
    assert found["difference"]["reengage-once"]["entries"] == 0
    assert found["difference"]["reengage-once"]["sent"] == (
        found["compare"]["journeys"]["reengage-once"]["sent"] - first["sent"]
    )
    page = report.read_text()
    assert "reengage-once" in page
    assert "<svg" in page


def test_the_benchmark_runs_at_a_small_size() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from benchmarks.backtest import run; run(3000, 300, live=False)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "back-test of reengage-once" in done.stdout
    assert "inputs/s" in done.stdout
