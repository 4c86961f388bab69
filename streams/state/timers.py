"""Timer queues: per partition, which keys are due when, cheapest due first.

The queue is derived data: the instant of each key's next timer is in the key's state,
and the queue is rebuilt from it when a partition is recovered, so it is never
changelogged. ``HeapTimers`` keeps it in memory (with the memory store, the state is
in memory anyway); ``RocksDBTimers`` keeps it in a RocksDB database per partition,
ordered by instant, so a million pending timers cost disk, not memory.
"""

from __future__ import annotations

import heapq
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Literal, Protocol, cast

from rocksdict import Options, Rdict, WriteBatch

_SHIFT = 1 << 62
"""Added to instants (ms, negative before 1970) so that they sort as unsigned bytes."""


class Timers(Protocol):
    def push(self, partition: int, due: int, key: str, replaces: int | None = None) -> None:
        """Set ``key``'s timer to ``due``; ``replaces`` is its previous instant, if any."""

    def cancel(self, partition: int, due: int, key: str) -> None:
        """Forget ``key``'s timer at ``due``."""

    def pop_due(self, partition: int, now: int, limit: int) -> list[tuple[int, str]]:
        """Remove and return up to ``limit`` timers due at ``now`` or before, in order.
        A popped timer may be stale (superseded): the caller checks it against the
        key's state."""

    def has_due(self, partition: int, now: int) -> bool: ...

    def reset(self, partition: int) -> None:
        """Empty the partition's queue (before a rebuild, or when it is released)."""

    def count(self) -> int:
        """Timers queued, over every partition (stale ones included for the heap)."""

    def close(self) -> None: ...


class HeapTimers:
    """In memory; a replaced timer stays until it is popped, then proves stale."""

    def __init__(self) -> None:
        self._queues: dict[int, list[tuple[int, str]]] = defaultdict(list)

    def push(self, partition: int, due: int, key: str, replaces: int | None = None) -> None:
        heapq.heappush(self._queues[partition], (due, key))

    def cancel(self, partition: int, due: int, key: str) -> None:
        pass  # popped later, then found stale

    def pop_due(self, partition: int, now: int, limit: int) -> list[tuple[int, str]]:
        queue = self._queues.get(partition)
        popped: list[tuple[int, str]] = []
        while queue and queue[0][0] <= now and len(popped) < limit:
            popped.append(heapq.heappop(queue))
        return popped

    def has_due(self, partition: int, now: int) -> bool:
        queue = self._queues.get(partition)
        return bool(queue) and queue[0][0] <= now  # type: ignore[index]

    def reset(self, partition: int) -> None:
        self._queues.pop(partition, None)

    def count(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def close(self) -> None:
        self._queues.clear()


class RocksDBTimers:
    """One RocksDB per partition, keyed by (instant, key): replaced timers are deleted,
    so the queue holds exactly one entry per key with a timer.

    Changes are gathered in memory and written as one batch when the queue is next
    read (or when many have gathered): a busy worker moves a timer on most inputs, and
    one RocksDB write per change cost more than the batch's share."""

    def __init__(self, directory: Path, name: str, *, batch: int = 10_000) -> None:
        self._directory = directory
        self._name = name
        self._batch = batch
        self._dbs: dict[int, Rdict] = {}
        self._counts: dict[int, int] = defaultdict(int)
        # No key below this: iteration starts here, past the tombstones popped timers
        # leave at the front of the key space.
        self._floor: dict[int, bytes] = {}
        # Not yet written: keys to add, and stored keys to delete (counted once found).
        self._puts: dict[int, set[bytes]] = defaultdict(set)
        self._deletes: dict[int, set[bytes]] = defaultdict(set)

    def _db(self, partition: int) -> Rdict:
        db = self._dbs.get(partition)
        if db is None:
            path = self._directory / f"{self._name}-{partition}.rocksdb"
            shutil.rmtree(path, ignore_errors=True)  # derived data: rebuilt from state
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = Rdict(str(path), Options(raw_mode=True))
            self._dbs[partition] = db
        return db

    @staticmethod
    def _key(due: int, key: str) -> bytes:
        return (due + _SHIFT).to_bytes(8, "big") + key.encode()

    def push(self, partition: int, due: int, key: str, replaces: int | None = None) -> None:
        if replaces is not None:
            if replaces == due:
                return
            self._drop(partition, self._key(replaces, key))
        new = self._key(due, key)
        puts = self._puts[partition]
        puts.add(new)
        self._counts[partition] += 1
        if new < self._floor.get(partition, new + b"\x00"):
            self._floor[partition] = new
        if len(puts) >= self._batch:
            self._write(partition)

    def cancel(self, partition: int, due: int, key: str) -> None:
        self._drop(partition, self._key(due, key))

    def _drop(self, partition: int, old: bytes) -> None:
        puts = self._puts[partition]
        if old in puts:
            puts.discard(old)
            self._counts[partition] -= 1
        else:
            self._deletes[partition].add(old)

    def _write(self, partition: int) -> None:
        """Write the partition's gathered changes: deletes first, as a key deleted and
        then set again is set."""
        puts, deletes = self._puts.pop(partition, None), self._deletes.pop(partition, None)
        if not puts and not deletes:
            return
        db = self._db(partition)
        batch = WriteBatch(raw_mode=True)
        for old in sorted(deletes or ()):
            if db.get(old) is not None:
                batch.delete(old)
                self._counts[partition] -= 1
        for new in sorted(puts or ()):
            batch.put(new, b"")
        db.write(batch)

    def pop_due(self, partition: int, now: int, limit: int) -> list[tuple[int, str]]:
        self._write(partition)
        if partition not in self._dbs:
            return []
        db = self._dbs[partition]
        end = (now + _SHIFT).to_bytes(8, "big")
        popped: list[tuple[int, str]] = []
        batch = WriteBatch(raw_mode=True)
        for raw, _ in db.items(from_key=self._floor.get(partition, b"")):
            key = cast(bytes, raw)
            if key[:8] > end or len(popped) >= limit:
                self._floor[partition] = key
                break
            popped.append((int.from_bytes(key[:8], "big") - _SHIFT, key[8:].decode()))
            batch.delete(key)
        else:
            self._floor.pop(partition, None)  # empty: the next push sets it
        if popped:
            db.write(batch)
            self._counts[partition] -= len(popped)
        return popped

    def has_due(self, partition: int, now: int) -> bool:
        self._write(partition)
        if partition not in self._dbs:
            return False
        for raw, _ in self._dbs[partition].items(from_key=self._floor.get(partition, b"")):
            return cast(bytes, raw)[:8] <= (now + _SHIFT).to_bytes(8, "big")
        return False

    def reset(self, partition: int) -> None:
        self._puts.pop(partition, None)
        self._deletes.pop(partition, None)
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()
        self._counts.pop(partition, None)
        self._floor.pop(partition, None)
        shutil.rmtree(self._directory / f"{self._name}-{partition}.rocksdb", ignore_errors=True)

    def count(self) -> int:
        for partition in list(self._deletes):
            self._write(partition)  # a delete counts once it is found
        return sum(self._counts.values())

    def close(self) -> None:
        self._puts.clear()
        self._deletes.clear()
        for partition in list(self._dbs):
            self._dbs.pop(partition).close()


def create_timers(name: str, store: Literal["memory", "rocksdb"], data_dir: Path) -> Timers:
    """The timer queue that goes with a table of this ``store`` kind (``create_table``)."""
    return RocksDBTimers(data_dir, name) if store == "rocksdb" else HeapTimers()
