"""Personal data in a running system: owner-only files, addresses hashed in
ClickHouse, and users forgotten through the CLI and the HTTP API."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from client.system import HttpClient
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

USERS = ("pd-gone", "pd-kept", "pd-http")


async def _count(api: HttpClient, table: str, user: str) -> int:
    _, rows = await api.query(
        f"SELECT count() FROM {table} FINAL WHERE user_id = {{user:String}}", {"user": user}
    )
    return int(rows[0][0])


async def _until(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def loaded(system: SystemProcess) -> SystemProcess:
    api = system.http

    async def load() -> None:
        tags = [
            {"user_id": u, "tags": {"Email": f"{u}@example.com", "Plan": "gold"}, "timestamp": 1}
            for u in USERS
        ]
        events = [{"user_id": u, "name": "PdSeen", "timestamp": 2} for u in USERS]
        assert (await api.call("POST", "/v1/tags", tags))[0] == 200
        assert (await api.call("POST", "/v1/events", events))[0] == 200

        async def projected() -> bool:
            tables = ("tag_updates", "events", "user_profiles")
            counts = [await _count(api, t, u) for t in tables for u in USERS]
            return all(count == 1 for count in counts)

        await _until(projected)

    asyncio.run(load())
    return system


def test_files_of_the_data_dir_are_owner_only(loaded: SystemProcess) -> None:
    loose = []
    for root, folders, files in os.walk(loaded.data_dir):
        for name in [*folders, *files]:
            path = Path(root) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if not path.is_symlink() and mode & 0o077:
                loose.append(f"{path.relative_to(loaded.data_dir)} {mode:o}")
    assert loose == []
    assert (loaded.data_dir / "pii.key").exists()


def test_addresses_are_hashed_in_clickhouse(loaded: SystemProcess) -> None:
    async def read() -> list[list[Any]]:
        _, rows = await loaded.http.query(
            "SELECT JSONExtractString(tags, 'Email'), JSONExtractString(tags, 'Plan') "
            "FROM tag_updates FINAL WHERE user_id = 'pd-kept'"
        )
        return rows

    [(email, plan)] = asyncio.run(read())
    assert email.startswith("hmac-sha256:")
    assert "example.com" not in email
    assert plan == "gold"


def test_profiles_keep_addresses_apart_and_hashed(loaded: SystemProcess) -> None:
    async def read() -> tuple[list[list[Any]], list[list[Any]]]:
        _, profile = await loaded.http.query(
            "SELECT pii, tags, reachable_email, reachable_sms FROM user_profiles FINAL "
            "WHERE user_id = 'pd-kept'"
        )
        _, changes = await loaded.http.query(
            "SELECT tag, value FROM user_profile_changes FINAL "
            "WHERE user_id = 'pd-kept' AND tag IN ('Email', 'Plan') ORDER BY tag"
        )
        return profile, changes

    profile, changes = asyncio.run(read())
    [(pii, tags, reachable_email, reachable_sms)] = profile
    assert list(pii) == ["Email"]
    assert pii["Email"].startswith("hmac-sha256:")
    assert tags == {"Plan": "gold"}
    assert (reachable_email, reachable_sms) == (True, False)
    assert [list(change) for change in changes] == [["Email", pii["Email"]], ["Plan", "gold"]]


def test_reach_users_forget_deletes_state_and_rows(loaded: SystemProcess) -> None:
    api = loaded.http
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "users", "forget", "pd-gone"],
        env=loaded.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "forgetting pd-gone" in done.stdout

    async def scenario() -> None:
        async def gone() -> bool:
            tables = ("tag_updates", "events", "user_profiles", "user_profile_changes")
            return all([await _count(api, t, "pd-gone") == 0 for t in tables])

        await _until(gone)
        assert await _count(api, "tag_updates", "pd-kept") == 1
        assert await _count(api, "events", "pd-kept") == 1
        assert await _count(api, "user_profiles", "pd-kept") == 1
        # The state went too: the user is in no preview of the tags they had.
        status, body = await api.call(
            "POST", "/v1/segments/preview", {"expression": 'T("Plan", eq, "gold")'}
        )
        assert status == 200
        assert "pd-gone" not in body["sample"]
        assert body["members"] == len(USERS) - 1

    asyncio.run(scenario())


def test_delete_users_needs_the_admin_scope_and_forgets(loaded: SystemProcess) -> None:
    assert loaded.info is not None
    ingest_only = HttpClient(loaded.info.http, "ingest-only-key-012345")

    async def scenario() -> None:
        status, _ = await ingest_only.call("DELETE", "/v1/users/pd-http")
        assert status == 401
        status, body = await loaded.http.call("DELETE", "/v1/users/" + "x" * 300)
        assert status == 400
        status, body = await loaded.http.call("DELETE", "/v1/users/pd-http")
        assert status == 202
        assert body["user_id"] == "pd-http"

        async def gone() -> bool:
            return all([await _count(loaded.http, t, "pd-http") == 0 for t in ("tag_updates",)])

        await _until(gone)

    asyncio.run(scenario())
