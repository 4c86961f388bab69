"""The state layer against the embedded broker: changelog contract, crash, replay, resume.

Every test uses its own topics, so they share the session's broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from streams.broker import EmbeddedBroker
from streams.state import (
    Changelog,
    ChangelogMismatch,
    CoalescingTable,
    Entry,
    KafkaChangelog,
    MemoryChangelog,
    MemoryStore,
    PartitionNotReady,
    Record,
    RocksDBStore,
    Store,
    attach_to_faust,
    create_table,
)
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4
TIMEOUT = 10.0
StoreKind = Literal["memory", "rocksdb"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- The changelog contract: the in-process fake must behave as the Kafka topic does.


@pytest.fixture(params=["memory", "kafka"])
async def changelog(
    request: pytest.FixtureRequest, broker: EmbeddedBroker
) -> AsyncIterator[Changelog]:
    log: Changelog
    if request.param == "memory":
        log = MemoryChangelog(PARTITIONS)
    else:
        log = KafkaChangelog(broker.bootstrap, unique("contract"), PARTITIONS, timeout=TIMEOUT)
    await log.start()
    yield log
    await log.stop()


async def read_all(
    log: Changelog, starts: dict[int, int], ends: dict[int, int]
) -> tuple[dict[int, list[Record]], dict[int, int]]:
    records: dict[int, list[Record]] = {}
    reached: dict[int, int] = {}
    async with asyncio.timeout(TIMEOUT):
        async for partition, batch, next_offset in log.read(starts, ends):
            records.setdefault(partition, []).extend(batch)
            reached[partition] = next_offset
    return records, reached


async def test_changelog_appends_in_order_per_partition(changelog: Changelog) -> None:
    assert await changelog.write({0: [(b"a", b"1"), (b"b", None)], 2: [(b"c", b"3")]}) == {
        0: 2,
        2: 1,
    }
    assert await changelog.write({0: [(b"a", b"4")]}) == {0: 3}

    bounds = await changelog.bounds([0, 1, 2])
    assert bounds == {0: (0, 3), 1: (0, 0), 2: (0, 1)}
    ends = {p: end for p, (_, end) in bounds.items()}
    records, reached = await read_all(changelog, {0: 0, 1: 0, 2: 0}, ends)
    assert records == {0: [(b"a", b"1"), (b"b", None), (b"a", b"4")], 2: [(b"c", b"3")]}
    assert reached == {0: 3, 2: 1}


async def test_changelog_reads_from_a_given_offset(changelog: Changelog) -> None:
    await changelog.write({1: [(b"k%d" % n, b"%d" % n) for n in range(5)]})
    records, reached = await read_all(changelog, {1: 3}, {1: 5})
    assert records == {1: [(b"k3", b"3"), (b"k4", b"4")]}
    assert reached == {1: 5}


async def test_changelog_end_counts_every_record_of_a_large_write(changelog: Changelog) -> None:
    # Several record batches per partition; the end must count all their records
    # (tansu's ListOffsets alone reports the last batch's base offset + 1).
    value = b"x" * 300
    written = await changelog.write({3: [(b"k%d" % n, value) for n in range(4000)]})
    assert written == {3: 4000}
    assert await changelog.bounds([3]) == {3: (0, 4000)}
    records, _ = await read_all(changelog, {3: 3990}, {3: 4000})
    assert [key for key, _ in records[3]] == [b"k%d" % n for n in range(3990, 4000)]


async def test_kafka_changelog_refuses_a_topic_with_another_partition_count(
    broker: EmbeddedBroker,
) -> None:
    topic = unique("mismatch")
    await ensure_topics(broker.bootstrap, [topic], 2)
    with pytest.raises(ChangelogMismatch):
        await KafkaChangelog(broker.bootstrap, topic, PARTITIONS, timeout=TIMEOUT).start()


# --- The table over Kafka, with each store.


@dataclass
class Setup:
    """Builds table instances as successive processes would, on one changelog topic."""

    bootstrap: str
    name: str
    kind: StoreKind
    data_dir: Path

    def store(self) -> Store:
        return RocksDBStore(self.data_dir, self.name) if self.kind == "rocksdb" else MemoryStore()

    async def open(self, store: Store | None = None) -> CoalescingTable:
        changelog = KafkaChangelog(
            self.bootstrap, f"{self.name}-changelog", PARTITIONS, timeout=TIMEOUT
        )
        table = CoalescingTable(changelog, store or self.store())
        await table.start()
        return table


@pytest.fixture(params=["memory", "rocksdb"])
def setup(request: pytest.FixtureRequest, broker: EmbeddedBroker, tmp_path: Path) -> Setup:
    return Setup(broker.bootstrap, unique("users"), request.param, tmp_path)


async def test_recovery_restores_exactly_the_flushed_state(setup: Setup) -> None:
    users = 2000
    table = await setup.open()
    await table.recover(range(PARTITIONS))
    for number in range(users):
        table.put(number % PARTITIONS, f"user-{number}", {"n": number}, 10_000 + number)
    for number in range(0, users, 10):
        table.delete(number % PARTITIONS, f"user-{number}", 20_000 + number)
    assert await table.flush() == users
    for number in range(1, users, 7):  # after the flush: lost in the crash
        table.put(number % PARTITIONS, f"user-{number}", {"n": -1}, 30_000 + number)
    table.put(0, "never-flushed", {"n": -1}, 30_000)
    await table.stop()

    again = await setup.open()
    async with asyncio.timeout(TIMEOUT):
        read = await again.recover(range(PARTITIONS))
    assert read == (0 if setup.kind == "rocksdb" else users)
    for number in range(users):
        expected = None if number % 10 == 0 else Entry({"n": number}, 10_000 + number)
        assert again.get(number % PARTITIONS, f"user-{number}") == expected
    assert again.get(0, "never-flushed") is None
    await again.stop()


# A deterministic fold: a counter per user, reset (deleted) by some records.
Input = tuple[int, str, str]  # (offset, user, "inc" | "reset")


def make_inputs(per_partition: int) -> dict[int, list[Input]]:
    inputs: dict[int, list[Input]] = {}
    for partition in range(PARTITIONS):
        users = [f"user-{partition}-{n}" for n in range(7)]
        inputs[partition] = [
            (offset, users[(offset * 5 + offset // 3) % 7], "reset" if offset % 17 == 16 else "inc")
            for offset in range(per_partition)
        ]
    return inputs


def fold(table: CoalescingTable, partition: int, records: list[Input]) -> int:
    """Apply input records idempotently; return how many were skipped as already applied."""
    skipped = 0
    for offset, user, op in records:
        if not table.should_apply(partition, user, offset):
            skipped += 1
        elif op == "reset":
            table.delete(partition, user, offset)
        else:
            entry = table.get(partition, user)
            count = entry.value["count"] if entry else 0
            table.put(partition, user, {"count": count + 1}, offset)
    return skipped


def expected_state(inputs: dict[int, list[Input]]) -> dict[tuple[int, str], Entry | None]:
    state: dict[tuple[int, str], Entry | None] = {}
    for partition, records in inputs.items():
        for offset, user, op in records:
            entry = state.get((partition, user))
            count = entry.value["count"] if entry else 0
            state[(partition, user)] = (
                None if op == "reset" else Entry({"count": count + 1}, offset)
            )
    return state


async def test_replay_after_a_crash_gives_the_state_of_a_run_without_crash(setup: Setup) -> None:
    inputs = make_inputs(per_partition=300)
    table = await setup.open()
    await table.recover(range(PARTITIONS))
    committed = dict.fromkeys(range(PARTITIONS), 0)
    for start in (0, 100):  # outputs sent (none here), flush, then commit
        for partition, records in inputs.items():
            fold(table, partition, records[start : start + 100])
        await table.flush()
        committed = dict.fromkeys(range(PARTITIONS), start + 100)
    for partition, records in inputs.items():  # flushed, crash before the commit
        fold(table, partition, records[200:250])
    await table.flush()
    for partition, records in inputs.items():  # not even flushed
        fold(table, partition, records[250:280])
    await table.stop()

    again = await setup.open()
    async with asyncio.timeout(TIMEOUT):
        await again.recover(range(PARTITIONS))
    skipped = 0
    for partition, records in inputs.items():
        skipped += fold(again, partition, records[committed[partition] :])
    await again.flush()

    # The records flushed after the last commit count once, not twice.
    assert skipped > 0
    for (partition, user), entry in expected_state(inputs).items():
        assert again.get(partition, user) == entry, (partition, user)
    await again.stop()

    # And the state the replay flushed is what the next process recovers.
    third = await setup.open()
    await third.recover(range(PARTITIONS))
    for (partition, user), entry in expected_state(inputs).items():
        assert third.get(partition, user) == entry
    await third.stop()


async def test_rocksdb_resumes_from_its_persisted_offset(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    first = Setup(broker.bootstrap, unique("resume"), "rocksdb", tmp_path)
    table = await first.open()
    await table.recover(range(PARTITIONS))
    for number in range(1000):
        table.put(number % PARTITIONS, f"u{number}", number, number)
    await table.flush()
    await table.stop()

    # Meanwhile another process owned the partitions and updated 100 keys.
    other = await first.open(MemoryStore())
    assert await other.recover(range(PARTITIONS)) == 1000
    for number in range(100):
        other.put(number % PARTITIONS, f"u{number}", -number, 5000 + number)
    await other.flush()
    await other.stop()

    resumed = await first.open()
    async with asyncio.timeout(TIMEOUT):
        assert await resumed.recover(range(PARTITIONS)) == 100
    assert resumed.get(1, "u1") == Entry(-1, 5001)
    assert resumed.get(2, "u998") == Entry(998, 998)
    await resumed.stop()


async def test_rocksdb_rebuilds_when_the_changelog_topic_was_recreated(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    setup = Setup(broker.bootstrap, unique("recreated"), "rocksdb", tmp_path)
    table = await setup.open()
    await table.recover(range(PARTITIONS))
    for number in range(40):
        table.put(number % PARTITIONS, f"u{number}", number, number)
    await table.flush()
    await table.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([f"{setup.name}-changelog"])
    finally:
        await admin.close()
    again = await setup.open()  # creates the topic anew, empty
    await again.recover(range(PARTITIONS))
    assert again.get(1, "u1") is None
    await again.stop()


# --- Faust wiring: recovery completes before the agent sees records of a partition.


@pytest.mark.parametrize("with_faust_table", [False, True])
async def test_faust_agents_start_after_the_table_recovered(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_faust_table: bool
) -> None:
    # With a Faust table of its own the app resumes streams in Recovery.on_recovery_completed,
    # without one in Recovery._resume_streams: both paths are checked.
    name, source, partitions = unique("wired"), unique("wired-in"), 2
    bootstrap = broker.bootstrap
    await ensure_topics(bootstrap, [source], partitions)
    seed = create_table(name, bootstrap=bootstrap, partitions=partitions)
    async with seed:
        await seed.recover(range(partitions))
        for partition in range(partitions):
            seed.put(partition, f"user-{partition}", {"seeded": partition}, 0)
        await seed.flush()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for number in range(6):
            partition = number % partitions
            await producer.send_and_wait(
                source, f"user-{partition}".encode(), key=b"k", partition=partition
            )
    finally:
        await producer.stop()

    table = create_table(
        name, bootstrap=bootstrap, partitions=partitions, store="rocksdb", data_dir=tmp_path
    )
    read = table.changelog.read

    async def slow_read(
        starts: dict[int, int], ends: dict[int, int]
    ) -> AsyncIterator[tuple[int, list[Record], int]]:
        await asyncio.sleep(1.0)  # gives streams time to start, were they not held back
        async for item in read(starts, ends):
            yield item

    monkeypatch.setattr(table.changelog, "read", slow_read)
    app = faust.App(
        unique("wired-app"),
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(tmp_path / "faust"),
        web_enabled=False,
        broker_session_timeout=2,
        broker_heartbeat_interval=0.3,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
    )
    if with_faust_table:
        app.Table(unique("faust-table"), default=int, partitions=partitions)
    topic = app.topic(source, key_serializer="raw", value_serializer="raw", partitions=partitions)
    seen: list[tuple[int, Entry | str | None]] = []
    all_seen = asyncio.Event()

    @app.agent(topic)
    async def process(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            try:
                seen.append((partition, table.get(partition, event.value.decode())))
            except PartitionNotReady:
                seen.append((partition, "not ready"))
            if len(seen) == 6:
                all_seen.set()

    attach_to_faust(app, table, source)
    await table.start()
    app.finalize()
    await app.start()
    try:
        async with asyncio.timeout(30):
            await all_seen.wait()
        await app.on_partitions_revoked.send({TP(source, 0), TP("elsewhere", 1)})
        assert table.partitions == {1}
    finally:
        await app.stop()
        await table.stop()
    assert sorted(seen, key=lambda item: item[0]) == [
        (p, Entry({"seeded": p}, 0)) for p in (0, 0, 0, 1, 1, 1)
    ]
