"""The seed campaign through the real broker and ClickHouse, in simulated time: users
who have not opened the app for 7 days get an email at the scheduled instant; after 5
days, who opened exits, who did not gets a second email. Every send command appears
once, and the journey statistics in ClickHouse say what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from client.system import send_tick
from schemas.values import parse_timestamp
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import define_workspace, installed_users, rows, seed_journeys
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
USERS = [f"u{n}" for n in range(6)]
OPENERS = {"u0", "u1"}
ACTIVE = {"u5"}  # opens the app: never in the audience


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemProcess]:
    folder = tmp_path_factory.mktemp("journeys")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        # Feedback is posted by hand here; the simulated channels' own feedback loop is
        # tests/integration/test_delivery.py.
        "REACH_DELIVER": "false",
    }
    with SystemProcess(folder, env) as running:
        yield running


async def tick(settings: Settings, at: str) -> None:
    await send_tick(settings, TOPICS.clock, parse_timestamp(at))


def test_seed_campaign_end_to_end(simulated: SystemProcess) -> None:
    assert simulated.info is not None
    api = simulated.http
    settings = Settings(data_dir=simulated.data_dir)

    async def scenario() -> None:
        await define_workspace(api)
        assert (await api.call("POST", "/v1/tags", installed_users(USERS)))[0] == 200
        opens = [
            {"user_id": user, "name": "ApplicationOpen", "timestamp": "2026-12-09T12:00:00Z"}
            for user in ACTIVE
        ]
        assert (await api.call("POST", "/v1/events", opens))[0] == 200
        await tick(settings, "2026-12-10T07:00:00Z")
        status, body = await api.call("POST", "/v1/journeys", seed_journeys())
        assert status == 200, body
        status, body = await api.call("POST", "/v1/journeys/reengage-once/launch")
        assert status == 200, body
        # The run is at 09:00 in Paris: nothing before it.
        await tick(settings, "2026-12-10T07:59:00Z")
        await asyncio.sleep(1)
        _, none = await api.query("SELECT count() FROM send_commands")
        assert none == [[0]]
        await tick(settings, "2026-12-10T08:00:00Z")
        first = await rows(
            api,
            "SELECT command_id, user_id, step, toString(at) FROM send_commands FINAL "
            "ORDER BY user_id",
            5,
        )
        assert [(row[1], row[2], row[3]) for row in first] == [
            (user, "first-email", "2026-12-10 08:00:00.000") for user in sorted(set(USERS) - ACTIVE)
        ]
        feedback = [
            {
                "command_id": command,
                "user_id": user,
                "status": status,
                "channel": "email",
                "timestamp": "2026-12-12T10:00:00Z",
            }
            for command, user, _, _ in first
            for status in ("delivered", "opened")
            if user in OPENERS
        ]
        assert (await api.call("POST", "/v1/feedback", feedback))[0] == 200
        await rows(
            api, "SELECT 1 FROM journey_activity FINAL WHERE activity = 'opened'", len(OPENERS)
        )
        await tick(settings, "2026-12-15T08:00:01Z")
        sent = await rows(
            api,
            "SELECT user_id, step, toString(at) FROM send_commands FINAL ORDER BY step, user_id",
            8,
        )
        ignored = sorted(set(USERS) - ACTIVE - OPENERS)
        assert [(row[0], row[1]) for row in sent] == [
            *((user, "first-email") for user in sorted(set(USERS) - ACTIVE)),
            *((user, "second-email") for user in ignored),
        ]
        assert {row[2] for row in sent if row[1] == "second-email"} == {"2026-12-15 08:00:00.000"}
        # Every command once, in the topic as in the table.
        _, counts = await api.query("SELECT count(), uniqExact(command_id) FROM send_commands")
        assert counts == [[8, 8]]
        status, stats = await api.call("GET", "/v1/journeys/reengage-once/stats")
        assert status == 200, stats
        steps = {step["step"]: step for step in stats["steps"]}
        assert stats["journey"]["entries"] == 5
        assert stats["journey"]["inside_now"] == 0
        assert steps["first-email"]["sent"] == 5
        assert steps["first-email"]["opened"] == 2
        assert steps["first-email"]["delivered"] == 2
        assert steps["first-email"]["not_opened"] == 3
        assert steps["second-email"]["sent"] == 3
        assert steps["done"]["exited"] == 5
        _, edges = await api.query(
            "SELECT from_step, output, to_step, users FROM journey_edge_stats "
            "WHERE journey_id = 'reengage-once' ORDER BY from_step, output"
        )
        assert [tuple(edge) for edge in edges] == [
            ("first-email", "not_opened", "second-email", 3),
            ("first-email", "opened", "done", 2),
            ("second-email", "next", "done", 3),
        ]

    asyncio.run(scenario())
