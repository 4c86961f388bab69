"""Integration fixtures: a whole system (``reach up``) in a child process, with its own
embedded broker and ClickHouse engine, started here and stopped after the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.supervisor import SystemProcess

API_KEY = "integration-key-0123456789"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemProcess]:
    folder: Path = tmp_path_factory.mktemp("system")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_MAX_RECORD_BYTES": "20000",
        "REACH_MAX_REQUEST_BYTES": "200000",
        "REACH_MAX_BATCH_ITEMS": "100",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        "REACH_API_KEYS": f"{API_KEY}:admin,ingest-only-key-012345:ingest",
        "REACH_API_KEY": API_KEY,
    }
    with SystemProcess(folder, env) as running:
        yield running
