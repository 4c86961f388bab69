"""Following a topic of JSON-array records from outside the system, and waiting for a
condition: what the journeys benchmark measures with."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics import FETCH_MAX_WAIT_MS

Item = dict[str, Any]


class Reader:
    """Follows a topic of JSON-array records from its current end, handing each item
    and the moment its fetch returned to ``on_item``."""

    def __init__(self, bootstrap: str, topic: str, on_item: Callable[[Item, float], None]):
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # as the worker's consumer
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._topic = topic
        self._on_item = on_item
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Reader:
        consumer = self._consumer
        await consumer.start()
        parts = [
            TopicPartition(self._topic, p) for p in consumer.partitions_for_topic(self._topic) or []
        ]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for part in parts:
            await consumer.position(part)  # resolve the end now, not at the first fetch
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            arrived = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    for item in orjson.loads(message.value):
                        self._on_item(item, arrived)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, poll: float = 0.05
) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll)
