"""The feedback loop end to end, through the real broker and ClickHouse in simulated
time: the seed campaign's send commands go through the delivery worker to the
simulated email channel, whose deliveries and opens come back as feedback when the
clock reaches them, and move the journey: who opened exits, the others get the second
email. Send commands, feedback and the journey's statistics agree. Invalid send
commands are dead letters, in ClickHouse with their reasons."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from client.system import HttpClient, send_tick
from delivery.simulator import decide, profiles
from schemas.commands import SendCommand
from schemas.values import parse_timestamp
from streams.settings import Settings, SimulatedChannel
from streams.topics import Topics
from tests.integration.seed_campaign import define_workspace, installed_users, seed_journeys
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
USERS = [f"u{n:02d}" for n in range(40)]
ACTIVE = {"u00", "u01"}  # open the app: never in the audience
AUDIENCE = sorted(set(USERS) - ACTIVE)
# Opens within hours, so that all of them come before the journey's 5-day split.
EMAIL = SimulatedChannel(opened=0.5, open_hours=1)
SEED = 11


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemProcess]:
    folder = tmp_path_factory.mktemp("delivery")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        "REACH_SIMULATOR": orjson.dumps({"email": EMAIL.model_dump(exclude_none=True)}).decode(),
        "REACH_SIMULATOR_SEED": str(SEED),
    }
    with SystemProcess(folder, env) as running:
        yield running


async def value(api: HttpClient, sql: str, expected: int, timeout: float = 30) -> int:
    """The query's single number, once it reaches ``expected`` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        _, found = await api.query(sql)
        number = int(found[0][0])
        if number >= expected or time.monotonic() > deadline:
            return number
        await asyncio.sleep(0.1)


def fates(commands: list[list[Any]]) -> dict[str, set[str]]:
    """What the simulator decides for each command (id -> feedback statuses): the
    worker must have decided the same."""
    profile = profiles({"email": EMAIL})["email"]
    decided: dict[str, set[str]] = {}
    for command_id, user, step, at in commands:
        command = SendCommand(
            command_id=command_id,
            user_id=user,
            channel="email",
            preset="we-miss-you",
            journey_id="reengage-once",
            journey_version=1,
            run="r",
            step=step,
            visit=1,
            at=parse_timestamp(at),
            address=f"{user}@example.com",
        )
        result = decide(command, profile, SEED)
        decided[command_id] = {result.outcome.status} | {later.status for later in result.later}
    return decided


