"""The changelog: a compacted topic that is the source of truth for the table's state.

``KafkaChangelog`` writes and reads it with raw aiokafka clients. ``MemoryChangelog``
is an in-process stand-in for tests; it passes the same contract tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

Record = tuple[bytes, bytes | None]
"""(key, value); a None value is a tombstone."""

# CreateTopics may report TOPIC_ALREADY_EXISTS (36) in its response instead of raising.
_TOPIC_ALREADY_EXISTS = 36


class ChangelogMismatch(RuntimeError):
    """The changelog topic exists with another partition count than the table's."""


class Changelog(Protocol):
    topic: str
    partitions: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(
        self, batches: Mapping[int, Sequence[Record]]
    ) -> dict[int, int | BaseException]:
        """Append each partition's (non-empty) records in order. Per partition: the offset
        after its last record once all of them are acknowledged, or the error that stopped
        them."""

    async def bounds(self, partitions: Collection[int]) -> dict[int, tuple[int, int]]:
        """(first offset, end offset) of each partition, end being the next offset to write."""

    def read(
        self, starts: Mapping[int, int], ends: Mapping[int, int]
    ) -> AsyncIterator[tuple[int, list[Record], int]]:
        """Yield (partition, records, offset after them) from ``starts`` until each
        partition reaches its end offset."""


class MemoryChangelog:
    """An uncompacted in-process log per partition."""

    def __init__(self, partitions: int, topic: str = "memory-changelog") -> None:
        self.topic = topic
        self.partitions = partitions
        self.logs: list[list[Record]] = [[] for _ in range(partitions)]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def write(
        self, batches: Mapping[int, Sequence[Record]]
    ) -> dict[int, int | BaseException]:
        await asyncio.sleep(0)  # a real write suspends; so does this one
        results: dict[int, int | BaseException] = {}
        for partition, records in batches.items():
            self.logs[partition].extend(records)
            results[partition] = len(self.logs[partition])
        return results

    async def bounds(self, partitions: Collection[int]) -> dict[int, tuple[int, int]]:
        return {partition: (0, len(self.logs[partition])) for partition in partitions}

    async def read(
        self, starts: Mapping[int, int], ends: Mapping[int, int]
    ) -> AsyncIterator[tuple[int, list[Record], int]]:
        for partition, start in starts.items():
            end = ends[partition]
            if start < end:
                await asyncio.sleep(0)
                yield partition, self.logs[partition][start:end], end


class KafkaChangelog:
    """A compacted topic ``topic`` with ``partitions`` partitions, same as the input's."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        max_batch_bytes: int = 512 * 1024,
        timeout: float = 30.0,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self._bootstrap = bootstrap
        self._max_batch_bytes = max_batch_bytes
        self._timeout = timeout
        self._producer: Any = None
        self._consumer: Any = None

    async def start(self) -> None:
        await self._ensure_topic()
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            max_batch_size=self._max_batch_bytes,
            request_timeout_ms=int(self._timeout * 1000),
        )
        await producer.start()
        try:
            found = await producer.partitions_for(self.topic)
            if len(found) != self.partitions:
                raise ChangelogMismatch(
                    f"{self.topic} has {len(found)} partitions, the table {self.partitions}"
                )
            # No group: recovery assigns partitions itself. "none": a position outside
            # the log is an error to see, not something to reset silently.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",
                fetch_max_wait_ms=50,
                request_timeout_ms=int(self._timeout * 1000),
            )
            await consumer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer, self._consumer = producer, consumer

    async def stop(self) -> None:
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, request_timeout_ms=int(self._timeout * 1000)
        )
        await admin.start()
        try:
            if self.topic in set(await admin.list_topics()):
                return
            topic = NewTopic(
                name=self.topic,
                num_partitions=self.partitions,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact"},
            )
            try:
                response = await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                return
            for _, code, message in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create {self.topic}: {code} {message}")
        finally:
            await admin.close()

    async def write(
        self, batches: Mapping[int, Sequence[Record]]
    ) -> dict[int, int | BaseException]:
        partitions = list(batches)
        outcomes = await asyncio.gather(
            *(self._write_partition(p, batches[p]) for p in partitions), return_exceptions=True
        )
        return dict(zip(partitions, outcomes, strict=True))

    async def _write_partition(self, partition: int, records: Sequence[Record]) -> int:
        # Whole record batches instead of one send() per record: the per-record path of
        # aiokafka (a future, partitioner and accumulator call each) is most of its cost.
        producer = self._producer
        sent: list[tuple[asyncio.Future[Any], int]] = []
        try:
            batch, count = producer.create_batch(), 0
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    if count == 0:
                        raise ValueError(f"changelog record for {key!r} exceeds one batch")
                    future = await producer.send_batch(batch, self.topic, partition=partition)
                    sent.append((future, count))
                    batch, count = producer.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"changelog record for {key!r} exceeds one batch")
                count += 1
            if count:
                future = await producer.send_batch(batch, self.topic, partition=partition)
                sent.append((future, count))
        except BaseException:
            for future, _ in sent:
                future.cancel()  # only our shield around the delivery: nobody awaits it now
            raise
        next_offset = 0
        for future, size in sent:
            metadata = await future
            next_offset = max(next_offset, metadata.offset + size)
        return next_offset

    async def bounds(self, partitions: Collection[int]) -> dict[int, tuple[int, int]]:
        consumer = self._consumer
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if not tps:
            return {}
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        listed = await consumer.end_offsets(tps)
        # tansu 0.6 answers ListOffsets(latest) with the base offset of the last record
        # batch + 1, short of the end when that batch holds several records. The highwater
        # in a fetch response is right there and on Kafka, so fetch once and take the larger.
        for tp in tps:
            consumer.seek(tp, listed[tp])
        deadline = time.monotonic() + self._timeout
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch response for {self.topic}")
            await consumer.getmany(*tps, timeout_ms=50)
        return {tp.partition: (firsts[tp], max(listed[tp], consumer.highwater(tp))) for tp in tps}

    async def read(
        self, starts: Mapping[int, int], ends: Mapping[int, int]
    ) -> AsyncIterator[tuple[int, list[Record], int]]:
        consumer = self._consumer
        pending = {
            TopicPartition(self.topic, p): ends[p] for p, start in starts.items() if start < ends[p]
        }
        if not pending:
            return
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, starts[tp.partition])
        idle_since = time.monotonic()
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=100)
            if fetched:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self._timeout:
                raise TimeoutError(f"{self.topic} stopped short of its end offsets")
            for tp, messages in fetched.items():
                records: list[Record] = []
                for message in messages:
                    if message.key is None:
                        raise ValueError(f"keyless record in {tp} at {message.offset}")
                    records.append((message.key, message.value))
                position: int = await consumer.position(tp)
                yield tp.partition, records, position
                if position >= pending[tp]:
                    del pending[tp]
