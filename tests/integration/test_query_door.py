"""The analysts' query door against a running system: nothing outside the database is
read or written, a refused statement never stops the projection writer, and queries
have limits (issue: hostile requests on /v1/query)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.system import HttpClient
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

KEY = "query-door-key-0123456789"
TIMEOUT = 8  # REACH_QUERY_TIMEOUT_SECONDS of this system
SLOW_SQL = "SELECT sum(sipHash64(number)) FROM numbers(10000000000)"  # minutes of work


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemProcess]:
    folder: Path = tmp_path_factory.mktemp("query-door")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        "REACH_API_KEYS": f"{KEY}:admin",
        "REACH_API_KEY": KEY,
        "REACH_QUERY_TIMEOUT_SECONDS": str(TIMEOUT),
        "REACH_QUERY_MAX_RESULT_ROWS": "10000",
        "REACH_QUERY_CONCURRENCY": "1",
    }
    with SystemProcess(folder, env) as running:
        yield running


def event(user: str, ms: int) -> dict[str, Any]:
    return {"user_id": user, "name": "DoorTest", "timestamp": ms, "attributes": {}}


async def refused(api: HttpClient, sql: str) -> str:
    status, body = await api.call("POST", "/v1/query", {"sql": sql})
    assert status == 400, (status, body)
    return str(body["error"])


async def projected(api: HttpClient, user: str, timeout: float = 30) -> float:
    """Seconds until an event of ``user`` sent now is in ClickHouse."""
    start = time.monotonic()
    assert (await api.call("POST", "/v1/events", [event(user, 1_700_000_000_000)]))[0] == 200
    sql = f"SELECT count() FROM events WHERE user_id = '{user}'"
    while time.monotonic() - start < timeout:
        _, rows = await api.query(sql)
        if int(rows[0][0]) >= 1:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"the event of {user} was not projected within {timeout}s")


def test_file_function_cannot_read_files(system: SystemProcess) -> None:
    async def scenario() -> None:
        api = system.http
        error = await refused(api, "SELECT extract(file('/proc/self/environ'), 'REACH_([^=]*)')")
        assert "file()" in error
        assert "file()" in await refused(api, "SELECT * FROM file('/etc/passwd', 'LineAsString')")

    asyncio.run(scenario())


def test_into_outfile_cannot_write_files(system: SystemProcess, tmp_path: Path) -> None:
    target = tmp_path / "zz.pth"

    async def scenario() -> None:
        for tail in ("", " TRUNCATE", " APPEND"):
            error = await refused(
                system.http, f"SELECT 'import os' AS x INTO OUTFILE '{target}'{tail}"
            )
            assert "INTO OUTFILE" in error

    asyncio.run(scenario())
    assert not target.exists()


def test_a_refused_insert_does_not_stop_projection_writes(system: SystemProcess) -> None:
    async def scenario() -> None:
        api = system.http
        await refused(api, "INSERT INTO events (event_id) VALUES ('x')")
        await refused(api, "SELECT 1 SETTINGS readonly = 0")
        assert await projected(api, "after-insert") < 30

    asyncio.run(scenario())


def test_a_runaway_query_is_stopped_in_bounded_time_and_writes_go_on(
    system: SystemProcess,
) -> None:
    async def projected_events(api: HttpClient) -> int:
        status, body = await api.call("GET", "/v1/status")
        assert status == 200, body
        return int(body["projected"].get("events", 0))

    async def scenario() -> None:
        api = system.http
        before = await projected_events(api)
        start = time.monotonic()
        slow = asyncio.ensure_future(api.call("POST", "/v1/query", {"sql": SLOW_SQL}))
        await asyncio.sleep(1)
        assert not slow.done()
        # The slow query holds the only query slot; projection writes do not wait on it.
        assert (await api.call("POST", "/v1/events", [event("during-slow", 1_700_000_000_000)]))[
            0
        ] == 200
        while await projected_events(api) <= before:
            assert not slow.done(), "the event was projected only after the slow query"
            await asyncio.sleep(0.1)
        assert not slow.done()
        status, body = await slow
        elapsed = time.monotonic() - start
        assert status in (400, 200), body
        assert "Timeout" in body.get("error", ""), body
        assert elapsed < TIMEOUT + 10, elapsed
        assert await projected(api, "during-slow") < 30

    asyncio.run(scenario())


def test_a_large_result_is_refused(system: SystemProcess) -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeError, match=r"(?i)limit for result"):
            await system.http.query("SELECT number FROM numbers(1000000)")
        _, rows = await system.http.query("SELECT number FROM numbers(5000)")
        assert len(rows) == 5000

    asyncio.run(scenario())


def test_a_query_whose_client_left_is_cancelled(system: SystemProcess) -> None:
    assert system.info is not None
    url = system.info.http

    async def scenario() -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            with pytest.raises(TimeoutError):
                async with session.post(
                    url + "/v1/query",
                    json={"sql": SLOW_SQL},
                    timeout=aiohttp.ClientTimeout(total=1),
                ) as response:
                    await response.read()
        # One query slot: the next query runs only once the first one stopped.
        start = time.monotonic()
        _, rows = await system.http.query("SELECT 1")
        assert rows == [[1]]
        assert time.monotonic() - start < TIMEOUT - 3

    asyncio.run(scenario())


def test_analysts_can_list_their_tables(system: SystemProcess) -> None:
    async def scenario() -> None:
        _, rows = await system.http.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
        )
        assert ["events"] in rows
        assert "system.users" in await refused(system.http, "SELECT * FROM system.users")

    asyncio.run(scenario())


def test_reach_query_offline_goes_through_the_same_door(tmp_path: Path) -> None:
    env = {**os.environ, "REACH_DATA_DIR": str(tmp_path), "REACH_QUERY_MAX_RESULT_ROWS": "100"}
    env.pop("REACH_API_KEY", None)

    def reach_query(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "query", "--json", sql],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # A store to query (reach query refuses to create an empty one).
    create = "from projections.clickhouse import connect; import sys; connect(sys.argv[1], 'reach')"
    subprocess.run(
        [sys.executable, "-c", create, f"chdb://{tmp_path / 'clickhouse'}"],
        check=True,
        timeout=120,
        capture_output=True,
    )
    done = reach_query("SELECT file('/etc/passwd') AS x")
    assert done.returncode != 0
    assert "function file() reaches outside the database" in done.stderr
    target = tmp_path / "out.txt"
    done = reach_query(f"SELECT 1 INTO OUTFILE '{target}'")
    assert done.returncode != 0
    assert "INTO OUTFILE" in done.stderr
    assert not target.exists()
    done = reach_query("SELECT number FROM numbers(1000)")
    assert done.returncode != 0
    assert "Limit for result exceeded" in done.stderr
    done = reach_query("SELECT count() AS n FROM events")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"n":0}'
