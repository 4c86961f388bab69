"""Startup refusals: each fails fast with one clear line and starts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def reach_up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "up"],
        env={**os.environ, "REACH_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_to_serve_beyond_loopback_without_api_keys(tmp_path: Path) -> None:
    result = reach_up(tmp_path, REACH_HTTP_HOST="0.0.0.0")
    assert result.returncode != 0
    assert "without API keys" in result.stderr
    assert not (tmp_path / "broker.log").exists()  # nothing was started


def test_unreachable_broker_fails_with_one_line(tmp_path: Path) -> None:
    result = reach_up(tmp_path, REACH_BROKER_URL="kafka://127.0.0.1:9")
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert error_lines == ["Error: no Kafka broker answers at 127.0.0.1:9 (KafkaConnectionError)"]
