"""The main job, smaller: ``make demo`` plays the seed campaign over two weeks of
simulated time and checks that the terminal, ClickHouse and the HTML report agree;
here the report it wrote is also opened in headless Chromium, and the numbers the
browser shows are the campaign's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cli.demo import run_demo
from streams.settings import Settings
from tests.browser import FLAGS, require_chromium
from tests.unit.test_report import read_page

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_seed_campaign_and_its_numbers_agree(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert run_demo(Settings(), users=150, days=14, report_path=report)
    written = read_page(report.read_text(encoding="utf-8"))
    steps = {
        (n.attrs["data-step"], n.attrs["data-metric"]): int(n.attrs["data-value"])
        for n in written.numbers
        if n.attrs.get("data-journey") == "reengage-once" and "data-step" in n.attrs
    }
    first_sent = steps[("first-email", "sent")]
    assert first_sent > 0
    assert steps[("first-email", "not_opened")] == steps[("second-email", "entered")]
    browser = require_chromium()
    completed = subprocess.run(
        [str(browser), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    shown = {
        (n.attrs["data-step"], n.attrs["data-metric"]): n.shown
        for n in read_page(completed.stdout).numbers
        if n.attrs.get("data-journey") == "reengage-once" and "data-step" in n.attrs
    }
    assert shown == steps
