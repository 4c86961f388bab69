"""User-keyed state with coalesced changelog writes and crash-safe recovery.

``create_table`` builds the usual setup; ``CoalescingTable`` documents the contract
its callers must keep (outputs sent, then ``flush``, then commit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from streams.state.changelog import (
    Changelog,
    ChangelogMismatch,
    KafkaChangelog,
    MemoryChangelog,
    Record,
)
from streams.state.entry import Entry, JSONValue
from streams.state.lease import Fenced, Lease
from streams.state.stores import MemoryStore, RocksDBStore, Store
from streams.state.table import CoalescingTable, FlushFailed, PartitionNotReady
from streams.state.wiring import attach_to_faust

__all__ = [
    "Changelog",
    "ChangelogMismatch",
    "CoalescingTable",
    "Entry",
    "Fenced",
    "FlushFailed",
    "JSONValue",
    "KafkaChangelog",
    "Lease",
    "MemoryChangelog",
    "MemoryStore",
    "PartitionNotReady",
    "Record",
    "RocksDBStore",
    "Store",
    "attach_to_faust",
    "create_table",
]


def create_table(
    name: str,
    *,
    bootstrap: str,
    partitions: int,
    store: Literal["memory", "rocksdb"] = "memory",
    data_dir: Path | None = None,
) -> CoalescingTable:
    """A table with its changelog in topic ``<name>-changelog``; rocksdb keeps its
    databases under ``data_dir``."""
    backend: Store
    if store == "rocksdb":
        if data_dir is None:
            raise ValueError("the rocksdb store needs a data_dir")
        backend = RocksDBStore(data_dir, name)
    else:
        backend = MemoryStore()
    changelog = KafkaChangelog(bootstrap, f"{name}-changelog", partitions)
    return CoalescingTable(changelog, backend, fenced=True)
