"""Partitioning agrees with Kafka's default partitioner; packing keeps per-user order."""

from __future__ import annotations

from collections import defaultdict

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from engine.codecs import InputCodec
from schemas import Event
from streams.partitioning import pack, partition_for

KAFKA = DefaultPartitioner()


def kafka_partition(user_id: str, partitions: int) -> int:
    """Where aiokafka (and so Faust) puts a record keyed by these bytes."""
    every = list(range(partitions))
    return int(KAFKA(user_id.encode(), every, every))


# Murmur2 test vectors of the Java client (org.apache.kafka.common.utils.UtilsTest).
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "murmur"), JAVA_MURMUR2.items())
@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 12, 100, 1024])
def test_partition_matches_the_java_client(key: str, murmur: int, partitions: int) -> None:
    assert partition_for(key, partitions) == (murmur & 0x7FFFFFFF) % partitions


KEYS = [
    "",
    "a",
    "user-0001",
    "user-0002",
    "user-99999",
    "UPPER",
    "ünïcödé",
    "用户",
    "🙂",
    "x" * 300,
    "with space",
    "0",
    "-1",
] + [f"user-{i:05d}" for i in range(0, 2000, 7)]


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 6, 8, 16, 24, 31, 64, 128, 1000, 1024])
def test_partition_matches_aiokafka_default_partitioner(partitions: int) -> None:
    mismatches = [
        key for key in KEYS if partition_for(key, partitions) != kafka_partition(key, partitions)
    ]
    assert mismatches == []


@given(st.text(max_size=64), st.integers(min_value=1, max_value=1024))
def test_any_key_lands_where_kafka_puts_it(user_id: str, partitions: int) -> None:
    partition = partition_for(user_id, partitions)
    assert partition == kafka_partition(user_id, partitions)
    assert 0 <= partition < partitions


def test_users_spread_over_partitions() -> None:
    counts: defaultdict[int, int] = defaultdict(int)
    for i in range(4000):
        counts[partition_for(f"user-{i}", 8)] += 1
    assert sorted(counts) == list(range(8))
    assert min(counts.values()) > 350  # 500 each on average


# pack ------------------------------------------------------------------------


def unpack(record: bytes) -> list[bytes]:
    return [orjson.dumps(item) for item in orjson.loads(record)]


def test_pack_groups_by_partition_in_input_order() -> None:
    items = [(f"user-{i % 7}", orjson.dumps({"u": f"user-{i % 7}", "i": i})) for i in range(50)]
    records = pack(items, partitions=4, max_items=1000, max_bytes=1_000_000)

    assert len({partition for partition, _ in records}) == len(records)  # one each here
    for partition, record in records:
        decoded = orjson.loads(record)
        assert all(partition_for(item["u"], 4) == partition for item in decoded)
        assert [item["i"] for item in decoded] == sorted(item["i"] for item in decoded)
    assert sorted(i for _, r in records for i in (x["i"] for x in orjson.loads(r))) == list(
        range(50)
    )


@pytest.mark.parametrize("max_items", [1, 2, 3, 10])
def test_pack_respects_max_items(max_items: int) -> None:
    items = [("same-user", orjson.dumps({"i": i})) for i in range(10)]
    records = pack(items, partitions=3, max_items=max_items, max_bytes=1_000_000)
    assert all(len(orjson.loads(record)) <= max_items for _, record in records)
    assert len(records) == -(-10 // max_items)
    assert [x["i"] for _, r in records for x in orjson.loads(r)] == list(range(10))


@pytest.mark.parametrize("max_bytes", [12, 20, 33, 50, 100])
def test_pack_respects_max_bytes(max_bytes: int) -> None:
    items = [("same-user", orjson.dumps({"i": i})) for i in range(30)]  # 7 or 8 bytes each
    records = pack(items, partitions=1, max_items=1000, max_bytes=max_bytes)
    assert all(len(record) <= max_bytes for _, record in records)
    assert [x["i"] for _, r in records for x in orjson.loads(r)] == list(range(30))


def test_pack_puts_items_together_when_there_is_room() -> None:
    item = orjson.dumps({"i": 1})  # 7 bytes: two of them make [a,b] of 17 bytes
    # pack counts a comma per item, so it keeps one byte spare: 18 holds both.
    records = pack([("u", item), ("u", item)], partitions=1, max_items=10, max_bytes=18)
    assert [r for _, r in records] == [b"[" + item + b"," + item + b"]"]


def test_oversized_item_gets_a_record_of_its_own() -> None:
    small, big = orjson.dumps({"i": 1}), orjson.dumps({"pad": "x" * 100})
    records = pack(
        [("u", small), ("u", big), ("u", small)], partitions=1, max_items=10, max_bytes=50
    )
    assert [unpack(r) for _, r in records] == [[small], [big], [small]]


def test_pack_of_nothing_is_nothing() -> None:
    assert pack([], partitions=4, max_items=10, max_bytes=100) == []


events = st.builds(
    lambda user, n, ts: Event(user_id=user, name=f"n{n}", timestamp=ts),
    st.sampled_from([f"user-{i}" for i in range(12)] + ["ünï", "用户"]),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=4_102_444_800_000),
)


@given(
    st.lists(events, max_size=60),
    st.integers(min_value=1, max_value=16),
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=50, max_value=2000),
)
def test_packed_events_decode_back_in_per_user_order(
    batch: list[Event], partitions: int, max_items: int, max_bytes: int
) -> None:
    encoded = [(event.user_id, event.model_dump_json().encode()) for event in batch]
    records = pack(encoded, partitions, max_items, max_bytes)
    codec = InputCodec(Event, 1_000_000)

    received: dict[str, list[Event]] = defaultdict(list)
    for partition, record in records:
        decoded = codec.decode(record)
        assert decoded.rejected == []
        assert len(decoded.items) <= max_items
        for event in decoded.items:
            assert partition_for(event.user_id, partitions) == partition
            received[event.user_id].append(event)

    sent: dict[str, list[Event]] = defaultdict(list)
    for event in batch:
        sent[event.user_id].append(event)
    assert received == sent
