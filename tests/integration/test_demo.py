"""The main job, smaller: ``make demo`` plays the seed campaign over two weeks of
simulated time and checks that the terminal, ClickHouse and the HTML report agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.demo import run_demo
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_seed_campaign_and_its_numbers_agree(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert run_demo(Settings(), users=150, days=14, report_path=report)
    page = report.read_text(encoding="utf-8")
    assert 'data-journey="reengage-once" data-step="second-email" data-metric="sent"' in page