def test_simulated_opens_move_the_campaign(simulated: SystemProcess) -> None:
    api = simulated.http
    settings = Settings(data_dir=simulated.data_dir)
    n = len(AUDIENCE)

    async def tick(at: str) -> None:
        await send_tick(settings, TOPICS.clock, parse_timestamp(at))

    async def scenario() -> None:
        await define_workspace(api)
        assert (await api.call("POST", "/v1/tags", installed_users(USERS)))[0] == 200
        opens = [
            {"user_id": user, "name": "ApplicationOpen", "timestamp": "2026-12-09T12:00:00Z"}
            for user in ACTIVE
        ]
        assert (await api.call("POST", "/v1/events", opens))[0] == 200
        await tick("2026-12-10T07:00:00Z")
        status, body = await api.call("POST", "/v1/journeys", seed_journeys())
        assert status == 200, body
        status, body = await api.call("POST", "/v1/journeys/reengage-once/launch")
        assert status == 200, body

        # The run: the first emails, delivered a few simulated seconds later.
        await tick("2026-12-10T08:00:00Z")
        assert await value(api, "SELECT count() FROM send_commands FINAL", n) == n
        _, first = await api.query(
            "SELECT command_id, user_id, step, toString(at) FROM send_commands FINAL"
        )
        decided = fates(first)
        openers = {user for command, user, _, _ in first if "opened" in decided[command]}
        assert 0 < len(openers) < n  # both branches taken
        outcomes = "SELECT count() FROM feedback FINAL WHERE status IN ('delivered', 'bounced')"
        _, none = await api.query(outcomes)
        assert none == [[0]]  # not before the clock reaches them
        await tick("2026-12-10T08:01:00Z")
        assert await value(api, outcomes, n) == n

        # The opens, all within the split's 5 days, then the split.
        await tick("2026-12-14T08:00:00Z")
        opened = "SELECT count() FROM journey_activity FINAL WHERE activity = 'opened'"
        assert await value(api, opened, len(openers)) == len(openers)
        await tick("2026-12-15T08:00:01Z")
        total = n + n - len(openers)
        assert await value(api, "SELECT count() FROM send_commands FINAL", total) == total
        await tick("2026-12-15T08:01:00Z")
        assert await value(api, outcomes, total) == total

        # Every command once, one outcome each, as the simulator decided.
        _, counts = await api.query("SELECT count(), uniqExact(command_id) FROM send_commands")
        assert counts == [[total, total]]
        _, rows = await api.query(
            "SELECT command_id, user_id, step, toString(at) FROM send_commands FINAL"
        )
        commands = {row[0]: row for row in rows}
        _, received = await api.query(
            "SELECT command_id, status, count() FROM feedback FINAL GROUP BY command_id, status"
        )
        assert all(count == 1 for _, _, count in received)
        statuses: dict[str, set[str]] = {}
        for command_id, status, _ in received:
            statuses.setdefault(command_id, set()).add(status)
        assert set(statuses) == set(commands)
        everything = fates(rows)
        for command_id, found in statuses.items():
            outcome = found & {"delivered", "bounced", "failed"}
            assert len(outcome) == 1, (command_id, found)
            if commands[command_id][2] == "first-email":
                assert found == everything[command_id]  # every open and click released
            else:
                assert found <= everything[command_id]  # later ones still to come
        second = {user for _, user, step, _ in rows if step == "second-email"}
        assert second == set(AUDIENCE) - openers

        status, stats = await api.call("GET", "/v1/journeys/reengage-once/stats")
        assert status == 200, stats
        steps = {step["step"]: step for step in stats["steps"]}
        first_feedback = [statuses[c] for c, row in commands.items() if row[2] == "first-email"]
        assert steps["first-email"]["sent"] == n
        assert steps["first-email"]["delivered"] == sum("delivered" in f for f in first_feedback)
        assert steps["first-email"]["bounced"] == sum("bounced" in f for f in first_feedback)
        assert steps["first-email"]["failed"] == sum("failed" in f for f in first_feedback)
        assert steps["first-email"]["opened"] == len(openers)
        assert steps["first-email"]["opened"] + steps["first-email"]["not_opened"] == n
        assert steps["second-email"]["sent"] == steps["first-email"]["not_opened"]
        assert steps["done"]["exited"] == n
        assert stats["journey"]["inside_now"] == 0
        _, body = await api.call("GET", "/v1/status")
        assert body["delivery"]["delivered"] + body["delivery"].get("bounced", 0) == total

    asyncio.run(scenario())


def test_invalid_send_commands_are_dead_letters(simulated: SystemProcess) -> None:
    assert simulated.info is not None
    bootstrap, api = simulated.info.broker, simulated.http
    not_json = b"[{not json"
    bad_item = {"command_id": "x:1:r:s:1:0000000000000000", "channel": "email"}

    async def scenario() -> list[list[Any]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(TOPICS.send_commands, not_json, key=b"dl", partition=1)
            batch = orjson.dumps([bad_item])
            await producer.send_and_wait(TOPICS.send_commands, batch, key=b"dl", partition=1)
        finally:
            await producer.stop()
        where = f"FROM dead_letters FINAL WHERE source_topic = '{TOPICS.send_commands}'"
        await value(api, f"SELECT count() {where}", 2)
        ordered = f"SELECT reason, source_index, raw {where} ORDER BY source_offset"
        _, rows = await api.query(ordered)
        return rows

    rows = asyncio.run(scenario())
    assert [row[:2] for row in rows] == [["not_json", -1], ["missing_field", 0]]
    assert rows[0][2] == not_json.decode()
    assert orjson.loads(rows[1][2]) == bad_item
