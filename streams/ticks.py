"""Driving simulated time from outside the engine: one place writes ticks (the CLI, the
HTTP API, the demo and the tests all come here), reads them back, and waits for them.

A tick written here is a barrier: before writing it, the driver reads the end offset of
every user input topic (events, tags, feedback, journey entries) in each partition and
puts them into that partition's tick, and the engine applies the tick to a partition
only once it has applied those inputs (``agents/clock.py``). Waiting for a tick reads
the compacted clock-applied topic, where each worker says which tick it has applied to
which partition, once the outputs it caused are acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.clock import TICK, TICK_APPLIED, Tick, TickApplied
from streams.topics import FETCH_MAX_WAIT_MS, Topics

log = logging.getLogger(__name__)

ENGINE_ROLE = "segments"
"""The role whose applied ticks a driver waits for: the one that fires timers and runs
schedules (role ``all`` includes it)."""
WAIT_SECONDS = 120.0
RECOVER_TAIL = 16
"""Records read back per clock partition to find its last tick."""


class TickTimeout(TimeoutError):
    """The tick was written, but not applied everywhere in time."""


@dataclass(frozen=True)
class Ticked:
    now: datetime
    partitions: int
    waited: bool


class TickDriver:
    """Writes barrier ticks and waits for workers to apply them. Keep one open across
    many ticks (the demo) to read the clock-applied topic only once."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._applied_reader: AIOKafkaConsumer | None = None
        self.applied: dict[str, datetime] = {}
        """``role:partition`` -> the newest tick that worker reported applied."""

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await self._producer.start()
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await self._offsets.start()

    async def stop(self) -> None:
        for client in (self._producer, self._offsets, self._applied_reader):
            if client is not None:
                await client.stop()
        self._producer = self._offsets = self._applied_reader = None

    async def __aenter__(self) -> TickDriver:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    async def partitions(self, topic: str) -> list[int]:
        assert self._producer is not None, "the driver has not started"
        return sorted(await self._producer.partitions_for(topic))

    async def barrier(self, partitions: Sequence[int]) -> dict[int, dict[str, int]]:
        """Per partition, the end offset of each user input topic that holds records."""
        assert self._offsets is not None, "the driver has not started"
        tps = [
            TopicPartition(topic, partition)
            for topic in self.topics.user_inputs
            for partition in partitions
        ]
        starts, ends = await end_offsets(self._offsets, tps)
        after: dict[int, dict[str, int]] = {partition: {} for partition in partitions}
        for tp in tps:
            # An empty log (or one emptied by retention) has nothing to wait for.
            if ends[tp] > starts[tp]:
                after[tp.partition][tp.topic] = ends[tp]
        return after

    async def tick(
        self,
        now: datetime,
        wait: bool = False,
        timeout: float = WAIT_SECONDS,
        roles: Iterable[str] = (ENGINE_ROLE,),
    ) -> Ticked:
        """Write a tick at ``now`` to every clock partition, each with its barrier; with
        ``wait``, return once every partition has applied it (``TickTimeout`` if not
        within ``timeout`` seconds)."""
        assert self._producer is not None, "the driver has not started"
        topic = self.topics.clock
        partitions = await self.partitions(topic)
        after = await self.barrier(partitions)
        sent = [
            await self._producer.send(
                topic,
                Tick(now=now, after=after[partition]).model_dump_json().encode(),
                partition=partition,
            )
            for partition in partitions
        ]
        await asyncio.gather(*sent)
        if wait:
            await self.wait(now, partitions, timeout, roles)
        return Ticked(now, len(partitions), wait)

    async def wait(
        self,
        now: datetime,
        partitions: Sequence[int],
        timeout: float = WAIT_SECONDS,
        roles: Iterable[str] = (ENGINE_ROLE,),
    ) -> None:
        """Until each of ``roles`` reported ``now`` (or later) applied to every one of
        ``partitions``."""
        wanted = [f"{role}:{partition}" for role in roles for partition in partitions]
        reader = await self._reader()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            missing = [k for k in wanted if k not in self.applied or self.applied[k] < now]
            if not missing:
                return
            left = deadline - loop.time()
            if left <= 0:
                raise TickTimeout(
                    f"tick {now.isoformat()} not applied within {timeout:g}s by "
                    f"{', '.join(sorted(missing))}"
                )
            batches = await reader.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                for record in records:
                    self._note(record.value)

    def _note(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            applied = TICK_APPLIED.validate_json(raw)
        except ValueError as error:
            log.warning("clock-applied record is not valid: %s", error)
            return
        key = applied.key
        if key not in self.applied or applied.now > self.applied[key]:
            self.applied[key] = applied.now

    async def _reader(self) -> AIOKafkaConsumer:
        if self._applied_reader is None:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                group_id=None,
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            )
            await reader.start()
            topic = self.topics.clock_applied
            partitions = reader.partitions_for_topic(topic) or {0}
            reader.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await reader.seek_to_beginning()
            self._applied_reader = reader
        return self._applied_reader


