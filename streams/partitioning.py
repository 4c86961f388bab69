"""Partitioning and batch packing on the producer side.

Records keyed by user id land where Kafka's default partitioner (murmur2, as in the
Java client and aiokafka) puts them, so single-event records written by any Kafka
client and the batches packed here agree on which partition owns a user.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 17)
def partition_for(user_id: str, partitions: int) -> int:
    return (int(murmur2(user_id.encode())) & 0x7FFFFFFF) % partitions


def pack(
    items: Iterable[tuple[str, bytes]], partitions: int, max_items: int, max_bytes: int
) -> list[tuple[int, bytes]]:
    """Group encoded JSON objects by their user's partition into JSON-array records.

    Each record holds at most ``max_items`` items and, unless a single item is
    larger, at most ``max_bytes`` bytes. Items keep their input order per partition,
    hence per user.
    """
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for user_id, encoded in items:
        by_partition[partition_for(user_id, partitions)].append(encoded)
    records: list[tuple[int, bytes]] = []
    for partition, encoded_items in by_partition.items():
        chunk: list[bytes] = []
        size = 2
        for encoded in encoded_items:
            if chunk and (len(chunk) >= max_items or size + len(encoded) + 1 > max_bytes):
                records.append((partition, b"[" + b",".join(chunk) + b"]"))
                chunk, size = [], 2
            chunk.append(encoded)
            size += len(encoded) + 1
        if chunk:
            records.append((partition, b"[" + b",".join(chunk) + b"]"))
    return records
