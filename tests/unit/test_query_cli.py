"""``reach query`` for analysts: SQL from a file or stdin, a leading ``--`` comment,
server-side parameters that still pass the query door, CSV/TSV/JSON with plain numbers,
whole values when piped. Each call is a child process (chDB hosts one engine per
process) on a data directory of its own."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

_CREATE = """
import sys
from projections.clickhouse import connect
connect("chdb://" + sys.argv[1], "reach")
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("query-cli") / "data"
    done = subprocess.run(
        [sys.executable, "-c", _CREATE, str(folder / "clickhouse")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def reach(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("REACH_")}
    env["REACH_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "40"  # a narrow terminal, were stdout one: it is a pipe here
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "query", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_a_query_that_starts_with_a_comment_is_the_query(data_dir: Path) -> None:
    done = reach(data_dir, "--format", "csv", "-- how many\nSELECT 41 + 1 AS answer")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["answer", "42"]
    after_dashes = reach(data_dir, "--format", "csv", "--", "-- c\nSELECT 1 AS one")
    assert after_dashes.stdout.splitlines() == ["one", "1"], after_dashes.stderr


def test_the_query_from_a_file_or_stdin_with_parameters(data_dir: Path, tmp_path: Path) -> None:
    sql = "-- a saved query\nSELECT {n:UInt32} * 2 AS twice, {who:String} AS who;\n"
    (tmp_path / "q.sql").write_text(sql)
    from_file = reach(
        data_dir,
        "-f",
        str(tmp_path / "q.sql"),
        "--param",
        "n=21",
        "--param",
        "who=o'brien",
        "--format",
        "json",
    )
    assert from_file.returncode == 0, from_file.stderr
    assert orjson.loads(from_file.stdout) == {"twice": 42, "who": "o'brien"}
    from_stdin = reach(data_dir, "-", "--param", "n=1", "--param", "who=x", "--json", stdin=sql)
    assert orjson.loads(from_stdin.stdout) == {"twice": 2, "who": "x"}, from_stdin.stderr
    dash_file = reach(data_dir, "-f", "-", "--param", "n=2", "--param", "who=", "--json", stdin=sql)
    assert orjson.loads(dash_file.stdout) == {"twice": 4, "who": ""}, dash_file.stderr


def test_parameters_do_not_get_past_the_query_door(data_dir: Path) -> None:
    named = reach(data_dir, "SELECT count() FROM {t:Identifier}", "--param", "t=events")
    assert named.returncode != 0
    assert "(type Identifier)" in named.stderr
    smuggled = reach(data_dir, "SELECT {s:String}", "--param", "s=1; DROP TABLE events")
    assert smuggled.returncode == 0, smuggled.stderr  # a value, never SQL
    assert "DROP TABLE events" in smuggled.stdout
    bad = reach(data_dir, "SELECT 1", "--param", "no-equals-sign")
    assert bad.returncode != 0
    assert "NAME=VALUE" in bad.stderr


def test_numbers_are_plain_in_every_format(data_dir: Path) -> None:
    sql = (
        "SELECT toDecimal64(11.693, 3) AS d, quantiles(0.5)(toDecimal64(number, 3)) AS q,"
        " toDecimal32(2, 2) AS whole FROM numbers(3)"
    )
    as_json = reach(data_dir, sql, "--format", "json")
    assert orjson.loads(as_json.stdout) == {"d": 11.693, "q": [1], "whole": 2}, as_json.stderr
    table = reach(data_dir, sql)
    assert "11.693" in table.stdout
    assert "Decimal" not in table.stdout
    tsv = reach(data_dir, "SELECT 'a\tb' AS x, 1.5 AS y", "--format", "tsv")
    assert tsv.stdout.splitlines() == ["x\ty", "a\\tb\t1.5"], tsv.stderr
    rows = list(csv.reader(io.StringIO(reach(data_dir, sql, "--format", "csv").stdout)))
    assert rows == [["d", "q", "whole"], ["11.693", "1.000", "2.00"]]


def test_a_piped_table_keeps_every_column_whole(data_dir: Path) -> None:
    wide = "SELECT " + ", ".join(f"'value-{i}-{'x' * 20}' AS column_{i}" for i in range(6))
    done = reach(data_dir, wide)
    assert done.returncode == 0, done.stderr
    for i in range(6):
        assert f"value-{i}-{'x' * 20}" in done.stdout
        assert f"column_{i}" in done.stdout


def test_no_query_and_two_queries_are_usage_errors(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("SELECT 1")
    assert "no query" in reach(data_dir).stderr
    assert "not both" in reach(data_dir, "SELECT 2", "-f", str(tmp_path / "q.sql")).stderr
    clash = reach(data_dir, "SELECT 1", "--format", "tsv", "--json")
    assert clash.returncode != 0
    assert "exclude each other" in clash.stderr
