"""The checkpoint's cut in the segment runtime: outputs acknowledged, then the state that
counts them, then the input offsets. A crash at any point replays what is not in the
flushed state, so no output is lost; these tests crash at the points where one was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.segments.agent import SegmentRuntime
from schemas.tags import TagUpdate
from streams.state import CoalescingTable, Lease, MemoryChangelog, MemoryStore
from tests.agents.conftest import Worker
from tests.agents.test_journey_agent import ADDRESSES
from tests.agents.test_segment_agent import definition

NOW = datetime(2026, 11, 1, 10, tzinfo=UTC)


class SlowOutputs:
    """A producer whose ``send`` can be held (batch full, metadata missing) and whose
    acknowledgements come when the test says."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, int | None, list[dict[str, Any]]]] = []
        self.acked: list[tuple[str, int | None, list[dict[str, Any]]]] = []
        self.send_open = asyncio.Event()
        self.send_open.set()
        self.in_send = asyncio.Event()
        self.auto_ack = True
        self._unacked: list[tuple[asyncio.Future[None], Any]] = []

    async def send(self, topic: str, value: bytes, partition: int | None = None) -> Any:
        self.in_send.set()
        await self.send_open.wait()
        record = (topic, partition, orjson.loads(value))
        self.handed.append(record)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            self.acked.append(record)
            done.set_result(None)
        else:
            self._unacked.append((done, record))
        return done

    def ack_all(self) -> None:
        for done, record in self._unacked:
            self.acked.append(record)
            done.set_result(None)
        self._unacked.clear()

    async def stop(self) -> None:
        return None


def portugal(user: str) -> TagUpdate:
    return TagUpdate(user_id=user, op="set", tags={"Country": "PT", **ADDRESSES}, timestamp=NOW)


def at(_: Any) -> datetime:
    return NOW


async def started(worker: Worker, outputs: Any) -> SegmentRuntime:
    runtime: SegmentRuntime = worker.system.segments
    runtime._producer = outputs
    await runtime.table.start()
    partitions = set(range(worker.engine.settings.partitions))
    await runtime.table.recover(partitions)
    segments = {"portugal": definition("portugal", 'T("Country", eq, "PT")')}
    await runtime.load(segments, {}, NOW)
    await runtime.on_recovered(partitions)
    return runtime


def on_changelog(worker: Worker, changelog: MemoryChangelog) -> None:
    """The worker's state table on ``changelog`` (what a crashed worker left there)."""
    runtime: SegmentRuntime = worker.system.segments
    runtime.table = CoalescingTable(changelog, MemoryStore())
    worker.engine.checkpoint.before_ack[:] = [runtime.flush]


def copy_of(changelog: MemoryChangelog) -> MemoryChangelog:
    """What is durable at the instant of a crash."""
    durable = MemoryChangelog(changelog.partitions, changelog.topic)
    durable.logs = [list(log) for log in changelog.logs]
    return durable


def memberships(outputs: SlowOutputs, topic: str, acked: bool = True) -> list[str]:
    records = outputs.acked if acked else outputs.handed
    return [item["user_id"] for name, _, items in records if name == topic for item in items]


async def test_a_flush_while_outputs_wait_for_the_producer_loses_nothing(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    changelog = MemoryChangelog(worker.engine.settings.partitions)
    on_changelog(worker, changelog)
    outputs = SlowOutputs()
    runtime = await started(worker, outputs)
    topic = worker.engine.topics.memberships

    # The producer's send suspends (its batch is full) while the checkpoint commits.
    outputs.send_open.clear()
    outputs.in_send.clear()
    applying = asyncio.create_task(runtime.apply(0, 5, "t", [portugal("u1")], at))
    await asyncio.wait_for(outputs.in_send.wait(), 5)
    committing = asyncio.create_task(worker.engine.checkpoint.commit())
    for _ in range(20):
        await asyncio.sleep(0)
    durable = copy_of(changelog)  # the worker is killed here
    applying.cancel()
    committing.cancel()
    await asyncio.gather(applying, committing, return_exceptions=True)
    assert memberships(outputs, topic) == []

    # The restart replays the uncommitted input: its membership record goes out.
    replay = make_worker(segments=True, clock="simulated")
    on_changelog(replay, durable)
    again = SlowOutputs()
    runtime = await started(replay, again)
    await runtime.apply(0, 5, "t", [portugal("u1")], at)
    assert memberships(again, topic) == ["u1"]


async def test_the_cut_flushes_only_state_whose_outputs_are_acknowledged(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    changelog = MemoryChangelog(worker.engine.settings.partitions)
    on_changelog(worker, changelog)
    outputs = SlowOutputs()
    runtime = await started(worker, outputs)
    topic = worker.engine.topics.memberships
    outputs.auto_ack = False

    await runtime.apply(0, 1, "t", [portugal("u1")], at)  # handed, not acknowledged
    committing = asyncio.create_task(worker.engine.checkpoint.commit())
    for _ in range(5):
        await asyncio.sleep(0)
    # While the cut waits for u1's acknowledgement, u2 changes; its output is handed
    # after the cut was taken and is never acknowledged.
    await runtime.apply(0, 2, "t", [portugal("u2")], at)
    pending = [record for record in outputs.handed if record not in outputs.acked]
    # Each user's membership change and profile, u1's first.
    assert [(name, items[0]["user_id"]) for name, _, items in pending] == [
        (topic, "u1"),
        (worker.engine.topics.profiles, "u1"),
        (topic, "u2"),
        (worker.engine.topics.profiles, "u2"),
    ]
    outputs._unacked, later = outputs._unacked[:2], outputs._unacked[2:]
    outputs.ack_all()
    await asyncio.wait_for(committing, 5)
    durable = copy_of(changelog)  # killed: u2's output was never acknowledged

    replay = make_worker(segments=True, clock="simulated")
    on_changelog(replay, durable)
    again = SlowOutputs()
    runtime = await started(replay, again)
    assert runtime.table.get(0, "u1") is not None
    assert runtime.table.get(0, "u2") is None  # not flushed: its input replays
    await runtime.apply(0, 1, "t", [portugal("u1")], at)
    await runtime.apply(0, 2, "t", [portugal("u2")], at)
    assert memberships(again, topic) == ["u2"]
    for done, _ in later:
        done.cancel()


class Held:
    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


async def test_a_worker_paused_past_its_session_timeout_writes_nothing_more(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    changelog = MemoryChangelog(worker.engine.settings.partitions)
    on_changelog(worker, changelog)
    outputs = SlowOutputs()
    runtime = await started(worker, outputs)
    topic = worker.engine.topics.memberships
    instant = [0.0]
    runtime.lease = Lease(10.0, lambda: instant[0])
    runtime.lease.renew()

    await runtime.apply(0, 1, "t", [portugal("u1")], at)
    instant[0] += 30.0  # SIGSTOP ... SIGCONT: the group gave the partitions away
    await runtime.apply(0, 2, "t", [portugal("u2")], at)
    record = Held()
    worker.engine.checkpoint.hold(record)
    written = [len(log) for log in changelog.logs]
    await asyncio.wait_for(worker.engine.checkpoint.commit(), 5)

    assert memberships(outputs, topic) == ["u1"]  # u2's output is not produced
    assert [len(log) for log in changelog.logs] == written  # nor any state
    assert not record.acked  # its input replays at the new owner
    runtime.lease.close()
