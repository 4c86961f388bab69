"""Local copies of the flushed state: one in memory, one in RocksDB that survives restarts.

A store holds, per partition, the state of a prefix of the changelog and the changelog
offset that prefix ends at (the next offset to read). Unflushed writes never reach it.
Both keep entries encoded, as in the changelog: the memory store's dicts then hold
bytes, which the garbage collector never scans, however many users there are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, cast

from rocksdict import Options, Rdict, WriteBatch

from streams.state.changelog import Record


class Store(Protocol):
    def open(self, partition: int) -> int | None:
        """Make the partition available; return the changelog offset its state reaches,
        None when it holds nothing."""

    def close(self, partition: int) -> None:
        """Forget the partition in this process (a durable store keeps its files)."""

    def wipe(self, partition: int) -> None:
        """Delete the partition's local state: it disagrees with the changelog."""

    def get(self, partition: int, key: str) -> bytes | None:
        """The encoded entry of ``key``, None if absent."""

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """Every key of the partition with its encoded entry."""

    def apply(self, partition: int, records: Sequence[Record], next_offset: int) -> None:
        """Apply changelog records in order; the state then reaches ``next_offset``."""

    def close_all(self) -> None: ...


class MemoryStore:
    """Holds nothing across restarts: recovery always reads the changelog from the start."""

    def __init__(self) -> None:
        self._data: dict[int, dict[str, bytes]] = {}
        self._offsets: dict[int, int] = {}

    def open(self, partition: int) -> int | None:
        self._data.setdefault(partition, {})
        return self._offsets.get(partition)

    def close(self, partition: int) -> None:
        self._data.pop(partition, None)
        self._offsets.pop(partition, None)

    def wipe(self, partition: int) -> None:
        self._data[partition] = {}
        self._offsets.pop(partition, None)

    def get(self, partition: int, key: str) -> bytes | None:
        return self._data[partition].get(key)

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        yield from list(self._data[partition].items())

    def apply(self, partition: int, records: Sequence[Record], next_offset: int) -> None:
        data = self._data[partition]
        for key, value in records:
            if value is None:
                data.pop(key.decode(), None)
            else:
                data[key.decode()] = value
        self._offsets[partition] = next_offset

    def close_all(self) -> None:
        self._data.clear()
        self._offsets.clear()


# Entries live under b"k" + key, so no user key can collide with the offset record.
_KEY_PREFIX = b"k"
_OFFSET_KEY = b"m:changelog_offset"


class RocksDBStore:
    """One RocksDB per partition under ``directory``, so a partition moves between worker
    processes on one host by closing and opening its own database (RocksDB allows one
    process per database). Entries and the changelog offset are written in one batch,
    so the offset never runs ahead of the entries."""

    def __init__(self, directory: Path, name: str) -> None:
        self._directory = directory
        self._name = name
        self._dbs: dict[int, Rdict] = {}

    def path(self, partition: int) -> Path:
        return self._directory / f"{self._name}-{partition}.rocksdb"

    def open(self, partition: int) -> int | None:
        db = self._dbs.get(partition)
        if db is None:
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = Rdict(str(self.path(partition)), Options(raw_mode=True))
            self._dbs[partition] = db
        raw = db.get(_OFFSET_KEY)
        return None if raw is None else int.from_bytes(raw, "big")

    def close(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()

    def wipe(self, partition: int) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(_KEY_PREFIX, bytes([_KEY_PREFIX[0] + 1]))
        batch.delete(_OFFSET_KEY)
        self._dbs[partition].write(batch)

    def get(self, partition: int, key: str) -> bytes | None:
        raw: bytes | None = self._dbs[partition].get(_KEY_PREFIX + key.encode())
        return raw

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        for raw_key, value in self._dbs[partition].items(from_key=_KEY_PREFIX):
            key = cast(bytes, raw_key)  # raw mode: keys and values are bytes
            if not key.startswith(_KEY_PREFIX):
                return
            yield key[len(_KEY_PREFIX) :].decode(), cast(bytes, value)

    def apply(self, partition: int, records: Sequence[Record], next_offset: int) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(_KEY_PREFIX + key)
            else:
                batch.put(_KEY_PREFIX + key, value)
        batch.put(_OFFSET_KEY, next_offset.to_bytes(8, "big"))
        self._dbs[partition].write(batch)

    def close_all(self) -> None:
        for partition in list(self._dbs):
            self.close(partition)
