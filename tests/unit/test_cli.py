"""The ``reach`` command in-process (click's CliRunner): no silent success, whole ids in
tables, machine-readable output, and what it says when nothing is where it looks."""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from cli import common as cli_common
from cli import main as cli
from cli import query
from client import system as client
from streams import runfile
from streams.settings import Settings

LONG_ID = "segment-with-a-rather-long-identifier-that-tables-used-to-cut-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No REACH_* from the outside; the data directory is this test's own."""
    for name in list(os.environ):
        if name.upper().startswith("REACH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REACH_DATA_DIR", str(tmp_path / "data"))


def invoke(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=stdin, catch_exceptions=False)


def running(tmp_path: Path, clock: str = "wall", role: str = "all") -> runfile.RunInfo:
    """A run file naming this process: the CLI takes it for a running system."""
    info = runfile.RunInfo(
        os.getpid(), "127.0.0.1:19092", "http://127.0.0.1:18642", role=role, clock=clock
    )
    runfile.write(tmp_path / "data", info)
    return info


# -- reach send --------------------------------------------------------------------

GOOD = b'{"user_id": "u1", "name": "AppOpen", "timestamp": "2026-11-02T10:00:00Z"}'
MISSING_TIMESTAMP = b'{"user_id": "u2", "name": "AppOpen"}'
NOT_JSON = b"this is not json"


@pytest.fixture
def produced(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]]:
    """What `reach send` hands to the producer, one list of lines per call."""
    calls: list[list[bytes]] = []

    async def fake_send(settings: Settings, topic: str, lines: Any) -> tuple[int, int]:
        calls.append([bytes(line).strip() for line in lines])
        return len(calls[-1]), 1

    monkeypatch.setattr(client, "send_ndjson", fake_send)
    return calls


def ndjson(tmp_path: Path, *lines: bytes) -> str:
    path = tmp_path / "input.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_send_refuses_invalid_lines_and_produces_nothing(
    tmp_path: Path, produced: list[list[bytes]]
) -> None:
    result = invoke("send", "events", ndjson(tmp_path, GOOD, MISSING_TIMESTAMP, NOT_JSON))
    assert result.exit_code != 0
    assert produced == []
    assert "line 2: missing_field" in result.output
    assert "timestamp" in result.output
    assert "line 3: not_json" in result.output
    assert not any(line.startswith("line 1:") for line in result.output.splitlines())
    assert "2 of 3 lines are invalid" in result.output


def test_send_counts_lines_from_one_with_blank_lines_skipped(
    tmp_path: Path, produced: list[list[bytes]]
) -> None:
    result = invoke("send", "events", ndjson(tmp_path, GOOD, b"", NOT_JSON))
    assert result.exit_code != 0
    assert "line 3: not_json" in result.output


def test_send_valid_lines(tmp_path: Path, produced: list[list[bytes]]) -> None:
    result = invoke("send", "events", ndjson(tmp_path, GOOD, GOOD.replace(b"u1", b"u3")))
    assert result.exit_code == 0, result.output
    assert [len(lines) for lines in produced] == [2]
    assert "sent 2 lines" in result.output


def test_send_validates_with_the_kind_of_the_topic(
    tmp_path: Path, produced: list[list[bytes]]
) -> None:
    # A valid event is not a valid tag update.
    result = invoke("send", "tags", ndjson(tmp_path, GOOD))
    assert result.exit_code != 0
    assert produced == []
    assert "line 1:" in result.output


def test_send_devices_validates_device_updates(tmp_path: Path, produced: list[list[bytes]]) -> None:
    good = (
        b'{"user_id": "u1", "device": {"kind": "email", "address": "a@example.com"},'
        b' "timestamp": "2026-11-02T10:00:00Z"}'
    )
    bad = b'{"user_id": "u1", "device": {"kind": "phone", "number": "12"}, "timestamp": 1}'
    result = invoke("send", "devices", ndjson(tmp_path, good, bad))
    assert result.exit_code != 0
    assert produced == []
    assert "line 2: invalid_value" in result.output
    result = invoke("send", "devices", ndjson(tmp_path, good))
    assert result.exit_code == 0, result.output
    assert produced == [[good]]
    assert "reach.devices" in result.output


def test_send_without_validation_produces_everything(
    tmp_path: Path, produced: list[list[bytes]]
) -> None:
    result = invoke("send", "events", "--no-validate", ndjson(tmp_path, GOOD, NOT_JSON))
    assert result.exit_code == 0, result.output
    assert produced == [[GOOD, NOT_JSON]]


def test_send_partial_produces_the_valid_lines_and_lists_the_rest(
    tmp_path: Path, produced: list[list[bytes]]
) -> None:
    result = invoke(
        "send", "events", "--partial", ndjson(tmp_path, GOOD, MISSING_TIMESTAMP, NOT_JSON)
    )
    assert produced == [[GOOD]]
    assert "line 2: missing_field" in result.output
    assert "line 3: not_json" in result.output
    assert "sent 1 lines" in result.output
    assert "skipped 2 invalid lines" in result.output


