"""CoalescingTable contract, run against both stores over the in-process changelog.

The same changelog contract is checked against Kafka in
tests/integration/test_state_recovery.py, which also runs the crash scenarios there.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from streams.state import (
    CoalescingTable,
    Entry,
    FlushFailed,
    MemoryChangelog,
    MemoryStore,
    PartitionNotReady,
    Record,
    RocksDBStore,
    Store,
)
from streams.state.entry import epoch_of

PARTITIONS = 4


@dataclass(frozen=True)
class Backend:
    """Builds the store a restarted process would open: rocksdb reuses its directory."""

    durable: bool
    make: Callable[[], Store]


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return Backend(durable=False, make=MemoryStore)
    return Backend(durable=True, make=lambda: RocksDBStore(tmp_path / "state", "users"))


@pytest.fixture
def changelog() -> MemoryChangelog:
    return MemoryChangelog(PARTITIONS)


@pytest.fixture
async def table(changelog: MemoryChangelog, backend: Backend) -> AsyncIterator[CoalescingTable]:
    async with CoalescingTable(changelog, backend.make()) as running:
        await running.recover(range(PARTITIONS))
        yield running


async def restarted(changelog: MemoryChangelog, make: Callable[[], Store]) -> CoalescingTable:
    table = CoalescingTable(changelog, make())
    await table.start()
    return table


async def serving(changelog: MemoryChangelog, make: Callable[[], Store]) -> CoalescingTable:
    """``restarted``, with every partition recovered."""
    table = await restarted(changelog, make)
    await table.recover(range(PARTITIONS))
    return table


def decoded(changelog: MemoryChangelog, partition: int) -> list[tuple[str, object]]:
    return [
        (key.decode(), None if value is None else orjson.loads(value))
        for key, value in changelog.logs[partition]
    ]


@pytest.mark.parametrize("value", [{"count": 3, "tags": ["a", "é"]}, [1, 2.5], "text", None, 0])
def test_entries_encode_as_a_json_object_and_back(value: object) -> None:
    raw = Entry(value, 7).encode()
    assert orjson.loads(raw) == {"value": value, "applied_offset": 7}
    assert Entry.decode(raw) == Entry(value, 7)


async def test_writes_to_one_key_coalesce_into_one_changelog_record(
    table: CoalescingTable, changelog: MemoryChangelog
) -> None:
    for offset in range(100):
        table.put(1, "user-7", {"count": offset + 1}, offset)

    assert table.dirty_count == 1
    assert await table.flush() == 1
    assert decoded(changelog, 1) == [("user-7", {"value": {"count": 100}, "applied_offset": 99})]
    assert table.dirty_count == 0
    assert await table.flush() == 0


async def test_each_key_goes_to_its_own_partition(
    table: CoalescingTable, changelog: MemoryChangelog
) -> None:
    table.put(0, "a", 1, 10)
    table.put(3, "b", 2, 20)
    await table.flush()

    assert [key for key, _ in decoded(changelog, 0)] == ["a"]
    assert [key for key, _ in decoded(changelog, 3)] == ["b"]
    assert changelog.logs[1] == changelog.logs[2] == []


async def test_get_sees_dirty_then_flushed_state(table: CoalescingTable) -> None:
    assert table.get(2, "u") is None
    table.put(2, "u", {"n": 1}, 5)
    assert table.get(2, "u") == Entry({"n": 1}, 5)
    await table.flush()
    assert table.get(2, "u") == Entry({"n": 1}, 5)
    table.put(2, "u", {"n": 2}, 6)
    assert table.get(2, "u") == Entry({"n": 2}, 6)


async def test_should_apply_skips_offsets_already_reflected(table: CoalescingTable) -> None:
    assert table.should_apply(0, "u", 0)
    table.put(0, "u", 1, 41)
    await table.flush()

    assert not table.should_apply(0, "u", 40)
    assert not table.should_apply(0, "u", 41)
    assert table.should_apply(0, "u", 42)
    assert table.should_apply(0, "other", 40)


async def test_delete_writes_a_tombstone_and_hides_the_key(
    table: CoalescingTable, changelog: MemoryChangelog
) -> None:
    table.put(1, "u", 1, 3)
    await table.flush()
    table.delete(1, "u", 4)

    assert table.get(1, "u") is None
    # Until flushed, the pending delete still knows what it reflects.
    assert not table.should_apply(1, "u", 4)
    await table.flush()
    assert changelog.logs[1][-1] == (b"u", None)
    assert table.get(1, "u") is None
    assert table.should_apply(1, "u", 4)


async def test_partitions_not_recovered_refuse_reads_and_writes(
    changelog: MemoryChangelog, backend: Backend
) -> None:
    table = await restarted(changelog, backend.make)
    await table.recover([0])
    with pytest.raises(PartitionNotReady):
        table.get(1, "u")
    with pytest.raises(PartitionNotReady):
        table.put(1, "u", 1, 0)
    with pytest.raises(PartitionNotReady):
        table.should_apply(1, "u", 0)
    with pytest.raises(ValueError, match="outside"):
        await table.recover([PARTITIONS])
    assert table.partitions == {0}
    await table.stop()


async def test_recover_restores_flushed_state_only(
    table: CoalescingTable, changelog: MemoryChangelog, backend: Backend
) -> None:
    for number in range(40):
        table.put(number % PARTITIONS, f"user-{number}", {"n": number}, 100 + number)
    table.delete(1, "user-1", 200)
    await table.flush()
    table.put(2, "user-2", {"n": -1}, 300)  # never flushed: lost in the crash
    table.put(3, "late", {"n": -1}, 301)
    await table.stop()

    again = await restarted(changelog, backend.make)
    # rocksdb kept everything flushed: nothing left to read.
    assert await again.recover(range(PARTITIONS)) == (0 if backend.durable else 40)
    assert again.get(1, "user-1") is None
    assert again.get(2, "user-2") == Entry({"n": 2}, 102)
    assert again.get(3, "late") is None
    for number in range(2, 40):
        assert again.get(number % PARTITIONS, f"user-{number}") == Entry(
            {"n": number}, 100 + number
        )
    await again.stop()


async def test_recover_drops_unflushed_writes_of_a_held_partition(
    table: CoalescingTable,
) -> None:
    table.put(0, "u", "flushed", 1)
    await table.flush()
    table.put(0, "u", "unflushed", 2)
    table.put(1, "v", "kept", 3)

    await table.recover([0])

    assert table.get(0, "u") == Entry("flushed", 1)
    assert table.get(1, "v") == Entry("kept", 3)
    assert table.dirty_count == 1


async def test_release_drops_a_partition_including_unflushed_writes(
    table: CoalescingTable,
) -> None:
    table.put(0, "u", "flushed", 1)
    await table.flush()
    table.put(0, "u", "unflushed", 2)

    await table.release([0])

    assert table.partitions == {1, 2, 3}
    assert table.dirty_count == 0
    with pytest.raises(PartitionNotReady):
        table.get(0, "u")
    await table.recover([0])
    assert table.get(0, "u") == Entry("flushed", 1)


async def test_stop_does_not_flush(table: CoalescingTable, changelog: MemoryChangelog) -> None:
    table.put(0, "u", 1, 1)
    await table.stop()
    assert changelog.logs[0] == []


class _FailingChangelog(MemoryChangelog):
    """Refuses the partitions in ``failing``, as a broker error would."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.failing: set[int] = set()

    async def write(
        self, batches: Mapping[int, Sequence[Record]]
    ) -> dict[int, int | BaseException]:
        results = await super().write({p: r for p, r in batches.items() if p not in self.failing})
        for partition in self.failing & set(batches):
            results[partition] = ConnectionError("broker gone")
        return results


