"""Checkpoint: input records are acknowledged only after their rows are written.

The sink is the real BatchingSink; its ClickHouse client is a fake with the one
method the sink calls. That is enough here: the checkpoint's contract is about the
order of inserts and acks, not about what ClickHouse does with the rows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from projections import rows
from projections.sink import BatchingSink
from streams.checkpoint import Checkpoint, CheckpointService

A = rows.Table("a", ("id", "value"))
B = rows.Table("b", ("id",))


class FakeClient:
    """Records inserts (as rows) in a timeline shared with the fake events."""

    def __init__(self, timeline: list[str], failures: int = 0) -> None:
        self.timeline = timeline
        self.failures = failures
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.columns: dict[str, list[str]] = {}
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: Sequence[str] = (),
        column_oriented: bool = False,
        **_: Any,
    ) -> None:
        self.started.set()
        self.release.wait(5)
        if self.failures:
            self.failures -= 1
            self.timeline.append(f"failed {table}")
            raise ConnectionError("ClickHouse is away")
        table_rows = list(zip(*data, strict=True)) if column_oriented else [tuple(r) for r in data]
        self.rows.setdefault(table, []).extend(table_rows)
        self.columns[table] = list(column_names)
        self.timeline.append(f"insert {table} {len(table_rows)}")


class FakeEvent:
    def __init__(self, name: str, timeline: list[str]) -> None:
        self.name = name
        self.timeline = timeline
        self.acks = 0

    def ack(self) -> bool:
        self.acks += 1
        self.timeline.append(f"ack {self.name}")
        return True


@pytest.fixture
def timeline() -> list[str]:
    return []


@pytest.fixture
def client(timeline: list[str]) -> FakeClient:
    return FakeClient(timeline)


@pytest.fixture
def sink(client: FakeClient) -> BatchingSink:
    sink = BatchingSink(max_backoff=0.1)
    sink.attach(client)  # type: ignore[arg-type]
    return sink


async def wait_for(condition: Any, timeout: float = 5) -> None:
    """Poll: the conditions change in the sink's worker thread, not on the loop."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_commit_with_nothing_held_writes_and_acks_nothing(
    sink: BatchingSink, client: FakeClient, timeline: list[str]
) -> None:
    checkpoint = Checkpoint(sink, max_rows=10)
    await checkpoint.commit()
    assert timeline == []
    assert checkpoint.acked == 0


def test_due_once_enough_rows_are_pending(sink: BatchingSink) -> None:
    checkpoint = Checkpoint(sink, max_rows=3)
    assert not checkpoint.due
    sink.add(A, [(1, "x"), (2, "y")])
    assert not checkpoint.due
    sink.add(B, [(3,)])
    assert checkpoint.due


async def test_keeping_up_asks_for_a_commit_and_waits_only_far_beyond(
    sink: BatchingSink, client: FakeClient, timeline: list[str]
) -> None:
    checkpoint = Checkpoint(sink, max_rows=2)
    event = FakeEvent("e", timeline)
    checkpoint.hold(event)
    sink.add(A, [(1, "x")])
    await checkpoint.keep_up()
    assert not checkpoint.wanted.is_set()
    sink.add(A, [(2, "y")])
    await checkpoint.keep_up()
    assert checkpoint.wanted.is_set()  # asked, not done: nothing written yet
    assert (timeline, event.acks) == ([], 0)
    sink.add(A, [(n, "z") for n in range(3, 9)])  # 8 rows: four times the limit
    await checkpoint.keep_up()
    assert timeline == ["insert a 8", "ack e"]  # done here: the agent's back-pressure
    assert not checkpoint.wanted.is_set()


async def test_commit_writes_every_table_then_acks_every_held_record(
    sink: BatchingSink, client: FakeClient, timeline: list[str]
) -> None:
    checkpoint = Checkpoint(sink, max_rows=3)
    first, second = FakeEvent("first", timeline), FakeEvent("second", timeline)
    sink.add(A, [(1, "x"), (2, "y")])
    checkpoint.hold(first)
    sink.add(B, [(3,)])
    checkpoint.hold(second)

    await checkpoint.commit()

    assert timeline == ["insert a 2", "insert b 1", "ack first", "ack second"]
    assert client.rows == {"a": [(1, "x"), (2, "y")], "b": [(3,)]}
    assert client.columns == {"a": ["id", "value"], "b": ["id"]}
    assert checkpoint.acked == 2
    assert not checkpoint.due
    assert sink.pending == 0
    assert dict(sink.written) == {"a": 2, "b": 1}

    await checkpoint.commit()  # nothing new: nothing written, nobody acked twice
    assert (first.acks, second.acks) == (1, 1)
    assert len(timeline) == 4


