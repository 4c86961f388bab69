"""Simulated time on the real broker: a tick written right after inputs waits for them
(a reply 1 s before a timeout wins, without the driver waiting for anything), `reach
clock tick --wait` and `POST /v1/clock/tick` return once every partition has applied
the tick and its commands are on the topic, lifecycle changes before the first tick
are refused, and a restarted worker tells the time of the last tick at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from client.system import HttpClient, send_tick
from streams.broker import EmbeddedBroker
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.topics import Topics
from tests.agents.test_simulated_time import WAITING
from tests.integration.topic_reading import every_item
from tests.unit.journey_sim import preset
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

PREFIX = "simclock."
T0 = datetime(2026, 12, 10, 8, tzinfo=UTC)
DAY = timedelta(days=1)
USERS = [f"u{n:02d}" for n in range(40)]
NOISE = 4000

JOURNEY = WAITING  # a reply within a day, or the timeout's message


async def one_per_record(bootstrap: str, topic: str, items: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, orjson.dumps([item]), partition=partition_for(item["user_id"], 2)
            )
            for item in items
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def ok(api: HttpClient, method: str, path: str, body: Any = None) -> Any:
    status, answer = await api.call(method, path, body)
    assert status == 200, (path, status, answer)
    return answer


def test_ticks_wait_for_inputs_and_tell_when_applied(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        "REACH_DELIVER": "false",
        "REACH_BROKER_URL": broker.bootstrap,
        "REACH_TOPIC_PREFIX": PREFIX,
        "REACH_APP_ID": "simclock",
    }
    settings = Settings(data_dir=tmp_path, broker_url=broker.bootstrap, topic_prefix=PREFIX)
    topics = Topics.from_settings(settings)
    last = T0 + 2 * DAY

    first = SystemProcess(tmp_path, env).start()
    try:
        api = first.http

        async def scenario() -> None:
            await ok(
                api, "POST", "/v1/presets", [preset("hello", "in_app").model_dump(mode="json")]
            )
            await ok(api, "POST", "/v1/journeys", [JOURNEY])
            # No tick yet: a launch would be stamped at the epoch.
            status, answer = await api.call("POST", "/v1/journeys/reply/launch")
            assert status == 409, answer
            assert "simulated time has not started" in answer["error"]
            await send_tick(settings, topics.clock, T0, wait=True)
            await ok(api, "POST", "/v1/journeys/reply/launch")
            signups = [{"user_id": u, "name": "Signup", "timestamp": T0.isoformat()} for u in USERS]
            await ok(api, "POST", "/v1/events", signups)
            reply = (T0 + DAY - timedelta(seconds=1)).isoformat()
            replies = [{"user_id": u, "name": "Reply", "timestamp": reply} for u in USERS[::2]]
            # Behind a few thousand records of other users, one event each: the worker
            # is still at them when the tick arrives.
            noise = [
                {"user_id": f"n{n}", "name": "Noise", "timestamp": T0.isoformat()}
                for n in range(NOISE)
            ]
            await one_per_record(broker.bootstrap, topics.events, noise + replies)
            # At once, no polling: the tick waits for the inputs written before it, and
            # returns once the commands it caused are on the topic.
            await send_tick(settings, topics.clock, T0 + DAY, wait=True)
            commands = await every_item(broker.bootstrap, topics.send_commands)
            steps = {c["user_id"]: c["step"] for c in commands}
            assert len(commands) == len(USERS)
            assert steps == {u: "thanks" if n % 2 == 0 else "nudge" for n, u in enumerate(USERS)}
            answer = await ok(
                api, "POST", "/v1/clock/tick", {"now": last.isoformat(), "wait": True}
            )
            assert answer == {"now": last.isoformat(), "partitions": 2, "applied": True}
            clock = (await ok(api, "GET", "/v1/status"))["clock"]
            assert clock["partitions"] == {"0": last.isoformat(), "1": last.isoformat()}

        asyncio.run(scenario())
        # The CLI, as an operator runs it.
        cli = subprocess.run(
            [sys.executable, "-m", "cli.main", "clock", "tick", "--wait", last.isoformat()],
            env={**os.environ, **env, "REACH_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.strip() == f"applied {last.isoformat()} on 2 partitions"
    finally:
        first.stop()

    # Started again: the clock is the last tick written before anything is processed.
    second = SystemProcess(tmp_path, env).start()
    try:
        clock = asyncio.run(ok(second.http, "GET", "/v1/status"))["clock"]
        assert clock["now"] == last.isoformat()
        assert clock["partitions"] == {"0": last.isoformat(), "1": last.isoformat()}
    finally:
        second.stop()
