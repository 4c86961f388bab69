"""Analysts' clients never share the projection writer's ClickHouse session: a write
refused on one (even one that got past the allow-list) leaves the writer writing.
In a child process, as chDB hosts one engine per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_RUN = """
import sys
from projections.clickhouse import QueryLimits, connect, connect_analyst, query_read_only
from projections.query_guard import QueryRefused

folder = sys.argv[1]
writer = connect("chdb://" + folder, "reach")
analyst = connect_analyst("chdb://" + folder, "reach", QueryLimits(5, 10**9, 1000, 10**8))
insert = "INSERT INTO dead_letters (reason) VALUES ('x')"
try:
    query_read_only(analyst, insert, settings=None)
except QueryRefused as refused:
    print("refused:", refused)
try:  # past the allow-list, as the old code ran it: readonly=1 on the analysts' session
    analyst.query(insert, settings={"readonly": 1})
except Exception as error:
    print("engine refused:", str(error).splitlines()[0][:60])
writer.command(insert)
print("writer rows:", writer.command("SELECT count() FROM dead_letters"))
print("analyst readonly:", analyst.command("SELECT getSetting('readonly')"))
print("writer readonly:", writer.command("SELECT getSetting('readonly')"))
"""


def test_a_refused_write_leaves_the_writer_writing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(tmp_path / "clickhouse")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: only a SELECT is allowed, not INSERT"), lines
    assert lines[1].startswith("engine refused:"), lines
    assert "writer rows: 1" in lines
    assert "analyst readonly: 1" in lines
    assert "writer readonly: 0" in lines