def test_send_lists_a_bounded_number_of_invalid_lines(
    tmp_path: Path, produced: list[list[bytes]]
) -> None:
    result = invoke("send", "events", ndjson(tmp_path, *[NOT_JSON] * 500))
    assert result.exit_code != 0
    assert "line 500" not in result.output
    assert "500 of 500 lines are invalid" in result.output
    assert len(result.output.splitlines()) < 40


def test_send_reads_stdin(produced: list[list[bytes]]) -> None:
    result = invoke("send", "events", "-", stdin=GOOD + b"\n" + NOT_JSON + b"\n")
    assert result.exit_code != 0
    assert "line 2: not_json" in result.output
    assert produced == []


# -- reach clock ----------------------------------------------------------------------


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    sent: list[datetime] = []

    async def fake_tick(
        settings: Settings, topic: str, now: datetime, wait: bool = False, timeout: float = 0
    ) -> int:
        sent.append(now)
        return 4

    monkeypatch.setattr(client, "send_tick", fake_tick)
    return sent


def test_clock_tick_refuses_on_a_wall_clock_system(tmp_path: Path, ticks: list[datetime]) -> None:
    running(tmp_path, clock="wall")
    result = invoke("clock", "tick", "2026-11-08T10:00:00Z")
    assert result.exit_code != 0
    assert ticks == []
    error_lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(error_lines) == 1
    assert "wall clock" in error_lines[0]
    assert "REACH_CLOCK=simulated" in error_lines[0]


def test_clock_tick_on_a_simulated_system(tmp_path: Path, ticks: list[datetime]) -> None:
    running(tmp_path, clock="simulated")
    result = invoke("clock", "tick", "2026-11-08T10:00:00Z")
    assert result.exit_code == 0, result.output
    assert len(ticks) == 1
    assert "on 4 partitions" in result.output


def test_clock_tick_asks_the_system_when_its_run_file_does_not_say(
    tmp_path: Path, ticks: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run file written before it said the clock: the status endpoint does.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / runfile.NAME).write_bytes(
        orjson.dumps({"pid": os.getpid(), "broker": "b:1", "http": "http://h:1"})
    )
    monkeypatch.setattr(cli_common, "call", lambda *args, **kwargs: {"clock": {"mode": "wall"}})
    result = invoke("clock", "tick", "2026-11-08T10:00:00Z")
    assert result.exit_code != 0
    assert ticks == []


