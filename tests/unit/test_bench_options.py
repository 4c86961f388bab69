"""``reach bench segments --workers N``: N engine processes need role segments (the
default then) and no more workers than partitions; the rest goes to the benchmark."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import benchmarks.segments
from cli import main as cli


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Any, ...]]:
    """No REACH_* from the outside; the benchmark's run recorded, not run."""
    for name in list(os.environ):
        if name.upper().startswith("REACH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REACH_DATA_DIR", str(tmp_path / "data"))
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(benchmarks.segments, "run", lambda *args: calls.append(args))
    return calls


def bench(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["bench", "segments", *args], catch_exceptions=False)


def test_several_workers_run_in_role_segments(runs: list[tuple[Any, ...]]) -> None:
    assert bench("--users", "10", "--events", "20", "--workers", "2").exit_code == 0
    assert runs == [(10, 20, 0, 0.0, "segments", ("durable", "memory"), 2)]


def test_one_worker_keeps_the_role_asked(runs: list[tuple[Any, ...]]) -> None:
    assert bench("--users", "10", "--events", "20").exit_code == 0
    assert runs == [(10, 20, 0, 0.0, "all", ("durable", "memory"), 1)]


def test_several_workers_in_role_all_are_refused(runs: list[tuple[Any, ...]]) -> None:
    result = bench("--workers", "2", "--role", "all")
    assert result.exit_code == 2
    assert "--workers 2 needs --role segments" in result.output
    assert runs == []


def test_more_workers_than_partitions_are_refused(
    runs: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACH_PARTITIONS", "2")
    result = bench("--workers", "3")
    assert result.exit_code == 2
    assert "--workers 3 is more than the 2 partitions" in result.output
    assert runs == []
