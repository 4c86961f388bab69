"""A partitioned key/value table whose changelog writes are coalesced and sent in bulk."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import NamedTuple

from streams.state.changelog import Changelog, Record
from streams.state.entry import Entry, JSONValue, epoch_of
from streams.state.stores import Store

logger = logging.getLogger(__name__)


class PartitionNotReady(RuntimeError):
    """The partition is not recovered in this process (not assigned, or still recovering)."""


class FlushFailed(RuntimeError):
    """The changelog refused some partitions; their writes stay dirty for the next flush."""

    def __init__(self, errors: dict[int, BaseException]) -> None:
        super().__init__(f"changelog write failed for partitions {sorted(errors)}")
        self.errors = errors


EPOCH_KEY = "\x00\x00epoch"
"""Per partition, in the changelog of a fenced table: the epoch of its current owner.
Never listed by ``items`` or ``keys``."""


class _Deleted(NamedTuple):
    applied_offset: int


_Write = bytes | _Deleted
"""A pending write: the entry as its changelog record (``Entry.encode``), or a delete.
Encoded when written, not when flushed: a value kept as Python objects until the
flush would be scanned by the garbage collector again and again (JSON values hold no
cycles), which cost a busy worker about a tenth of its time and pauses of tens of ms."""


class CoalescingTable:
    """User-keyed state, co-partitioned with the input topic, backed by a compacted changelog.

    Each entry carries ``applied_offset``, the input offset of the last record it reflects.
    Writes only mark keys dirty; ``flush()`` sends one changelog record per dirty key, so
    any number of writes to a key between flushes cost one record.

    The caller must respect this order for every batch of input records:

    1. send its output records and await their acknowledgement,
    2. ``await table.flush()``,
    3. only then ack/commit the input offsets.

    A caller whose writers go on while it waits for step 1 calls ``seal()`` at the
    instant whose outputs it waits for (under its writers' lock), then
    ``flush_sealed()``: later writes are not flushed before their outputs are.

    A crash then loses only state whose input is not committed. On restart, ``recover``
    restores the flushed state and the caller replays the uncommitted input, skipping
    each (record, key) for which ``should_apply`` is False: those effects, and their
    outputs by (1), are already in place. An input record that carries several events for
    one key must be decided once, before the first of them is applied, since all of them
    share its offset.

    A delete removes the key, so ``should_apply`` is True again for older offsets. Replay
    stays correct when deletes are driven by input records of the same partition: a
    replay that re-applies an older record also replays the delete that follows it.

    Values are JSON-able and treated as immutable: build a new value and ``put`` it.
    ``stop()`` does not flush: unflushed writes may lack their outputs (step 1).
    """

    def __init__(self, changelog: Changelog, store: Store, *, fenced: bool = False) -> None:
        """``fenced``: each recovery starts a new ownership epoch of its partitions,
        written to the changelog before anything else; every record carries its
        writer's epoch, and a recovery ignores records of an older epoch written after
        a newer one (those of a worker that kept writing after losing the partition)."""
        self.changelog = changelog
        self._store = store
        self._fenced = fenced
        self._epochs: dict[int, int] = {}
        # A partition is ready (recovered, writable) exactly when it has a dirty map.
        self._dirty: dict[int, dict[str, _Write]] = {}
        # Writes sealed for the next flush (``seal``): older than the dirty ones, newer
        # than those of a flush in progress.
        self._sealed: dict[int, dict[str, _Write]] = {}
        # Writes taken by a flush in progress: still visible to reads until stored.
        self._flushing: dict[int, dict[str, _Write]] = {}
        # The latest entry of the last key read or written, decoded: a read after a
        # write, or should_apply then get, decodes nothing. Reset where the store is
        # replaced or a partition leaves.
        self._decoded: tuple[int, str, Entry] | None = None
        # Serialises flush, recover and release, which all touch the store.
        self._lock = asyncio.Lock()
        self._started = False

    async def start(self) -> None:
        """Connect the changelog; calling it again does nothing."""
        if not self._started:
            await self.changelog.start()
            self._started = True

    async def stop(self) -> None:
        self._started = False
        async with self._lock:
            self._dirty.clear()
            self._sealed.clear()
            self._decoded = None
            await self.changelog.stop()
            self._store.close_all()

    async def __aenter__(self) -> CoalescingTable:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions recovered and served here."""
        return frozenset(self._dirty)

    @property
    def dirty_count(self) -> int:
        """Keys written since the last flush (what the next flush would send)."""
        count = sum(len(dirty) for dirty in self._dirty.values())
        for partition, sealed in self._sealed.items():  # empty but during a cut
            dirty = self._dirty.get(partition, {})
            count += sum(1 for key in sealed if key not in dirty)
        return count

    def _dirty_map(self, partition: int) -> dict[str, _Write]:
        dirty = self._dirty.get(partition)
        if dirty is None:
            raise PartitionNotReady(f"partition {partition} is not recovered here")
        return dirty

    def _latest(self, partition: int, key: str) -> Entry | _Deleted | None:
        decoded = self._decoded
        write = self._dirty_map(partition).get(key)
        if write is None and self._sealed:
            write = self._sealed.get(partition, {}).get(key)
        if write is None and self._flushing:
            write = self._flushing.get(partition, {}).get(key)
        if isinstance(write, _Deleted):
            return write
        if decoded is not None and decoded[0] == partition and decoded[1] == key:
            return decoded[2]  # the latest, cached whether dirty or stored
        raw = write if write is not None else self._store.get(partition, key)
        if raw is None:
            return None
        entry = Entry.decode(raw)
        self._decoded = (partition, key, entry)
        return entry

    def get(self, partition: int, key: str) -> Entry | None:
        latest = self._latest(partition, key)
        return latest if type(latest) is Entry else None

    def items(self, partition: int) -> Iterator[tuple[str, Entry]]:
        """Every live key of the partition with its latest entry, unflushed writes included
        (a snapshot: writes during the iteration may or may not show)."""
        dirty = self._dirty_map(partition)
        pending = self._pending(partition, dirty)
        for key, raw in self._store.items(partition):
            if key not in pending and key != EPOCH_KEY:
                yield key, Entry.decode(raw)
        for key, write in list(pending.items()):
            if type(write) is bytes:
                yield key, Entry.decode(write)

    def keys(self, partition: int) -> Iterator[str]:
        """Every live key of the partition, like ``items`` without decoding values."""
        dirty = self._dirty_map(partition)
        pending = self._pending(partition, dirty)
        for key, _ in self._store.items(partition):
            if key not in pending and key != EPOCH_KEY:
                yield key
        for key, write in list(pending.items()):
            if type(write) is bytes:
                yield key

    def _pending(self, partition: int, dirty: dict[str, _Write]) -> dict[str, _Write]:
        if not self._flushing and not self._sealed:
            return dirty
        return {
            **self._flushing.get(partition, {}),
            **self._sealed.get(partition, {}),
            **dirty,
        }

    def should_apply(self, partition: int, key: str, offset: int) -> bool:
        """False when the key's state already includes the input record at ``offset``."""
        latest = self._latest(partition, key)
        return latest is None or offset > latest.applied_offset

    def put(self, partition: int, key: str, value: JSONValue, applied_offset: int) -> None:
        """Set the key's state, which now includes the input record at ``applied_offset``."""
        entry = Entry(value, applied_offset)
        dirty = self._dirty_map(partition)
        dirty[key] = (
            entry.encode(self._epochs.get(partition, 0)) if self._fenced else entry.encode()
        )
        self._decoded = (partition, key, entry)  # read back next, most often

    def delete(self, partition: int, key: str, applied_offset: int) -> None:
        self._dirty_map(partition)[key] = _Deleted(applied_offset)
        decoded = self._decoded
        if decoded is not None and decoded[0] == partition and decoded[1] == key:
            self._decoded = None

    def seal(self) -> None:
        """Take every write made so far for the next ``flush_sealed``; later writes wait
        for the flush after it. Synchronous: a caller that seals while holding the lock
        of its writers cuts exactly between two of their writes."""
        for partition, dirty in self._dirty.items():
            if dirty:
                sealed = self._sealed.get(partition)
                if sealed is None:
                    self._sealed[partition] = dirty
                else:
                    sealed.update(dirty)
                self._dirty[partition] = {}

    async def flush(self) -> int:
        """Seal every write made so far and flush it (``flush_sealed``)."""
        self.seal()
        return await self.flush_sealed()

    async def flush_sealed(self) -> int:
        """Send every sealed key to the changelog and wait for the acks; return how many.

        Raises FlushFailed if some partitions were refused: their writes stay sealed
        (unless written again meanwhile) and go out with the next flush.

        The store's writes give the event loop a turn between partitions: a flush of
        tens of thousands of keys would otherwise hold up every input for a hundred
        milliseconds or more. Reads meanwhile see a partition's flushing writes until
        the store has them.
        """
        async with self._lock:
            taken = {p: sealed for p, sealed in self._sealed.items() if sealed}
            self._sealed = {}
            if not taken:
                return 0
            self._flushing = dict(taken)
            try:
                records = {p: _encode(writes) for p, writes in taken.items()}
                results = await self.changelog.write(records)
            except BaseException:
                for partition, writes in taken.items():
                    self._restore(partition, writes)
                self._flushing = {}
                raise
            errors: dict[int, BaseException] = {}
            try:
                for partition, result in results.items():
                    if isinstance(result, BaseException):
                        errors[partition] = result
                        self._restore(partition, taken[partition])
                    else:
                        self._store.apply(partition, records[partition], result)
                        self._decoded = None
                    del self._flushing[partition]
                    await asyncio.sleep(0)
            finally:
                # Cancelled between partitions: what the store lacks goes out again.
                for partition, writes in self._flushing.items():
                    self._restore(partition, writes)
                self._flushing = {}
                self._decoded = None
            if errors:
                raise FlushFailed(errors)
            return sum(len(writes) for writes in taken.values())

    def _restore(self, partition: int, writes: dict[str, _Write]) -> None:
        # Writes sealed while the flush ran are newer: they win over the restored ones
        # (and dirty writes over both).
        if partition not in self._dirty:
            return  # released meanwhile: its input replays elsewhere
        writes.update(self._sealed.get(partition, {}))
        self._sealed[partition] = writes

    async def recover(self, partitions: Iterable[int]) -> int:
        """Bring the partitions' state up to the changelog's end and serve them.

        Unflushed writes of these partitions are dropped first: their input was not
        committed and will be replayed. Returns the number of changelog records read.
        """
        wanted = sorted(set(partitions))
        count = self.changelog.partitions
        for partition in wanted:
            if not 0 <= partition < count:
                raise ValueError(f"partition {partition} outside 0..{count - 1}")
        async with self._lock:
            self._decoded = None
            for partition in wanted:
                self._dirty.pop(partition, None)
                self._sealed.pop(partition, None)
            held = {partition: self._store.open(partition) for partition in wanted}
            bounds = await self.changelog.bounds(wanted)
            starts: dict[int, int] = {}
            for partition in wanted:
                first, end = bounds[partition]
                offset = held[partition]
                if offset is not None and not first <= offset <= end:
                    # The local copy does not belong to this log (topic recreated, records
                    # expired): only a full read of the changelog is trustworthy.
                    logger.warning(
                        "%s[%d]: local state at offset %d outside the log (%d..%d); rebuilding",
                        self.changelog.topic,
                        partition,
                        offset,
                        first,
                        end,
                    )
                    self._store.wipe(partition)
                    offset = None
                starts[partition] = first if offset is None else offset
            ends = {partition: bounds[partition][1] for partition in wanted}
            floors = {p: self._stored_epoch(p) for p in wanted} if self._fenced else None
            read = 0
            async for partition, batch, next_offset in self.changelog.read(starts, ends):
                if floors is not None:
                    batch = _fresh(batch, floors, partition)
                self._store.apply(partition, batch, next_offset)
                read += len(batch)
            if floors is not None:
                read += await self._fence(wanted, ends, floors)
            for partition in wanted:
                self._dirty[partition] = {}
            return read

    def _stored_epoch(self, partition: int) -> int:
        raw = self._store.get(partition, EPOCH_KEY)
        return int(Entry.decode(raw).value) if raw is not None else 0

    async def _fence(self, wanted: list[int], ends: dict[int, int], floors: dict[int, int]) -> int:
        """Start a new epoch for each partition: its record goes to the changelog now,
        so that records of any older owner written after it are ignored from then on."""
        epochs = {p: floors.get(p, 0) + 1 for p in wanted}
        fences = {p: [(EPOCH_KEY.encode(), Entry(epochs[p], 0).encode(epochs[p]))] for p in wanted}
        results = await self.changelog.write(fences)
        read = 0
        for partition in wanted:
            result = results[partition]
            if isinstance(result, BaseException):
                raise result
            # Records written between the end read above and the fence (an old owner
            # still writing) count as they will for any later recovery.
            fence_offset = result - 1
            if fence_offset > ends[partition]:
                late = self.changelog.read({partition: ends[partition]}, {partition: fence_offset})
                async for _, batch, next_offset in late:
                    batch = _fresh(batch, floors, partition)
                    self._store.apply(partition, batch, next_offset)
                    read += len(batch)
            self._store.apply(partition, fences[partition], result)
            self._epochs[partition] = epochs[partition]
        return read

    async def release(self, partitions: Iterable[int]) -> None:
        """Stop serving the partitions and drop them from memory, unflushed writes
        included (a durable store keeps its files to resume from later)."""
        async with self._lock:
            self._decoded = None
            for partition in partitions:
                self._dirty.pop(partition, None)
                self._sealed.pop(partition, None)
                self._store.close(partition)


def _encode(writes: dict[str, _Write]) -> list[Record]:
    return [
        (key.encode(), write if type(write) is bytes else None) for key, write in writes.items()
    ]


def _fresh(batch: list[Record], floors: dict[int, int], partition: int) -> list[Record]:
    """The records of ``batch`` not written by an owner older than one that wrote
    before them; ``floors`` (the newest epoch seen per partition) follows the reading."""
    floor = floors.get(partition, 0)
    kept: list[Record] = []
    for record in batch:
        epoch = epoch_of(record[1])
        if epoch is not None and epoch != floor:
            if epoch < floor:
                continue  # a former owner's, written after the new one took over
            floor = epoch
        kept.append(record)
    floors[partition] = floor
    return kept
