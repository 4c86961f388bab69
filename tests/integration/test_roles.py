"""Projections and segments in separate worker processes (roles) on one Kafka: each
role is its own consumer group and reads every input record; together they do what a
single ``all`` worker does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.supervisor import SystemProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def roles(
    tmp_path_factory: pytest.TempPathFactory, broker: EmbeddedBroker
) -> Iterator[tuple[SystemProcess, SystemProcess]]:
    base = {
        "REACH_HTTP_PORT": "0",
        "REACH_BROKER_URL": f"kafka://{broker.bootstrap}",
        "REACH_TOPIC_PREFIX": "roles.",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
    }
    folder: Path = tmp_path_factory.mktemp("roles")
    with (
        SystemProcess(folder / "p", {**base, "REACH_ROLE": "projections"}) as projections,
        SystemProcess(folder / "s", {**base, "REACH_ROLE": "segments"}) as segments,
    ):
        yield projections, segments


def test_roles_split_the_work(roles: tuple[SystemProcess, SystemProcess]) -> None:
    projections, segments = roles

    async def scenario() -> None:
        status, body = await segments.http.call(
            "POST",
            "/v1/segments",
            {
                "id": "buyers",
                "name": "buyers",
                "expression": 'E("InAppPurchase", count >= 1, last 30 days)',
            },
        )
        assert status == 200, body
        events = [
            {"user_id": f"u{n}", "name": "InAppPurchase", "timestamp": "2026-11-01T10:00:00Z"}
            for n in range(5)
        ]
        assert (await projections.http.call("POST", "/v1/events", events))[0] == 200

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, rows = await projections.http.query(
                "SELECT (SELECT count() FROM events FINAL), "
                "(SELECT count() FROM segment_memberships FINAL WHERE segment_id = 'buyers')"
            )
            if rows[0] == [5, 5]:
                break
            await asyncio.sleep(0.2)
        assert rows[0] == [5, 5]  # events projected by one role, memberships by the other
        _, status_body = await segments.http.call("GET", "/v1/status")
        assert status_body["segments"]["members"] == {"buyers": 5}
        _, projection_status = await projections.http.call("GET", "/v1/status")
        assert "segments" not in projection_status  # no segment state in that role
        status, body = await segments.http.call("POST", "/v1/query", {"sql": "SELECT 1"})
        assert status == 503
        assert "projections" in body["error"]

    asyncio.run(scenario())