async def end_offsets(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offsets of ``tps``, the end as a fetch reports it (the high
    watermark). The embedded broker answers a ListOffsets request with the base offset
    of the last record batch plus one, short of that batch's other records; a fetch's
    high watermark is right on every broker. ``consumer`` is assigned ``tps``."""
    starts = await consumer.beginning_offsets(list(tps))
    listed = await consumer.end_offsets(list(tps))
    ends = {tp: listed[tp] for tp in tps}
    held = [tp for tp in tps if listed[tp] > starts[tp]]
    consumer.assign(list(tps))
    if not held:
        return starts, ends
    for tp in held:
        consumer.seek(tp, listed[tp] - 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while any(consumer.highwater(tp) is None for tp in held):
        if loop.time() > deadline:
            raise TickTimeout("the broker did not answer a fetch for the end offsets")
        await consumer.getmany(*held, timeout_ms=200, max_records=1)
    for tp in held:
        ends[tp] = max(listed[tp], consumer.highwater(tp) or 0)
    return starts, ends


async def last_tick(bootstrap: str, topic: str) -> datetime | None:
    """The newest valid tick on the clock topic (None when there is none): read from the
    last records of each partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    try:
        found = await consumer.topics()
        if topic not in found:
            return None
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return None
        starts, ends = await end_offsets(consumer, tps)
        newest: datetime | None = None
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        for tp in tps:
            if ends[tp] <= starts[tp]:
                continue
            start = max(starts[tp], ends[tp] - RECOVER_TAIL)
            async for value in _values(consumer, tp, start, ends[tp], deadline):
                try:
                    tick = TICK.validate_json(value)
                except ValueError:
                    continue
                if newest is None or tick.now > newest:
                    newest = tick.now
        return newest
    finally:
        await consumer.stop()


async def applied_ticks(bootstrap: str, topic: str, role: str) -> dict[int, datetime]:
    """Partition -> the last tick ``role`` reported applied, from the whole (compacted)
    clock-applied topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        starts, ends = await end_offsets(consumer, tps)
        found: dict[int, datetime] = {}
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        for tp in tps:
            async for value in _values(consumer, tp, starts[tp], ends[tp], deadline):
                try:
                    applied = TICK_APPLIED.validate_json(value)
                except ValueError:
                    continue
                if applied.role != role:
                    continue
                known = found.get(applied.partition)
                if known is None or applied.now > known:
                    found[applied.partition] = applied.now
        return found
    finally:
        await consumer.stop()


async def _values(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, deadline: float
) -> AsyncIterator[bytes]:
    """The values of ``tp``'s records from ``start`` up to ``end``, read by then (the
    loop's time), else TickTimeout."""
    consumer.seek(tp, start)
    while await consumer.position(tp) < end:
        if asyncio.get_running_loop().time() > deadline:
            raise TickTimeout(f"could not read {tp.topic} back")
        batches = await consumer.getmany(tp, timeout_ms=1000)
        for record in batches.get(tp, []):
            yield record.value or b""


def applied_record(role: str, partition: int, now: datetime) -> tuple[bytes, bytes]:
    """Key and value of a clock-applied record."""
    applied = TickApplied(role=role, partition=partition, now=now)
    return applied.key.encode(), applied.model_dump_json().encode()