async def test_failed_partitions_stay_dirty_and_go_out_with_the_next_flush(
    backend: Backend,
) -> None:
    changelog = _FailingChangelog(PARTITIONS)
    table = await serving(changelog, backend.make)
    table.put(0, "a", 1, 1)
    table.put(1, "b", 1, 1)
    changelog.failing = {1}

    with pytest.raises(FlushFailed) as failure:
        await table.flush()

    assert set(failure.value.errors) == {1}
    assert table.dirty_count == 1
    assert table.get(1, "b") == Entry(1, 1)
    changelog.failing = set()
    assert await table.flush() == 1
    assert [key for key, _ in changelog.logs[1]] == [b"b"]
    await table.stop()


class _GatedChangelog(MemoryChangelog):
    """Holds every write until ``gate`` is set, so a test can act during a flush;
    ``written`` tells when the changelog has the records (the store's turn next)."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()
        self.written = asyncio.Event()

    async def write(
        self, batches: Mapping[int, Sequence[Record]]
    ) -> dict[int, int | BaseException]:
        self.writing.set()
        await self.gate.wait()
        results = await super().write(batches)
        self.written.set()
        return results


async def test_writes_during_a_flush_stay_dirty_and_visible(backend: Backend) -> None:
    changelog = _GatedChangelog(PARTITIONS)
    table = await serving(changelog, backend.make)
    table.put(0, "u", "first", 1)
    table.put(0, "v", "only", 1)
    flushing = asyncio.create_task(table.flush())
    await changelog.writing.wait()

    assert table.get(0, "v") == Entry("only", 1)  # in flight, still readable
    table.put(0, "u", "second", 2)
    changelog.gate.set()
    assert await flushing == 2

    assert table.dirty_count == 1
    assert table.get(0, "u") == Entry("second", 2)
    assert await table.flush() == 1
    assert [orjson.loads(v or b"null")["value"] for _, v in changelog.logs[0]] == [
        "first",
        "only",
        "second",
    ]
    await table.stop()


async def test_every_turn_of_a_long_flush_reads_the_latest_values(backend: Backend) -> None:
    """A flush gives the loop turns while it writes and stores; whatever turn a read
    lands on, it sees each key's latest value, flushed or not."""
    changelog = MemoryChangelog(PARTITIONS)
    table = await serving(changelog, backend.make)
    keys = [(partition, f"k{number}") for partition in range(PARTITIONS) for number in range(10)]
    for partition, key in keys:
        table.put(partition, key, "old", 1)
    await table.flush()
    for partition, key in keys:
        table.put(partition, key, "new", 2)
    flushing = asyncio.create_task(table.flush())
    turns = 0
    while not flushing.done():
        for partition, key in keys:
            assert table.get(partition, key) == Entry("new", 2), (turns, partition, key)
        turns += 1
        await asyncio.sleep(0)
    assert await flushing == len(keys)
    assert turns > PARTITIONS  # it did give turns: the write, each partition
    for partition, key in keys:
        assert table.get(partition, key) == Entry("new", 2)
    assert table.dirty_count == 0
    await table.stop()


