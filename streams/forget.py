"""Sending a forget request (``reach users forget``, ``DELETE /v1/users/{id}``)."""

from __future__ import annotations

from datetime import datetime

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas.forget import FORGET_HEADER, ForgetUser
from streams.partitioning import partition_for


class BadUser(ValueError):
    """Not a user id (empty, or over 256 characters)."""


def forget_request(user_id: str, now: datetime) -> ForgetUser:
    try:
        return ForgetUser(user_id=user_id, requested_at=now)
    except ValidationError:
        raise BadUser(f"not a user id: {user_id[:60]!r} (1 to 256 characters)") from None


async def send_forget(bootstrap: str, topic: str, request: ForgetUser) -> int:
    """Produce the request to the tags topic, in the user's partition (after every
    record of theirs already there); returns the partition once the broker has it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partition = partition_for(request.user_id, len(await producer.partitions_for(topic)))
        await producer.send_and_wait(
            topic,
            value=request.model_dump_json().encode(),
            key=request.user_id.encode(),
            partition=partition,
            headers=[(FORGET_HEADER, b"1")],
        )
        return partition
    finally:
        await producer.stop()