async def test_failed_insert_is_retried_and_nothing_is_acked_before_it_succeeds(
    timeline: list[str],
) -> None:
    client = FakeClient(timeline, failures=2)
    sink = BatchingSink(max_backoff=0.1)
    sink.attach(client)  # type: ignore[arg-type]
    checkpoint = Checkpoint(sink, max_rows=1)
    event = FakeEvent("e", timeline)
    sink.add(A, [(1, "x")])
    checkpoint.hold(event)

    commit = asyncio.create_task(checkpoint.commit())
    await wait_for(lambda: "failed a" in timeline)
    assert event.acks == 0  # ClickHouse refused the rows: the record stays unacked
    await asyncio.wait_for(commit, 5)

    assert timeline == ["failed a", "failed a", "insert a 1", "ack e"]
    assert client.rows == {"a": [(1, "x")]}  # written once, nothing lost
    assert checkpoint.acked == 1


async def test_records_held_during_a_commit_wait_for_the_next_one(
    sink: BatchingSink, client: FakeClient, timeline: list[str]
) -> None:
    checkpoint = Checkpoint(sink, max_rows=1)
    early, late = FakeEvent("early", timeline), FakeEvent("late", timeline)
    sink.add(A, [(1, "early")])
    checkpoint.hold(early)
    client.release.clear()

    commit = asyncio.create_task(checkpoint.commit())
    await wait_for(client.started.is_set)
    # While the first insert is in flight, another record is processed.
    sink.add(A, [(2, "late")])
    checkpoint.hold(late)
    client.release.set()
    await asyncio.wait_for(commit, 5)

    assert (early.acks, late.acks) == (1, 0)  # late's row is not written yet
    assert client.rows == {"a": [(1, "early")]}
    assert sink.pending == 1

    await checkpoint.commit()
    assert (early.acks, late.acks) == (1, 1)
    assert client.rows == {"a": [(1, "early"), (2, "late")]}
    assert timeline == ["insert a 1", "ack early", "insert a 1", "ack late"]


async def test_concurrent_commits_ack_each_record_once_after_its_rows(
    sink: BatchingSink, client: FakeClient, timeline: list[str]
) -> None:
    checkpoint = Checkpoint(sink, max_rows=1)
    events = [FakeEvent(str(i), timeline) for i in range(6)]
    commits = []
    for i, event in enumerate(events):
        sink.add(A, [(i, "v")])
        checkpoint.hold(event)
        if i % 2:
            commits.append(asyncio.create_task(checkpoint.commit()))
    await asyncio.wait_for(asyncio.gather(*commits), 5)
    assert checkpoint.acked == 6

    assert [event.acks for event in events] == [1] * 6
    assert sorted(client.rows["a"]) == [(i, "v") for i in range(6)]
    written = 0
    for entry in timeline:  # at every ack, the acked record's row was already inserted
        if entry.startswith("insert"):
            written += int(entry.rsplit(" ", 1)[1])
        else:
            assert int(entry.removeprefix("ack ")) < written


async def test_commit_waits_for_the_clickhouse_client(timeline: list[str]) -> None:
    sink = BatchingSink()
    checkpoint = Checkpoint(sink, max_rows=1)
    event = FakeEvent("e", timeline)
    sink.add(A, [(1, "x")])
    checkpoint.hold(event)

    commit = asyncio.create_task(checkpoint.commit())
    await asyncio.sleep(0.05)
    assert event.acks == 0
    assert not commit.done()

    client = FakeClient(timeline)
    sink.attach(client)  # type: ignore[arg-type]
    await asyncio.wait_for(commit, 5)
    assert timeline == ["insert a 1", "ack e"]


async def test_the_service_commits_at_once_when_asked(
    sink: BatchingSink, client: FakeClient, timeline: list[str]
) -> None:
    checkpoint = Checkpoint(sink, max_rows=1)
    service = CheckpointService(checkpoint, interval=60)  # its timer alone: a minute
    await service.start()
    try:
        event = FakeEvent("e", timeline)
        checkpoint.hold(event)
        sink.add(A, [(1, "x")])
        await checkpoint.keep_up()
        await wait_for(lambda: event.acks == 1)
        assert timeline == ["insert a 1", "ack e"]
    finally:
        await service.stop()
