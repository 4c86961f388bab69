"""Browser tests never pass by skipping in CI: with ``CI`` set, a missing Chromium is a
failure that says so; only on a machine outside CI is it a skip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, require_chromium

ROOT = Path(__file__).resolve().parents[2]
CI_RUN = ROOT / ".ci" / "run"
# Caught both ways, so that a skip where a failure is due fails this test instead of
# skipping it.
OUTCOMES = (pytest.fail.Exception, pytest.skip.Exception)


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_a_missing_browser_fails_in_ci(tmp_path: Path, value: str) -> None:
    with pytest.raises(OUTCOMES) as outcome:
        require_chromium(tmp_path / "chromium", {"CI": value})
    assert outcome.type is pytest.fail.Exception
    assert "CI is set" in str(outcome.value)


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "0"}, {"CI": "false"}])
def test_a_missing_browser_is_skipped_outside_ci(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(OUTCOMES) as outcome:
        require_chromium(tmp_path / "chromium", environ)
    assert outcome.type is pytest.skip.Exception
    assert "is missing" in str(outcome.value)


def test_a_present_browser_is_used_in_ci_and_outside(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    assert require_chromium(browser, {"CI": "1"}) == browser
    assert require_chromium(browser, {}) == browser


def test_ci_sets_ci_and_installs_the_browser_before_the_tests() -> None:
    script = CI_RUN.read_text()
    tests = script.index("make test")
    exported = re.search(r"^export CI=", script, re.M)
    assert exported is not None
    assert exported.start() < tests
    install = re.search(r"apt-get install .*\bchromium\b", script)
    assert install is not None
    assert install.start() < tests
    # It installs the browser when the command the tests run is missing.
    assert f"command -v {CHROMIUM.name}" in script


def test_no_browser_test_skips_on_its_own() -> None:
    for path in (ROOT / "tests").rglob("test_*.py"):
        text = path.read_text()
        if "chromium" in text.lower() and path.name != "test_browser_guard.py":
            assert "require_chromium" in text, path
            assert "pytest.skip" not in text, path
