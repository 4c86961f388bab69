"""Benchmark: events/s through ingest -> intake agent -> ClickHouse projection, in one
worker process, next to a raw aiokafka consumer reading the same topic in the same run.

Not a timed test: it prints figures. ``reach bench ingest [--events N] [--storage S]``:
by default on durable and on memory broker storage, one after the other in one run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from streams.broker import Storage
from streams.ingest import IngestProducer
from streams.settings import Settings
from streams.topics import Topics
from worker.supervisor import SystemProcess

console = Console(width=120)


def make_events(count: int, users: int) -> list[tuple[str, bytes]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    names = ("ApplicationOpen", "ScreenOpen", "InAppPurchase", "ApplicationMinimized")
    encoded = []
    for number in range(count):
        user = f"user-{number % users}"
        event = {
            "user_id": user,
            "name": names[number % len(names)],
            "timestamp": (start + timedelta(seconds=number)).isoformat(),
            "attributes": {"screen": "home", "n": number},
        }
        encoded.append((user, orjson.dumps(event)))
    return encoded


async def _produce(
    bootstrap: str, topic: str, settings: Settings, events: list[tuple[str, bytes]]
) -> float:
    producer = IngestProducer(bootstrap, settings.max_record_bytes, settings.events_per_record)
    await producer.start()
    try:
        started = time.perf_counter()
        chunk = 50_000
        for offset in range(0, len(events), chunk):
            await producer.send_encoded(topic, events[offset : offset + chunk])
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _wait_projected(system: SystemProcess, expected: int, timeout: float) -> int:
    api = system.http
    deadline = time.monotonic() + timeout
    while True:
        _, status = await api.call("GET", "/v1/status")
        done = int(status["projected"].get("events", 0))
        if done >= expected or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.05)


async def _raw_consume(bootstrap: str, topic: str, expected_events: int) -> tuple[float, int, int]:
    """Read the topic from the start with aiokafka and orjson: the floor for any consumer."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = events = 0
        started = time.perf_counter()
        while events < expected_events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                break
            for messages in batches.values():
                for message in messages:
                    records += 1
                    events += len(orjson.loads(message.value))
        return time.perf_counter() - started, records, events
    finally:
        await consumer.stop()


def run(
    events: int,
    users: int,
    role: str = "projections",
    storages: Sequence[Storage] = ("durable", "memory"),
) -> None:
    """One table, a group of rows per broker storage, measured one after the other."""
    settings = Settings()
    table = Table(
        "storage",
        "path",
        "events",
        "records",
        "seconds",
        "events/s",
        title=(
            f"Ingest benchmark: {events:,} events of {users:,} users, "
            f"{settings.events_per_record} events per record, {settings.partitions} partitions, "
            f"worker role {role}"
        ),
    )
    for storage in storages:
        console.print(f"ingest benchmark on {storage} broker storage ...")
        for row in _measure(settings, events, users, role, storage):
            table.add_row(storage, *row)
    console.print(table)


def _measure(
    settings: Settings, events: int, users: int, role: str, storage: Storage
) -> list[tuple[str, ...]]:
    topic = Topics.from_settings(settings).events
    payload = make_events(events, users)
    warmup = make_events(20_000, users)
    with tempfile.TemporaryDirectory(prefix="reach-bench-") as folder:
        # The projections role: validation, dead letters and ClickHouse, without the
        # segment state that the "all" role keeps for every user as well.
        env = {
            "REACH_HTTP_PORT": "0",
            "REACH_TABLE_STORE": "memory",
            "REACH_ROLE": role,
            "REACH_BROKER_STORAGE": storage,
        }
        with SystemProcess(Path(folder), env) as system:
            assert system.info is not None
            bootstrap = system.info.broker

            async def pipeline() -> tuple[float, float, int]:
                # Warm up (first inserts, code paths), then measure from a settled state.
                await _produce(bootstrap, topic, settings, warmup)
                base = await _wait_projected(system, len(warmup), timeout=120)
                started = time.perf_counter()
                produce = asyncio.create_task(_produce(bootstrap, topic, settings, payload))
                projected = await _wait_projected(system, base + events, timeout=600) - base
                elapsed = time.perf_counter() - started
                return elapsed, await produce, projected

            elapsed, produce_seconds, projected = asyncio.run(pipeline())
            raw_seconds, raw_records, raw_events = asyncio.run(
                _raw_consume(bootstrap, topic, events + len(warmup))
            )
    if projected < events:
        console.print(f"[red]only {projected:,} of {events:,} events were projected[/]")
    return [
        (
            f"ingest -> intake agent -> ClickHouse (1 worker, role {role})",
            f"{projected:,}",
            "",
            f"{elapsed:.2f}",
            f"{projected / elapsed:,.0f}",
        ),
        (
            "  of which: producing (packing + sending)",
            f"{events:,}",
            "",
            f"{produce_seconds:.2f}",
            f"{events / produce_seconds:,.0f}",
        ),
        (
            "baseline: raw aiokafka consumer + orjson, same topic",
            f"{raw_events:,}",
            f"{raw_records:,}",
            f"{raw_seconds:.2f}",
            f"{raw_events / raw_seconds:,.0f}",
        ),
    ]
