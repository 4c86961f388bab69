"""Forgetting a user: a forget record on the tags topic, in the user's partition,
deletes their state in the segment runtime and their rows in ClickHouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from schemas.forget import FORGET_HEADER, ForgetUser
from tests.agents.conftest import Worker
from tests.agents.test_segment_agent import ready


def forget_record(user: str) -> bytes:
    return ForgetUser(user_id=user, requested_at=0).model_dump_json().encode()


async def test_a_forget_record_deletes_the_users_state_and_rows(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated", pii_key="k" * 32)
    runtime, _ = await ready(worker)
    worker.system.projections.client = worker.clickhouse  # type: ignore[assignment]
    tags = [
        {"user_id": user, "tags": {"Country": "PT", "Email": f"{user}@x.io"}, "timestamp": 0}
        for user in ("gone", "kept")
    ]
    async with drive(worker, "intake-tag_updates") as driver:
        await driver.put(orjson.dumps(tags), partition=1)
        assert runtime.member_counts() == {"portugal": 2}
        assert runtime.table.get(1, "gone") is not None
        await driver.put(
            forget_record("gone"), key=b"gone", partition=1, headers=[(FORGET_HEADER, b"1")]
        )

    assert runtime.table.get(1, "gone") is None
    assert runtime.table.get(1, "kept") is not None
    assert runtime.member_counts() == {"portugal": 1}
    # The rows that came before were written first, then deleted, table by table.
    assert [row["user_id"] for row in worker.clickhouse.rows("tag_updates")] == ["gone", "kept"]
    deleted = [parameters for _, parameters in worker.clickhouse.commands]
    assert {p["table"] for p in deleted} >= {"events", "tag_updates", "segment_memberships"}
    assert all(p["user_id"] == "gone" for p in deleted)
    assert worker.dead_letters() == []
    assert worker.engine.counters["tag_updates.forgotten"] == 1
    assert worker.engine.counters["tag_updates.valid"] == 2  # the forget record is no update


async def test_an_invalid_forget_record_is_dead_lettered(
    worker: Worker, drive: Callable[..., Any]
) -> None:
    worker.system.projections.client = worker.clickhouse  # type: ignore[assignment]
    async with drive(worker, "intake-tag_updates") as driver:
        await driver.put(b'{"user_id": ""}', headers=[(FORGET_HEADER, b"1")])
    [letter] = worker.dead_letters()
    assert letter.value == b'{"user_id": ""}'
    assert worker.clickhouse.commands == []
