"""Journey workers rebalancing in the middle of the seed campaign: a second ``segments``
worker joins while users wait in the 5-day open/ignore split (partitions move to it),
the campaign goes on over both, then the second worker stops gracefully (its
partitions move back to the first, which resumes from its own older copy of their
state plus the changelog). No step visit gets a second command id, the splits count
right, and the statistics in ClickHouse say what happened.

One ``projections`` worker holds ClickHouse (chDB allows one process per data path);
the two ``segments`` workers share a consumer group on the same broker. Two journeys
run at once so that commands are produced on both sides of each rebalance: the seed's
``reengage-once`` (Thursday 2026-12-10 09:00 Paris) and ``reengage-weekly`` (Friday
17:00 in the users' zone, here the journey's Europe/Paris: users wait for their local
time as pending entries, then get the first email at 16:00 UTC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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

PREFIX = "rebalance."
PARTITIONS = 4
TOPICS = Topics.from_settings(Settings(topic_prefix=PREFIX, partitions=PARTITIONS))
USERS = [f"u{n:03d}" for n in range(120)]
ONCE, WEEKLY = "reengage-once", "reengage-weekly"
TIMEOUT = 40.0


def number(user: str) -> int:
    return int(user[1:])


def uncapped() -> list[dict[str, Any]]:
    """The seed journeys without their frequency caps: every second email of both
    journeys goes out, so the splits of both are counted whole."""
    journeys = seed_journeys()
    for journey in journeys:
        journey["settings"]["frequency_cap"] = None
    return journeys


# Who opens which first email, and when (simulated time).
ONCE_OPENS = {  # by n % 4; 3 never opens
    0: "2026-12-11T10:00:00Z",  # first worker alone
    1: "2026-12-12T10:00:00Z",  # two workers
    2: "2026-12-14T10:00:00Z",  # two workers
}
WEEKLY_OPENS = {  # by n % 3; 2 never opens
    0: "2026-12-12T11:00:00Z",  # two workers
    1: "2026-12-15T12:00:00Z",  # sent as the second worker stops
}
ONCE_IGNORED = {user for user in USERS if number(user) % 4 == 3}
WEEKLY_IGNORED = {user for user in USERS if number(user) % 3 == 2}


async def wait_for(
    what: str, read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = TIMEOUT
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        await asyncio.sleep(0.2)


async def scalar(api: HttpClient, sql: str) -> int:
    _, found = await api.query(sql)
    return int(found[0][0])


async def count_is(api: HttpClient, sql: str, expected: int) -> None:
    async def read() -> int:
        return await scalar(api, sql)

    found = await wait_for(sql, read, lambda value: value >= expected)
    assert found == expected, sql


async def segment_status(process: SystemProcess) -> dict[str, Any]:
    status, body = await process.http.call("GET", "/v1/status")
    assert status == 200, body
    segments: dict[str, Any] = body["segments"]
    return segments


async def timers(*processes: SystemProcess) -> list[int]:
    return [int((await segment_status(process))["timers"]) for process in processes]


def opens(
    sent: list[list[Any]], journey: str, when_by_group: dict[int, str], modulo: int
) -> list[dict[str, Any]]:
    return [
        {
            "command_id": command,
            "user_id": user,
            "status": "opened",
            "channel": "email",
            "timestamp": when_by_group[number(user) % modulo],
        }
        for command, user, journey_id, step in sent
        if journey_id == journey
        and step == "first-email"
        and number(user) % modulo in when_by_group
    ]


def test_segments_workers_rebalance_in_the_middle_of_the_campaign_without_a_second_command_id(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    base = {
        "REACH_HTTP_PORT": "0",
        "REACH_BROKER_URL": f"kafka://{broker.bootstrap}",
        "REACH_TOPIC_PREFIX": PREFIX,
        "REACH_APP_ID": "rebalance",
        "REACH_PARTITIONS": str(PARTITIONS),
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        # Opens are posted by hand; nothing delivers (the segments role never does).
        "REACH_DELIVER": "false",
    }
    settings = Settings(broker_url=broker.bootstrap, topic_prefix=PREFIX, partitions=PARTITIONS)
    segments_env = {**base, "REACH_ROLE": "segments"}
    projections = SystemProcess(tmp_path / "p", {**base, "REACH_ROLE": "projections"})
    first = SystemProcess(tmp_path / "s1", segments_env)
    second = SystemProcess(tmp_path / "s2", segments_env)
    sent_sql = "SELECT command_id, user_id, journey_id, step FROM send_commands FINAL"

    async def tick(at: str) -> None:
        await send_tick(settings, TOPICS.clock, parse_timestamp(at))

    def step_count(journey: str, step: str, column: str) -> str:
        return (
            f"SELECT sum({column}) FROM journey_step_stats "
            f"WHERE journey_id = '{journey}' AND step = '{step}'"
        )

    def commands_sql(journey: str | None = None) -> str:
        where = f" WHERE journey_id = '{journey}'" if journey else ""
        return f"SELECT count() FROM send_commands FINAL{where}"

    try:
        projections.start()
        first.start()
        ch = projections.http

        async def first_worker_alone() -> None:
            api = first.http
            await define_workspace(api)
            status, _ = await ch.call("POST", "/v1/tags", installed_users(USERS))
            assert status == 200
            members = (
                "SELECT count() FROM segment_memberships FINAL WHERE segment_id = 'inactive-7d'"
            )
            await tick("2026-12-10T07:00:00Z")
            await count_is(ch, members, len(USERS))
            assert (await api.call("POST", "/v1/journeys", uncapped()))[0] == 200
            for journey in (ONCE, WEEKLY):
                status, body = await api.call("POST", f"/v1/journeys/{journey}/launch")
                assert status == 200, body
            await tick("2026-12-10T08:00:00Z")  # the once run: every member, first email
            await count_is(ch, commands_sql(ONCE), len(USERS))
            # The weekly run starts where Friday 17:00 comes first (UTC+14): everyone
            # waits for 17:00 in Paris as a pending entry.
            await tick("2026-12-11T03:00:01Z")
            _, sent = await ch.query(sent_sql)
            early = opens(sent, ONCE, {0: ONCE_OPENS[0]}, 4)
            assert (await ch.call("POST", "/v1/feedback", early))[0] == 200
            await count_is(ch, step_count(ONCE, "first-email", "opened"), len(USERS) // 4)
            # Everyone waits for something (the split or the pending weekly entry).
            assert await timers(first) == [len(USERS)]

        asyncio.run(first_worker_alone())

        # A second segments worker joins the group: partitions move to it.
        second.start()

        async def two_workers() -> None:
            def shared(found: list[int]) -> bool:
                return all(found) and sum(found) == len(USERS)

            await wait_for("timers per worker", lambda: timers(first, second), shared)
            # The pending weekly entries come due on both workers: first emails.
            await tick("2026-12-11T16:00:01Z")
            await count_is(ch, commands_sql(WEEKLY), len(USERS))
            _, sent = await ch.query(sent_sql)
            feedback = sorted(
                opens(sent, ONCE, {1: ONCE_OPENS[1], 2: ONCE_OPENS[2]}, 4)
                + opens(sent, WEEKLY, {0: WEEKLY_OPENS[0]}, 3),
                key=lambda item: (item["timestamp"], item["user_id"]),
            )
            assert (await ch.call("POST", "/v1/feedback", feedback))[0] == 200
            await count_is(ch, step_count(ONCE, "first-email", "opened"), 3 * len(USERS) // 4)
            await count_is(ch, step_count(WEEKLY, "first-email", "opened"), len(USERS) // 3)
            # The once split ends on both workers: the second email to those who ignored it.
            await tick("2026-12-15T08:00:01Z")
            await count_is(ch, commands_sql(ONCE), len(USERS) + len(ONCE_IGNORED))
            # Both workers did part of the campaign.
            statuses = [await segment_status(process) for process in (first, second)]
            assert all(status["commands"] > 0 for status in statuses), statuses
            assert all(status["inputs"] > 0 for status in statuses), statuses
            # The last opens of the weekly split go out as the second worker stops: some
            # may be applied there and some replayed where its partitions go.
            _, sent = await ch.query(sent_sql)
            late = opens(sent, WEEKLY, {1: WEEKLY_OPENS[1]}, 3)
            assert (await ch.call("POST", "/v1/feedback", late))[0] == 200

        asyncio.run(two_workers())

        # Stopped gracefully: its partitions move back to the first worker, which
        # still has its own copy of their state from before the first rebalance.
        second.stop()

        async def first_worker_again() -> None:
            await count_is(ch, step_count(WEEKLY, "first-email", "opened"), 2 * len(USERS) // 3)
            # Only the weekly split's ignorers still wait, all on the first worker.
            await wait_for(
                "timers on the first worker",
                lambda: timers(first),
                lambda found: found == [len(WEEKLY_IGNORED)],
            )
            await tick("2026-12-16T16:00:01Z")  # the weekly split ends
            total = 2 * len(USERS) + len(ONCE_IGNORED) + len(WEEKLY_IGNORED)
            await count_is(ch, commands_sql(), total)

            # The topic may hold re-sends, but each step visit has one command id.
            commands = await every_item(broker.bootstrap, TOPICS.send_commands)
            ids: dict[tuple[str, str, str, int, str], set[str]] = {}
            for command in commands:
                visit = (
                    command["journey_id"],
                    command["run"],
                    command["step"],
                    command["visit"],
                    command["user_id"],
                )
                ids.setdefault(visit, set()).add(command["command_id"])
            twice = {visit: found for visit, found in ids.items() if len(found) > 1}
            assert not twice, twice
            assert len(ids) == total
            # One entry per user and journey: one visit per (journey, step, user).
            assert len({(j, step, user) for j, _, step, _, user in ids}) == total
            _, sent = await ch.query(sent_sql)
            assert {row[0] for row in sent} == {
                command_id for found in ids.values() for command_id in found
            }
            for journey, ignored in ((ONCE, ONCE_IGNORED), (WEEKLY, WEEKLY_IGNORED)):
                seconds = {
                    user for j, _, step, _, user in ids if (j, step) == (journey, "second-email")
                }
                assert seconds == ignored, journey

            for journey, ignored in ((ONCE, ONCE_IGNORED), (WEEKLY, WEEKLY_IGNORED)):
                status, stats = await ch.call("GET", f"/v1/journeys/{journey}/stats")
                assert status == 200, stats
                steps = {step["step"]: step for step in stats["steps"]}
                opened = len(USERS) - len(ignored)
                assert steps["first-email"]["entered"] == len(USERS)
                assert steps["first-email"]["sent"] == len(USERS)
                assert steps["first-email"]["opened"] == opened
                assert steps["first-email"]["not_opened"] == len(ignored)
                assert steps["second-email"]["entered"] == len(ignored)
                assert steps["second-email"]["sent"] == len(ignored)
                assert steps["done"]["exited"] == len(USERS)
                totals = stats["journey"]
                assert totals["entries"] == len(USERS)
                assert totals["unique_users"] == len(USERS)
                assert totals["inside_now"] == 0
                assert totals["sent"] == len(USERS) + len(ignored)
                assert totals["opened"] == opened

            # The projections worker follows simulated time too: the once campaign,
            # past its run with nobody inside, is finished; the weekly one runs on.
            for journey, expected in ((ONCE, "finished"), (WEEKLY, "launched")):
                status, shown = await ch.call("GET", f"/v1/journeys/{journey}")
                assert status == 200, shown
                assert shown["status"] == expected, (journey, shown)

        asyncio.run(first_worker_again())
    finally:
        second.stop()
        first.stop()
        projections.stop()
