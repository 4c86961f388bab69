"""The journey-entries agent: API entries in, and what it cannot read dead-lettered
(a tombstone, a record that is not JSON, an invalid item), never a crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from schemas import DeadLetter, DeadLetterReason
from tests.agents.conftest import Worker
from tests.agents.test_segment_agent import ready


def entry(user: str) -> dict[str, Any]:
    return {"journey_id": "welcome", "user_id": user, "at": "2026-11-01T10:00:00Z"}


async def test_unreadable_entries_are_dead_lettered_and_the_rest_applied(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, _ = await ready(worker)
    applied: list[tuple[int, int, list[str]]] = []

    async def apply_entries(partition: int, offset: int, items: Any) -> None:
        applied.append((partition, offset, [item.user_id for item in items]))

    runtime.apply_entries = apply_entries  # type: ignore[method-assign]
    bad_item = {"journey_id": "welcome", "user_id": ""}
    async with drive(worker, "journey-entries") as driver:
        await driver.put(None, partition=1)
        await driver.put(b"[{", partition=1)
        await driver.put(orjson.dumps([entry("u1"), bad_item, entry("u2")]), partition=1)

    assert applied == [(1, 2, ["u1", "u2"])]
    letters = [DeadLetter.from_record(s.value, s.key, s.headers) for s in worker.dead_letters()]
    assert [(x.reason, x.source_offset, x.source_index) for x in letters] == [
        (DeadLetterReason.TOMBSTONE, 0, None),
        (DeadLetterReason.NOT_JSON, 1, None),
        (DeadLetterReason.INVALID_VALUE, 2, 1),
    ]
    assert {x.source_topic for x in letters} == {worker.engine.topics.journey_entries}
