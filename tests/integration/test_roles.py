"""Projections, segments and delivery in separate worker processes (roles) on one
Kafka: each role is its own consumer group and reads every record of its topics;
together they do what a single ``all`` worker does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.system import HttpClient, send_tick
from schemas.values import parse_timestamp
from streams.broker import EmbeddedBroker
from streams.settings import Settings
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration


Roles = tuple[SystemProcess, SystemProcess, SystemProcess]


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory, broker: EmbeddedBroker) -> Iterator[Roles]:
    base = {
        "REACH_HTTP_PORT": "0",
        "REACH_BROKER_URL": f"kafka://{broker.bootstrap}",
        "REACH_TOPIC_PREFIX": "roles.",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
    }
    folder: Path = tmp_path_factory.mktemp("roles")
    delivery = {**base, "REACH_ROLE": "delivery", "REACH_SIMULATOR": '{"email": {"delivered": 1}}'}
    with (
        SystemProcess(folder / "p", {**base, "REACH_ROLE": "projections"}) as projections,
        SystemProcess(folder / "s", {**base, "REACH_ROLE": "segments"}) as segments,
        SystemProcess(folder / "d", delivery) as delivering,
    ):
        yield projections, segments, delivering


def test_roles_split_the_work(roles: Roles) -> None:
    projections, segments, _ = roles

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


async def _count(api: HttpClient, sql: str, expected: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        _, rows = await api.query(sql)
        if int(rows[0][0]) >= expected or time.monotonic() > deadline:
            return int(rows[0][0])
        await asyncio.sleep(0.2)


def test_the_delivery_role_delivers_the_commands_of_the_segments_role(roles: Roles) -> None:
    projections, segments, delivering = roles
    settings = Settings(broker_url=segments.env["REACH_BROKER_URL"], topic_prefix="roles.")
    preset = {
        "id": "hello",
        "name": "Hello",
        "channel": "email",
        "content": {"sender": "a@reach.example", "subject": "Hello", "text": "Hi"},
    }
    journey = {
        "id": "hello",
        "name": "Hello",
        "entries": [{"kind": "api"}],
        "start": "email",
        "nodes": [
            {"id": "email", "type": "message", "channel": "email", "preset": "hello",
             "next": {"next": "done"}},
            {"id": "done", "type": "exit"},
        ],
    }  # fmt: skip
    users = [f"d{n}" for n in range(6)]

    async def tick(at: str) -> None:
        await send_tick(settings, "roles.clock", parse_timestamp(at))

    async def scenario() -> None:
        api = segments.http
        tags = [
            {
                "user_id": user,
                "timestamp": "2026-11-01T09:00:00Z",
                "tags": {"Email": f"{user}@x.io"},
            }
            for user in users
        ]
        assert (await projections.http.call("POST", "/v1/tags", tags))[0] == 200
        assert (await api.call("POST", "/v1/presets", preset))[0] == 200
        assert (await api.call("POST", "/v1/journeys", journey))[0] == 200
        await tick("2026-11-02T10:00:00Z")
        assert (await api.call("POST", "/v1/journeys/hello/launch"))[0] == 200
        entries = {"users": [{"user_id": user} for user in users]}
        status, body = await api.call("POST", "/v1/journeys/hello/entries", entries)
        assert status == 200, body
        sent = "SELECT count() FROM send_commands FINAL WHERE journey_id = 'hello'"
        assert await _count(projections.http, sent, len(users)) == len(users)
        # Delivered a few simulated seconds after the send: once the clock is there.
        await tick("2026-11-02T10:01:00Z")
        delivered = "SELECT count() FROM feedback FINAL WHERE status = 'delivered'"
        assert await _count(projections.http, delivered, len(users)) == len(users)
        activity = (
            "SELECT count() FROM journey_activity FINAL "
            "WHERE journey_id = 'hello' AND activity = 'delivered'"
        )
        assert await _count(projections.http, activity, len(users)) == len(users)
        _, status_body = await delivering.http.call("GET", "/v1/status")
        assert status_body["delivery"]["delivered"] == len(users)
        assert "segments" not in status_body
        _, segment_status = await api.call("GET", "/v1/status")
        assert "delivery" not in segment_status

    asyncio.run(scenario())
