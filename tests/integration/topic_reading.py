"""Reading a whole topic from outside the system, as an auditor would."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


async def every_item(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every item of every record (JSON arrays) on ``topic``, re-sends included, read
    from the start to the end offsets of the moment."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    found.extend(orjson.loads(message.value))
        return found
    finally:
        await consumer.stop()