def test_clock_tick_with_a_configured_broker_follows_reach_clock(
    ticks: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No system runs from this data directory: the CLI's own REACH_CLOCK is all it knows.
    monkeypatch.setenv("REACH_BROKER_URL", "kafka://127.0.0.1:9")
    assert invoke("clock", "tick", "2026-11-08T10:00:00Z").exit_code != 0
    monkeypatch.setenv("REACH_CLOCK", "simulated")
    assert invoke("clock", "tick", "2026-11-08T10:00:00Z").exit_code == 0
    assert len(ticks) == 1


def test_clock_advance_refuses_on_a_wall_clock_system(
    tmp_path: Path, ticks: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    running(tmp_path, clock="wall")
    status = {"clock": {"mode": "wall", "now": "2026-11-08T10:00:00+00:00"}}
    monkeypatch.setattr(cli_common, "call", lambda *args, **kwargs: status)
    result = invoke("clock", "advance", "1d")
    assert result.exit_code != 0
    assert ticks == []


# -- tables ---------------------------------------------------------------------------


def fake_api(monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any]) -> None:
    def call(api_key: str | None, method: str, path: str, body: Any = None) -> Any:
        return answers[path]

    monkeypatch.setattr(cli_common, "call", call)


SEGMENTS = {
    "segments": [
        {
            "id": LONG_ID,
            "version": 3,
            "name": "Lapsed users in Portugal, who have not opened the app for a week",
            "expression": 'T("Country", eq, "PT") * E("ApplicationOpen", count = 0, last 7 days)',
        },
        {"id": "b", "version": 1, "name": "B, with a comma", "expression": 'S("x")'},
    ]
}


def test_tables_keep_whole_values_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api(monkeypatch, {"/v1/segments": SEGMENTS})
    result = invoke("segments", "list")
    assert result.exit_code == 0, result.output
    assert LONG_ID in result.output
    assert SEGMENTS["segments"][0]["expression"] in result.output  # type: ignore[index]
    assert "…" not in result.output


def test_json_lines_with_the_table_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api(monkeypatch, {"/v1/segments": SEGMENTS})
    result = invoke("segments", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.output.splitlines()]
    assert rows == SEGMENTS["segments"]


def test_csv_with_a_header(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api(monkeypatch, {"/v1/segments": SEGMENTS})
    result = invoke("segments", "list", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == ["id", "version", "name", "expression"]
    assert rows[1][0] == LONG_ID
    assert rows[2] == ["b", "1", "B, with a comma", 'S("x")']


def test_json_and_csv_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api(monkeypatch, {"/v1/segments": SEGMENTS})
    assert invoke("segments", "list", "--json", "--csv").exit_code != 0


PRESETS = {
    "presets": [
        {
            "id": "welcome-email-with-a-long-identifier-0123456789",
            "channel": "email",
            "version": 2,
            "name": "Welcome",
            "default_language": "en",
            "languages": ["pt", "fr"],
        }
    ]
}
JOURNEYS = {
    "journeys": [
        {
            "id": "lapsed-users-weekly-follow-up-journey-0123456789",
            "status": "launched",
            "version": 4,
            "launch": 2,
            "name": "Lapsed users",
            "entries": ["audience weekly", "api"],
        }
    ]
}
STATS = {
    "journey_id": "j1",
    "status": "launched",
    "journey": {
        "entries": 10,
        "unique_users": 9,
        "inside_now": 3,
        "goals": 1,
        "sent": 8,
        "opened": 4,
        "clicked": 2,
        "ctr": 0.25,
    },
    "steps": [{"step": "email-1", "entered": 10, "sent": 8}],
}


@pytest.mark.parametrize(
    ("args", "answers", "first"),
    [
        (["presets", "list"], {"/v1/presets": PRESETS}, PRESETS["presets"][0]["id"]),
        (["journeys", "list"], {"/v1/journeys": JOURNEYS}, JOURNEYS["journeys"][0]["id"]),
    ],
)
def test_every_list_has_json_and_csv(
    monkeypatch: pytest.MonkeyPatch, args: list[str], answers: dict[str, Any], first: str
) -> None:
    fake_api(monkeypatch, answers)
    table = invoke(*args)
    assert table.exit_code == 0, table.output
    assert first in table.output
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert orjson.loads(as_json.output.splitlines()[0])["id"] == first
    as_csv = invoke(*args, "--csv")
    assert as_csv.exit_code == 0, as_csv.output
    assert list(csv.reader(io.StringIO(as_csv.output)))[1][0] == first


def test_journey_stats_as_json_and_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api(monkeypatch, {"/v1/journeys/j1/stats": STATS})
    as_json = invoke("journeys", "stats", "j1", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert orjson.loads(as_json.output) == STATS
    as_csv = invoke("journeys", "stats", "j1", "--csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert rows[0]["step"] == "email-1"
    assert rows[0]["entered"] == "10"
    assert rows[0]["dropped"] == "0"  # every step count, 0 when the answer has none


# -- reach status ---------------------------------------------------------------------


def test_status_prints_where_everything_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = running(tmp_path, clock="simulated", role="all")
    status = {
        "broker": info.broker,
        "partitions": 4,
        "clock": {"mode": "simulated", "now": "2026-11-08T10:00:00+00:00"},
        "counters": {"events": 12},
    }
    fake_api(monkeypatch, {"/v1/status": status})
    result = invoke("status")
    assert result.exit_code == 0, result.output
    for expected in (
        info.broker,
        info.http,
        str((tmp_path / "data").resolve()),
        "all",
        "simulated",
        "2026-11-08T10:00:00+00:00",
        str(info.pid),
        "partitions",
    ):
        assert expected in result.output
    as_json = orjson.loads(invoke("status", "--json").output)
    assert as_json["http"] == info.http
    assert as_json["data_dir"] == str((tmp_path / "data").resolve())
    assert as_json["role"] == "all"
    assert as_json["clock"]["mode"] == "simulated"
    assert as_json["counters"] == {"events": 12}


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    result = invoke("status")
    assert result.exit_code != 0
    assert f"no system is running from {(tmp_path / 'data').resolve()}" in result.output


# -- data directory -------------------------------------------------------------------


def test_query_without_data_creates_nothing(tmp_path: Path) -> None:
    result = invoke("query", "SELECT 1")
    assert result.exit_code != 0
    assert "no data here: is REACH_DATA_DIR right?" in result.output
    assert str((tmp_path / "data").resolve()) in result.output
    assert not (tmp_path / "data").exists()


def test_no_data_check_leaves_a_clickhouse_server_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_CLICKHOUSE_DSN", "http://user:password@clickhouse:8123")
    query.require_local_data(Settings())  # a server has its data elsewhere: no error


def test_a_narrow_terminal_folds_long_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    from cli import output as cli_output

    monkeypatch.setattr(
        cli_output, "Console", lambda **kw: Console(force_terminal=True, width=50, **kw)
    )
    cli_output.print_table(["id", "name"], [[LONG_ID, "a name"]])
    printed = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    cells = [line.split("│")[1].strip() for line in printed.splitlines() if "│" in line]
    assert "".join(cells) == LONG_ID
    assert "…" not in printed
