"""The segment wiring in Faust's test context: the real intake agent feeds the segment
runtime, which keeps state in the coalescing table and emits membership records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agents.segments import outputs as outputs_module
from agents.segments.agent import SegmentRuntime
from engine import codec
from schemas.events import Event
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from tests.agents.conftest import Worker

NOW = datetime(2026, 11, 1, 10, tzinfo=UTC)


class Outputs:
    """Stands in for the runtime's aiokafka producer; keeps what it sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, list[dict[str, Any]]]] = []

    async def send(self, topic: str, value: bytes, partition: int | None = None) -> Any:
        self.sent.append((topic, partition, orjson.loads(value)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def stop(self) -> None:
        return None


def definition(segment_id: str, expression: str) -> SegmentDefinition:
    return SegmentDefinition(id=segment_id, name=segment_id, condition=parse(expression), version=1)


async def ready(worker: Worker) -> tuple[SegmentRuntime, Outputs]:
    runtime: SegmentRuntime = worker.system.segments
    outputs = Outputs()
    runtime._producer = outputs  # type: ignore[assignment]
    await runtime.table.start()
    partitions = set(range(worker.engine.settings.partitions))
    await runtime.table.recover(partitions)
    definitions = {
        "buyers": definition("buyers", 'E("InAppPurchase", count >= 2, last 30 days)'),
        "portugal": definition("portugal", 'T("Country", eq, "PT")'),
    }
    await runtime.load(definitions, {}, NOW)
    await runtime.on_recovered(partitions)
    await runtime.flush()  # the partitions' markers
    return runtime, outputs


def event(user: str, name: str, at: str) -> dict[str, Any]:
    return {"user_id": user, "name": name, "timestamp": at}


async def test_events_make_members_and_state_is_flushed_before_acks(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await ready(worker)
    purchases = [
        event("u1", "InAppPurchase", "2026-11-01T10:00:00Z"),
        event("u1", "InAppPurchase", "2026-11-02T10:00:00Z"),
        event("u2", "InAppPurchase", "2026-11-02T10:00:00Z"),
    ]
    async with drive(worker, "intake-events") as driver:
        await driver.put(orjson.dumps(purchases), partition=1)

    profiles = worker.engine.topics.profiles
    [(topic, partition, changes)] = [sent for sent in outputs.sent if sent[0] != profiles]
    assert (topic, partition) == (worker.engine.topics.memberships, 1)
    # Each user's first event fills their First Install: their profile changes.
    [(_, profile_partition, records)] = [sent for sent in outputs.sent if sent[0] == profiles]
    assert profile_partition == 1
    assert [(r["user_id"], r["changed"]) for r in records] == [
        ("u1", ["First Install"]),
        ("u2", ["First Install"]),
    ]
    assert [(c["segment_id"], c["user_id"], c["change"], c["at"]) for c in changes] == [
        ("buyers", "u1", "entered", "2026-11-02T10:00:00Z")
    ]
    assert runtime.table.dirty_count == 2  # u1 and u2, not yet in the changelog
    await asyncio.wait_for(worker.engine.checkpoint.commit(), 5)
    assert runtime.table.dirty_count == 0
    entry = runtime.table.get(1, "u1")
    assert entry is not None
    assert codec.decode(entry.value).members == {"buyers": 1}


async def test_a_replayed_record_changes_nothing(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await ready(worker)
    record = orjson.dumps([event("u1", "InAppPurchase", "2026-11-01T10:00:00Z")])
    async with drive(worker, "intake-events") as driver:
        await driver.put(record, partition=0)
    before = runtime.table.get(0, "u1")
    assert before is not None
    applied = codec.decode(before.value).offsets["e"]
    outputs.sent.clear()  # the first record's (u1's profile)
    # A record at an offset already applied (a replay after a crash): skipped.
    item = Event.model_validate(event("u1", "InAppPurchase", "2026-11-03T10:00:00Z"))
    await runtime.apply(0, applied, "e", [item], lambda item: NOW)
    after = runtime.table.get(0, "u1")
    assert after is not None
    assert after.value == before.value
    assert outputs.sent == []


async def test_member_counts_follow_the_partitions_held(
    make_worker: Callable[..., Worker],
) -> None:
    # A rebalance releases every partition and recovers those assigned: the counts in
    # the status must then be those of the partitions held, not grow with each move.
    worker = make_worker(segments=True, clock="simulated")
    runtime, _ = await ready(worker)
    for partition, users in ((0, ["u1", "u2"]), (1, ["u3"])):
        updates = [
            TagUpdate(user_id=user, op="set", tags={"Country": "PT"}, timestamp=NOW)
            for user in users
        ]
        await runtime.apply(partition, 0, "t", updates, lambda item: NOW)
    assert runtime.status()["members"] == {"portugal": 3}
    runtime.on_released({0, 1})
    await runtime.table.release({0})
    await runtime.on_recovered({1})
    assert runtime.status()["members"] == {"portugal": 1}
    runtime.on_released({1})
    await runtime.on_recovered({1})
    assert runtime.status()["members"] == {"portugal": 1}


async def test_an_event_stamped_in_the_future_does_not_date_changes_in_the_future(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await ready(worker)
    opened = definition("opened", 'E("Open", count >= 1, last 1 hours)')
    await runtime.redefine({**runtime.definitions, "opened": opened}, {"opened"}, NOW)
    half_hour = timedelta(minutes=30)
    for name, at in (("Open", NOW - half_hour), ("Ping", NOW + timedelta(days=1))):
        item = Event.model_validate(event("u1", name, at.isoformat()))
        await runtime.apply(0, 1 if name == "Open" else 2, "e", [item], lambda item: NOW)
    outputs.sent.clear()
    await runtime.fire_timers(0, NOW + timedelta(hours=2))
    changes = [c for _, _, items in outputs.sent for c in items if c["segment_id"] == "opened"]
    # The state holds an input stamped a day ahead, so the tick is not evaluated
    # before it... nor after now: the change is dated by the tick, not a day ahead.
    assert [(c["change"], c["at"]) for c in changes] == [("exited", "2026-11-01T12:00:00Z")]


async def test_a_definition_over_many_users_sends_records_of_bounded_size(
    make_worker: Callable[..., Worker], monkeypatch: Any
) -> None:
    # A segment applied over a partition's users makes one change per user at once:
    # sent as one record, 50,000 users made a record over the producer's limit and the
    # send failed. Outputs go in records of at most OUTPUT_RECORD_BYTES.
    limit = 16 * 1024
    monkeypatch.setattr(outputs_module, "OUTPUT_RECORD_BYTES", limit)
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await ready(worker)
    users = [f"user-{n:05d}" for n in range(1500)]
    updates = [
        TagUpdate(user_id=user, op="set", tags={"Plan": "gold"}, timestamp=NOW) for user in users
    ]
    await runtime.apply(0, 0, "t", updates, lambda item: NOW)
    before = len(outputs.sent)
    gold = definition("gold", 'T("Plan", eq, "gold")')
    definitions = {**runtime.definitions, "gold": gold}
    await runtime.redefine(definitions, {"gold"}, NOW)
    records = [items for _, _, items in outputs.sent[before:]]
    assert len(records) > 1
    sizes = [len(orjson.dumps(items, option=orjson.OPT_UTC_Z)) for items in records]
    assert max(sizes) <= limit
    entered = sorted(item["user_id"] for items in records for item in items)
    assert entered == users


async def test_a_preview_counts_users_not_the_partitions_markers(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, _ = await ready(worker)  # every partition holds its markers now
    updates = [
        TagUpdate(user_id=user, op="set", tags={"Country": country}, timestamp=NOW)
        for user, country in (("u1", "PT"), ("u2", "FR"))
    ]
    await runtime.apply(0, 0, "t", updates, lambda item: NOW)
    members, users, sample = await runtime.preview(parse('T("Country", eq, "PT")'), 10, NOW)
    assert (members, users, sample) == (1, 2, ["u1"])
