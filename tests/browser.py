"""Headless Chromium for the browser tests (Debian's, which .ci/run installs).

A browser test must never pass by skipping in CI: with the ``CI`` environment variable
set (as .ci/run and CI services set it), a missing browser fails the test with a line
that says what to install; only outside CI is it a skip."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No network at all: without the background-networking flags Chromium tries to reach
# Google's hosts at every start.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def in_ci(environ: Mapping[str, str]) -> bool:
    """``CI`` set to anything but empty, ``0`` or ``false``."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require_chromium(browser: Path = CHROMIUM, environ: Mapping[str, str] = os.environ) -> Path:
    """The browser to run; when it is missing, a failure in CI, else a skip."""
    if browser.exists():
        return browser
    missing = f"{browser} is missing: install Debian's chromium (.ci/run does)"
    if in_ci(environ):
        pytest.fail(f"{missing}; CI is set, so the browser tests must run", pytrace=False)
    pytest.skip(missing)
