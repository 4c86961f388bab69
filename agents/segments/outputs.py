"""The output side of the segment runtime: the outputs of its users' processing, queued
per topic and sent as one record per topic (a JSON array) in the users' partition, and
the acknowledgements the checkpoint's cut waits for."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.processor import Outcome, Record
from schemas.dead_letters import DeadLetter

OUTPUT_RECORD_BYTES = 256 * 1024
"""The largest output record: well under the producer's request size and the records
the consumers of these topics accept (``REACH_MAX_RECORD_BYTES``)."""

OUTPUT_BATCH_BYTES = 512 * 1024
"""aiokafka's batch per output partition: several output records while one is sent."""


class Outputs:
    def __init__(
        self, memberships: str, commands: str, activity: str, tags: str, profiles: str = ""
    ) -> None:
        self.memberships, self.commands, self.activity, self.tags = (
            memberships,
            commands,
            activity,
            tags,
        )
        self.profiles = profiles
        """The user profiles' topic (empty: profiles are not sent)."""
        self.producer: AIOKafkaProducer | None = None
        self.dead_letters = ""
        """The dead letters' topic, for inputs the engine refused ("": dropped)."""
        self._dead: list[DeadLetter] = []
        # The largest output record (0: OUTPUT_RECORD_BYTES); the worker lowers it to
        # REACH_MAX_RECORD_BYTES when that is smaller, which the topics' readers refuse.
        self.record_limit = 0
        self.pending: list[asyncio.Future[Any]] = []
        self.last_sent: dict[tuple[str, int], asyncio.Future[Any]] = {}
        # Outputs of the current call, by topic; sent as one record per topic.
        self._out: dict[str, list[Record]] = defaultdict(list)

    async def start(self, bootstrap: str) -> None:
        # Output records are large (a round of users' commands or activity rows): with
        # aiokafka's 16 KiB batches each took a batch of its own, and the next record for
        # the same partition waited for the broker's answer to the one before.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=OUTPUT_BATCH_BYTES
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.flush()
            await self.producer.stop()

    def queue(self, outcome: Outcome) -> None:
        if outcome.changes:
            self._out[self.memberships].extend(outcome.changes)
        if outcome.commands:
            self._out[self.commands].extend(outcome.commands)
        if outcome.activity:
            self._out[self.activity].extend(outcome.activity)
        if outcome.tag_updates:
            self._out[self.tags].extend(outcome.tag_updates)
        if outcome.profiles and self.profiles:
            self._out[self.profiles].extend(outcome.profiles)

    def dead(self, letter: DeadLetter) -> None:
        """Queue the dead letter of an input the engine refused."""
        if self.dead_letters:
            self._dead.append(letter)

    async def send(self, partition: int, allowed: bool) -> None:
        """Send the queued outputs: one record per topic (a JSON array), in ``partition``,
        the users' partition on every topic. Not ``allowed`` (the partition was
        released, or another worker may own it now): they are dropped, with the state
        that made them, and whoever holds the partition replays the inputs."""
        outputs, self._out = self._out, defaultdict(list)
        dead, self._dead = self._dead, []
        if self.producer is None or not allowed:
            return
        for letter in dead:
            sent = await self.producer.send(
                self.dead_letters,
                letter.raw,
                key=letter.key,
                headers=letter.headers(),
                partition=partition,
            )
            self.pending.append(sent)
        for topic, records in outputs.items():
            for value in _records(records, self.record_limit or OUTPUT_RECORD_BYTES):
                sent = await self.producer.send(topic, value, partition=partition)
                self.pending.append(sent)
                self.last_sent[topic, partition] = sent

    def take_pending(self) -> list[asyncio.Future[Any]]:
        pending, self.pending = self.pending, []
        return pending

    async def flush(self) -> None:
        """Wait until every output record sent so far is acknowledged."""
        pending = self.take_pending()
        if pending:
            await asyncio.gather(*pending)

    def last_of(self, partition: int) -> list[asyncio.Future[Any]]:
        """The last record sent to each topic in ``partition``."""
        return [sent for (_, p), sent in self.last_sent.items() if p == partition]

    async def sent_offset(self, topic: str, partition: int) -> int | None:
        """The offset of the last record sent to ``topic`` in ``partition``, once the
        broker has it (None: none sent by this process)."""
        sent = self.last_sent.get((topic, partition))
        if sent is None:
            return None
        offset = getattr(await asyncio.shield(sent), "offset", None)
        return offset if isinstance(offset, int) else None


def _records(items: list[Record], limit: int) -> Iterator[bytes]:
    """``items`` as JSON arrays of at most ``limit`` bytes each (an item larger alone
    goes alone), in order. One array is the common case; a definition change over a
    partition's users, or a large launch round, is split in halves until each fits."""
    if not items:
        return
    value = orjson.dumps(items, option=orjson.OPT_UTC_Z)
    if len(value) <= limit or len(items) == 1:
        yield value
        return
    middle = len(items) // 2
    yield from _records(items[:middle], limit)
    yield from _records(items[middle:], limit)
