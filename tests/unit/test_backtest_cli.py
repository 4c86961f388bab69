"""``reach backtest``'s options, refused before any archive is opened."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.backtest import parse_tick
from cli.main import main

SEED = ["examples/seed-journeys.yaml", "--segments", "examples/seed-segments.yaml"]
PERIOD = ["--from", "2026-12-07", "--to", "2026-12-21"]


def invoke(*args: str, tmp_path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["backtest", *args], env={"REACH_DATA_DIR": str(tmp_path)})
    return result.exit_code, result.output


def test_users_and_segment_exclude_each_other(tmp_path: Path) -> None:
    code, output = invoke(
        *SEED, *PERIOD, "--users", "3", "--segment", "inactive-7d", tmp_path=tmp_path
    )
    assert code == 2
    assert "exclude each other" in output


def test_the_period_must_move_forward(tmp_path: Path) -> None:
    code, output = invoke(*SEED, "--from", "2026-12-21", "--to", "2026-12-07", tmp_path=tmp_path)
    assert code == 2
    assert "--to must be after --from" in output


def test_a_journey_missing_from_the_file_is_named(tmp_path: Path) -> None:
    code, output = invoke(*SEED, *PERIOD, "--journey", "nope", tmp_path=tmp_path)
    assert code == 2
    assert "no journey nope" in output


def test_an_unknown_segment_is_refused(tmp_path: Path) -> None:
    code, output = invoke(*SEED, *PERIOD, "--segment", "nope", tmp_path=tmp_path)
    assert code == 2
    assert "no segment 'nope'" in output


def test_a_start_off_the_tick_is_refused(tmp_path: Path) -> None:
    code, output = invoke(
        *SEED, "--from", "2026-12-07T00:30", "--to", "2026-12-21", tmp_path=tmp_path
    )
    assert code == 2
    assert "on a tick" in output


def test_without_data_the_back_test_says_so(tmp_path: Path) -> None:
    code, output = invoke(*SEED, *PERIOD, tmp_path=tmp_path)
    assert code == 1
    assert "no data here" in output


def test_a_journey_id_needs_a_running_system(tmp_path: Path) -> None:
    code, output = invoke(
        "reengage-once", "--segments", "examples/seed-segments.yaml", *PERIOD, tmp_path=tmp_path
    )
    assert code == 2
    assert "no system is running" in output


def test_ticks_are_durations() -> None:
    assert parse_tick("15m") == timedelta(minutes=15)
    assert parse_tick("1h") == timedelta(hours=1)
    with pytest.raises(click.BadParameter):
        parse_tick("0h")
    with pytest.raises(click.BadParameter):
        parse_tick("soon")


def test_a_compared_journey_at_the_same_version_is_the_next_version() -> None:
    from cli.backtest import next_versions
    from files.journeys import load

    journeys = {j.id: j for j in load(Path("examples/seed-journeys.yaml"))}
    once, weekly = journeys["reengage-once"], journeys["reengage-weekly"]
    found = next_versions([once], [once, weekly])
    assert [(j.id, j.version) for j in found] == [("reengage-once", 2), ("reengage-weekly", 0)]
    later = once.model_copy(update={"version": 5})
    assert next_versions([once], [later]) == [later]
