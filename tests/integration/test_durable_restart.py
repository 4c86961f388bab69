"""The embedded system on its default (durable) broker keeps what it was given.

A workspace is defined, users are tagged, a journey launched: every user gets the first
email and waits in its 5-day split. The system is stopped with SIGINT and started again
on the same data directory: definitions, state, timers and the waiting users are all
there, on the same broker port, and the split fires on time after a tick. Then the
whole process tree (worker, broker, object store) is killed with SIGKILL and started
again: nothing is lost and no step visit gets a second command id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from client.system import HttpClient, send_tick
from schemas.values import parse_timestamp
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import define_workspace, installed_users, seed_journeys
from tests.integration.topic_reading import every_item
from worker.supervisor import SystemProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TOPICS = Topics.from_settings(Settings())
USERS = [f"u{n:03d}" for n in range(40)]
ODD = {user for user in USERS if int(user[1:]) % 2 == 1}
JOURNEY = "/v1/journeys/reengage-once"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), children before grandchildren."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def kill_everything(system: SystemProcess) -> None:
    """SIGKILL the system and everything it started, at once: nothing stops in order."""
    assert system.process is not None
    pids = [system.process.pid, *descendants(system.process.pid)]
    assert len(pids) >= 3, f"expected the system, its broker and object store: {pids}"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    system.process.wait(timeout=30)
    system.process = None
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids[1:]):
        assert time.monotonic() < deadline, "children outlived SIGKILL"
        time.sleep(0.1)


@pytest.fixture
def env() -> dict[str, str]:
    return {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        # Commands stay on their topic, where their ids are compared; opens are posted.
        "REACH_DELIVER": "false",
        # The default, said out loud: the test suite runs on memory otherwise.
        "REACH_BROKER_STORAGE": "durable",
    }


async def tick(system: SystemProcess, at: str) -> None:
    assert system.info is not None
    settings = Settings(data_dir=system.data_dir, broker_url=system.info.broker)
    await send_tick(settings, TOPICS.clock, parse_timestamp(at))


async def commands(system: SystemProcess, expected: int, timeout: float = 60) -> list[Any]:
    """The send commands on their topic, once ``expected`` distinct ids are there."""
    assert system.info is not None
    deadline = time.monotonic() + timeout
    while True:
        found = await every_item(system.info.broker, TOPICS.send_commands)
        if len({c["command_id"] for c in found}) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


def visits(found: list[Any]) -> dict[tuple[str, str], set[str]]:
    ids: dict[tuple[str, str], set[str]] = {}
    for command in found:
        ids.setdefault((command["user_id"], command["step"]), set()).add(command["command_id"])
    return ids


async def definitions(api: HttpClient) -> tuple[int, int, int]:
    counts = []
    for kind in ("segments", "presets", "journeys"):
        status, answer = await api.call("GET", f"/v1/{kind}")
        assert status == 200, answer
        counts.append(len(answer[kind]))
    return counts[0], counts[1], counts[2]


async def stats(api: HttpClient) -> dict[str, Any]:
    status, answer = await api.call("GET", f"{JOURNEY}/stats")
    assert status == 200, answer
    return dict(answer)


async def counter(api: HttpClient, name: str, expected: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        _, status = await api.call("GET", "/v1/status")
        found = int(status["counters"].get(name, 0))
        if found >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def test_a_restart_and_a_sigkill_lose_nothing_and_send_nothing_twice(
    tmp_path: Path, env: dict[str, str]
) -> None:
    first = SystemProcess(tmp_path, env).start()
    try:
        assert first.info is not None
        port = first.info.broker

        async def before() -> tuple[tuple[int, int, int], set[str]]:
            api = first.http
            await define_workspace(api)
            assert (await api.call("POST", "/v1/tags", installed_users(USERS)))[0] == 200
            await tick(first, "2026-12-10T07:00:00Z")
            assert (await api.call("POST", "/v1/journeys", seed_journeys()))[0] == 200
            assert (await api.call("POST", f"{JOURNEY}/launch"))[0] == 200
            await tick(first, "2026-12-10T08:00:00Z")
            sent = await commands(first, len(USERS))
            assert len(visits(sent)) == len(USERS)
            opens = [
                {
                    "command_id": c["command_id"],
                    "user_id": c["user_id"],
                    "status": "opened",
                    "channel": "email",
                    "timestamp": "2026-12-12T10:00:00Z",
                }
                for c in sent
                if c["user_id"] not in ODD
            ]
            assert (await api.call("POST", "/v1/feedback", opens))[0] == 200
            assert await counter(api, "feedback.valid", len(opens)) == len(opens)
            defined = await definitions(api)
            assert all(defined), defined
            return defined, {c["command_id"] for c in sent}

        defined, first_ids = asyncio.run(before())
    finally:
        assert first.stop() is not None  # SIGINT, as Ctrl-C

    # A clean restart: everything is there, on the same broker port.
    with SystemProcess(tmp_path, env) as second:
        assert second.info is not None
        assert second.info.broker == port

        async def after_the_restart() -> set[str]:
            api = second.http
            assert await definitions(api) == defined
            found = await every_item(port, TOPICS.send_commands)
            assert {c["command_id"] for c in found} == first_ids
            # Not yet 5 days: the users still wait, nobody gets the second email.
            await tick(second, "2026-12-15T07:59:00Z")
            await asyncio.sleep(3)
            early = await every_item(port, TOPICS.send_commands)
            assert {c["command_id"] for c in early} == first_ids
            # The split fires on time: the odd users (no open) get the second email.
            await tick(second, "2026-12-15T08:00:01Z")
            found = await commands(second, len(USERS) + len(ODD))
            ids = visits(found)
            assert {user for user, step in ids if step == "second-email"} == ODD
            assert all(len(one) == 1 for one in ids.values())
            return {c["command_id"] for c in found}

        after_ids = asyncio.run(after_the_restart())
        kill_everything(second)

    # SIGKILL of worker, broker and object store at once: nothing lost, nothing twice.
    with SystemProcess(tmp_path, env) as third:
        assert third.info is not None
        assert third.info.broker == port

        async def after_the_kill() -> None:
            api = third.http
            assert await definitions(api) == defined
            await tick(third, "2026-12-16T08:00:00Z")
            await asyncio.sleep(3)
            found = await every_item(port, TOPICS.send_commands)
            ids = visits(found)
            assert {c["command_id"] for c in found} == after_ids
            assert len(ids) == len(USERS) + len(ODD)
            assert all(len(one) == 1 for one in ids.values())
            journey = (await stats(api))["journey"]
            assert journey["entries"] == len(USERS)
            assert journey["sent"] == len(USERS) + len(ODD)

        asyncio.run(after_the_kill())


def test_a_broker_killed_under_the_system_stops_it_and_a_restart_loses_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    system = SystemProcess(tmp_path, env).start()
    try:

        async def define() -> tuple[int, int, int]:
            await define_workspace(system.http)
            assert (await system.http.call("POST", "/v1/journeys", seed_journeys()))[0] == 200
            return await definitions(system.http)

        defined = asyncio.run(define())
        assert system.process is not None
        [broker] = [pid for pid in descendants(system.process.pid) if _name(pid) == "tansu"]
        os.kill(broker, signal.SIGKILL)
        # The system notices and stops, with the reason in its log.
        system.process.wait(timeout=60)
        reason = "the embedded broker (tansu) exited with code -9; stopping"
        assert reason in system.log_path.read_text(errors="replace")
    finally:
        system.stop()
    with SystemProcess(tmp_path, env) as again:
        assert asyncio.run(definitions(again.http)) == defined


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
