"""The seed campaign's workspace from the example files, as the integration scenarios
post it: presets and segments, users installed on 1 Nov, and the journeys; and waiting
for rows in ClickHouse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from client.system import HttpClient
from files.journeys import load as load_journeys
from files.presets import load as load_presets
from files.segments import load as load_segments

EXAMPLES = Path(__file__).parents[2] / "examples"


async def define_workspace(api: HttpClient) -> None:
    """The example presets, then the example segments."""
    presets = [p.model_dump(mode="json") for p in load_presets(EXAMPLES / "seed-presets.yaml")]
    segments = [s.model_dump(mode="json") for s in load_segments(EXAMPLES / "seed-segments.yaml")]
    for path, body in [("/v1/presets", presets), ("/v1/segments", segments)]:
        status, answer = await api.call("POST", path, body)
        assert status == 200, answer


def installed_users(users: Iterable[str]) -> list[dict[str, Any]]:
    """Tag updates: each user installed the app on 1 Nov 2026 and has an email address."""
    installed = {"type": "date", "value": "2026-11-01T09:00:00Z"}
    return [
        {
            "user_id": user,
            "timestamp": "2026-11-01T09:00:00Z",
            "tags": {"First Install": installed, "Email": f"{user}@example.com"},
        }
        for user in users
    ]


def seed_journeys() -> list[dict[str, Any]]:
    return [j.model_dump(mode="json") for j in load_journeys(EXAMPLES / "seed-journeys.yaml")]


async def rows(api: HttpClient, sql: str, expected: int, timeout: float = 30) -> list[list[Any]]:
    """The query's rows once there are ``expected`` of them (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        _, found = await api.query(sql)
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)