async def test_a_flush_cancelled_between_partitions_sends_the_rest_again(
    backend: Backend,
) -> None:
    changelog = _GatedChangelog(PARTITIONS)
    changelog.gate.set()
    table = await serving(changelog, backend.make)
    for partition in range(PARTITIONS):
        table.put(partition, "u", "value", 1)
    flushing = asyncio.create_task(table.flush())
    await changelog.written.wait()  # the changelog has them: partitions being stored
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing

    for partition in range(PARTITIONS):
        assert table.get(partition, "u") == Entry("value", 1)
    again = table.dirty_count
    assert 0 < again < PARTITIONS  # those not stored yet go out again
    assert await table.flush() == again
    for partition in range(PARTITIONS):
        assert table.get(partition, "u") == Entry("value", 1)
    await table.stop()


class _GatedFailingChangelog(_GatedChangelog):
    async def write(
        self, batches: Mapping[int, Sequence[Record]]
    ) -> dict[int, int | BaseException]:
        self.writing.set()
        await self.gate.wait()
        return {partition: ConnectionError("broker gone") for partition in batches}


async def test_a_failed_flush_does_not_undo_writes_made_while_it_ran(
    backend: Backend,
) -> None:
    changelog = _GatedFailingChangelog(PARTITIONS)
    table = await serving(changelog, backend.make)
    table.put(0, "u", "old", 1)
    table.put(0, "v", "old", 1)
    flushing = asyncio.create_task(table.flush())
    await changelog.writing.wait()
    table.put(0, "u", "new", 2)
    changelog.gate.set()

    with pytest.raises(FlushFailed):
        await flushing

    assert table.get(0, "u") == Entry("new", 2)
    assert table.get(0, "v") == Entry("old", 1)
    assert table.dirty_count == 2
    await table.stop()


class _GatedReadChangelog(MemoryChangelog):
    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def read(
        self, starts: Mapping[int, int], ends: Mapping[int, int]
    ) -> AsyncIterator[tuple[int, list[Record], int]]:
        self.reading.set()
        await self.gate.wait()
        async for item in super().read(starts, ends):
            yield item


async def test_a_partition_is_not_served_while_it_recovers(backend: Backend) -> None:
    changelog = _GatedReadChangelog(PARTITIONS)
    changelog.logs[0].append((b"u", Entry("flushed", 1).encode()))
    table = await restarted(changelog, backend.make)
    changelog.gate.set()
    await table.recover([0])
    changelog.gate.clear()
    changelog.reading.clear()

    recovering = asyncio.create_task(table.recover([0]))
    await changelog.reading.wait()
    with pytest.raises(PartitionNotReady):
        table.get(0, "u")
    changelog.gate.set()
    await recovering
    assert table.get(0, "u") == Entry("flushed", 1)
    await table.stop()


async def test_rocksdb_resumes_from_its_persisted_offset(tmp_path: Path) -> None:
    changelog = MemoryChangelog(PARTITIONS)

    def store() -> RocksDBStore:
        return RocksDBStore(tmp_path, "users")

    table = await serving(changelog, store)
    for number in range(20):
        table.put(number % PARTITIONS, f"u{number}", number, number)
    await table.flush()
    await table.stop()
    changelog.logs[0].append((b"u0", Entry("from elsewhere", 99).encode()))

    again = await restarted(changelog, store)
    assert await again.recover(range(PARTITIONS)) == 1
    assert again.get(0, "u0") == Entry("from elsewhere", 99)
    assert again.get(1, "u1") == Entry(1, 1)
    await again.stop()


