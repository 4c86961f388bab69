"""A worker killed in the middle of the seed campaign and started again, then every
input replayed over the kept state: no step visit gets a second command id, waits
resume from the recovered state and timers, and the statistics still say what
happened. The broker outlives the worker (as a cluster would), so the worker replays
what it had not committed."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from client.system import HttpClient, send_tick
from schemas.values import parse_timestamp
from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import define_workspace, installed_users, seed_journeys
from tests.integration.topic_reading import every_item
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
USERS = [f"u{n:03d}" for n in range(120)]


async def rows(api: HttpClient, sql: str, expected: int, timeout: float = 40) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    while True:
        _, found = await api.query(sql)
        if (found and int(found[0][0]) >= expected) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def test_a_killed_worker_resumes_the_campaign_without_a_second_command_id(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        # Feedback is posted by hand here; the simulated channels' own feedback loop is
        # tests/integration/test_delivery.py.
        "REACH_DELIVER": "false",
        "REACH_BROKER_URL": broker.bootstrap,
    }
    settings = Settings(data_dir=tmp_path, broker_url=broker.bootstrap)

    async def tick(at: str) -> None:
        await send_tick(settings, TOPICS.clock, parse_timestamp(at))

    first = SystemProcess(tmp_path, env).start()
    try:
        api = first.http

        async def before_the_crash() -> list[list[Any]]:
            await define_workspace(api)
            status, _ = await api.call("POST", "/v1/tags", installed_users(USERS))
            assert status == 200
            await tick("2026-12-10T07:00:00Z")
            assert (await api.call("POST", "/v1/journeys", seed_journeys()))[0] == 200
            assert (await api.call("POST", "/v1/journeys/reengage-once/launch"))[0] == 200
            await tick("2026-12-10T08:00:00Z")
            await rows(api, "SELECT count() FROM send_commands FINAL", len(USERS))
            _, sent = await api.query("SELECT command_id, user_id FROM send_commands FINAL")
            feedback = [
                {
                    "command_id": command,
                    "user_id": user,
                    "status": "opened",
                    "channel": "email",
                    "timestamp": "2026-12-12T10:00:00Z",
                }
                for command, user in sent
                if int(user[1:]) % 2 == 0
            ]
            assert (await api.call("POST", "/v1/feedback", feedback))[0] == 200
            return sent

        asyncio.run(before_the_crash())
        # Killed at once: the opens may or may not be in the state, nothing was stopped.
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    finally:
        first.stop()

    with SystemProcess(tmp_path, env) as second:
        api = second.http

        async def after_the_restart() -> set[str]:
            await tick("2026-12-15T08:00:01Z")
            expected = len(USERS) + len(USERS) // 2
            [[total]] = await rows(api, "SELECT count() FROM send_commands FINAL", expected)
            assert total == expected
            # The topic may hold re-sends, but each step visit has one command id.
            commands = await every_item(broker.bootstrap, TOPICS.send_commands)
            ids: dict[tuple[str, str], set[str]] = {}
            for command in commands:
                ids.setdefault((command["user_id"], command["step"]), set()).add(
                    command["command_id"]
                )
            assert len(ids) == expected
            assert all(len(found) == 1 for found in ids.values())
            second_emails = {user for user, step in ids if step == "second-email"}
            assert second_emails == {user for user in USERS if int(user[1:]) % 2 == 1}
            status, stats = await api.call("GET", "/v1/journeys/reengage-once/stats")
            assert status == 200, stats
            steps = {step["step"]: step for step in stats["steps"]}
            assert steps["first-email"]["sent"] == len(USERS)
            assert steps["first-email"]["opened"] == len(USERS) // 2
            assert steps["first-email"]["not_opened"] == len(USERS) // 2
            assert steps["second-email"]["sent"] == len(USERS) // 2
            assert stats["journey"]["inside_now"] == 0
            return {command["command_id"] for command in commands}

        sent_ids = asyncio.run(after_the_restart())

    # A full replay: a worker of a new consumer group reads every input again from the
    # start (tags, opens, clock ticks, definitions) over the state it keeps. It makes
    # no command id that was not made before.
    with SystemProcess(tmp_path, {**env, "REACH_APP_ID": "reachstream-replay"}) as third:

        async def after_the_replay() -> None:
            inputs = len(USERS) + len(USERS) // 2  # tag updates and opens
            deadline = time.monotonic() + 60
            while True:
                _, status = await third.http.call("GET", "/v1/status")
                counters = status["counters"]
                read = counters.get("tag_updates.valid", 0) + counters.get("feedback.valid", 0)
                if read >= inputs or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert read == inputs, counters
            await asyncio.sleep(2)  # ticks and their sweeps, read alongside
            await tick("2026-12-16T08:00:00Z")
            await asyncio.sleep(2)
            commands = await every_item(broker.bootstrap, TOPICS.send_commands)
            assert {command["command_id"] for command in commands} == sent_ids
            status, stats = await third.http.call("GET", "/v1/journeys/reengage-once/stats")
            assert status == 200, stats
            assert stats["journey"]["entries"] == len(USERS)
            assert stats["journey"]["sent"] == len(USERS) + len(USERS) // 2

        asyncio.run(after_the_replay())