async def test_rocksdb_rebuilds_when_its_offset_is_beyond_the_log(tmp_path: Path) -> None:
    def store() -> RocksDBStore:
        return RocksDBStore(tmp_path, "users")

    table = await serving(MemoryChangelog(PARTITIONS), store)
    table.put(0, "stale", 1, 1)
    table.put(0, "stale-too", 1, 1)
    await table.flush()
    await table.stop()

    recreated = MemoryChangelog(PARTITIONS)  # e.g. the broker lost its topics
    recreated.logs[0].append((b"fresh", Entry(2, 2).encode()))
    again = await restarted(recreated, store)
    assert await again.recover(range(PARTITIONS)) == 1
    assert again.get(0, "stale") is None
    assert again.get(0, "fresh") == Entry(2, 2)
    await again.stop()


@pytest.mark.parametrize("store_kind", ["memory", "rocksdb"])
async def test_items_merge_flushed_and_unflushed_state(store_kind: str, tmp_path: Path) -> None:
    store: Store = MemoryStore() if store_kind == "memory" else RocksDBStore(tmp_path, "items")
    table = CoalescingTable(MemoryChangelog(partitions=2), store)
    async with table:
        await table.recover([0, 1])
        table.put(0, "a", 1, applied_offset=1)
        table.put(0, "b", 2, applied_offset=2)
        table.put(1, "z", 9, applied_offset=1)
        await table.flush()
        table.put(0, "b", 3, applied_offset=3)  # unflushed change
        table.delete(0, "a", applied_offset=4)  # unflushed delete
        table.put(0, "c", 4, applied_offset=5)  # unflushed new key
        assert sorted((key, entry.value) for key, entry in table.items(0)) == [
            ("b", 3),
            ("c", 4),
        ]
        assert [(key, entry.value) for key, entry in table.items(1)] == [("z", 9)]


async def test_reads_agree_with_a_model_through_writes_deletes_and_flushes(
    backend: Backend,
) -> None:
    """Whatever mix of writes, deletes, reads and flushes, a read gives the key's
    latest write (the table keeps the last entry read or written decoded)."""
    rng = random.Random(5)
    table = await serving(MemoryChangelog(PARTITIONS), backend.make)
    model: dict[tuple[int, str], Entry] = {}
    for offset in range(1, 5000):
        where = (rng.randrange(2), f"k{rng.randrange(3)}")
        action = rng.random()
        if action < 0.4:
            entry = Entry({"n": offset, "list": [offset]}, offset)
            table.put(*where, entry.value, entry.applied_offset)
            model[where] = entry
        elif action < 0.5:
            table.delete(*where, offset)
            model.pop(where, None)
        elif action < 0.55:
            await table.flush()
        else:
            assert table.get(*where) == model.get(where), offset
    await table.flush()
    for partition in range(2):
        assert dict(table.items(partition)) == {
            key: entry for (p, key), entry in model.items() if p == partition
        }
    await table.stop()


async def test_a_fenced_table_ignores_what_a_former_owner_writes_after_a_new_one_took_over(
    backend: Backend,
) -> None:
    changelog = MemoryChangelog(PARTITIONS)
    stale = CoalescingTable(changelog, MemoryStore(), fenced=True)
    await stale.start()
    await stale.recover([0])
    stale.put(0, "u", "first", 1)
    await stale.flush()
    # The owner is paused past its session timeout; another worker takes over.
    owner = CoalescingTable(changelog, backend.make(), fenced=True)
    await owner.start()
    await owner.recover([0])
    assert owner.get(0, "u") == Entry("first", 1)
    # The former owner wakes up and flushes what it had: too late.
    stale.put(0, "u", "stale", 2)
    stale.put(0, "w", "stale", 2)
    await stale.flush()
    owner.put(0, "v", "second", 3)
    await owner.flush()
    await owner.stop()

    recovered = CoalescingTable(changelog, backend.make(), fenced=True)
    await recovered.start()
    await recovered.recover([0])
    assert recovered.get(0, "u") == Entry("first", 1)
    assert recovered.get(0, "v") == Entry("second", 3)
    assert recovered.get(0, "w") is None
    assert sorted(recovered.keys(0)) == ["u", "v"]  # the epoch is not a key
    # Each recovery started a newer epoch than any before it.
    assert changelog.logs[0][-1][1] == Entry(3, 0).encode(3)
    await recovered.stop()
    await stale.stop()


def test_the_epoch_of_an_entry_is_read_from_its_end_only() -> None:
    tricky = Entry({"note": ',"epoch":7}'}, 4)
    assert epoch_of(tricky.encode()) == 0
    assert epoch_of(tricky.encode(3)) == 3
    assert epoch_of(None) is None
    assert Entry.decode(tricky.encode(3)) == tricky
