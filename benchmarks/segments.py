"""Benchmark: events/s through the segment agents (20 segments mixing tag and windowed
event conditions, 100k users), next to a raw aiokafka consumer on the same topic in
the same run (in role ``all``, also the rate with the same process's projections
caught up); event -> membership-change latency p50/p99 at half the rate the process
sustains; and the worker's memory per user with the configured table store.

Not a timed test: it prints figures. ``reach bench segments [--storage S]``: by default
on durable and on memory broker storage, one after the other in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console

from benchmarks.ingest import _raw_consume
from benchmarks.segment_workload import COUNTRIES, events, segments, tag_updates
from benchmarks.system import (
    cpu_seconds,
    percentile,
    print_figures,
    rss_kib,
    settle,
    start_engine,
    start_engines,
    status,
)
from streams.broker import Storage
from streams.ingest import IngestProducer
from streams.settings import Settings
from streams.topics import FETCH_MAX_WAIT_MS, Topics
from worker.supervisor import SystemProcess

console = Console(width=120)


async def _wait_inputs(systems: Sequence[SystemProcess], expected: int, timeout: float) -> int:
    """Inputs the engine processes have applied, together, once ``expected`` (or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        done = sum([int((await status(system))["segments"]["inputs"]) for system in systems])
        if done >= expected or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.05)


async def _wait_projected(system: SystemProcess, events: int, timeout: float) -> int:
    """Rows in ClickHouse once ``events`` events and every membership change so far are
    projected (role ``all``)."""
    deadline = time.monotonic() + timeout
    while True:
        current = await status(system)
        written, changes = current["projected"], current["segments"]["changes"]
        done = written.get("events", 0) >= events and written.get("segment_memberships", 0) >= int(
            changes
        )
        if done or time.monotonic() > deadline:
            return int(written.get("events", 0)) + int(written.get("segment_memberships", 0))
        await asyncio.sleep(0.05)


async def _defined(systems: Sequence[SystemProcess], wanted: set[str], timeout: float) -> None:
    """Wait until every engine process has read the segment definitions ``wanted``."""
    deadline = time.monotonic() + timeout
    for system in systems:
        while True:
            _, body = await system.http.call("GET", "/v1/segments")
            if wanted <= {segment["id"] for segment in body["segments"]}:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"an engine has not read the segments after {timeout}s")
            await asyncio.sleep(0.1)


async def _latency(
    bootstrap: str,
    topic: str,
    memberships: str,
    settings: Settings,
    rate: float,
    seconds: float,
    users: int,
) -> list[float]:
    """Send live load (events stamped as they are sent) at ``rate`` events/s with probe
    events mixed in; each probe makes a new user enter segment s19; measure produce ->
    membership record."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    parts = [
        TopicPartition(memberships, p) for p in consumer.partitions_for_topic(memberships) or []
    ]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def watch() -> None:
        while True:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                arrived = time.perf_counter()
                for message in messages:
                    for change in orjson.loads(message.value):
                        if change["segment_id"] != "s19":
                            continue
                        started = sent.pop(change["user_id"], None)
                        if started is not None:
                            latencies.append(arrived - started)

    producer = IngestProducer(bootstrap, settings.max_record_bytes, settings.events_per_record)
    await producer.start()
    watcher = asyncio.create_task(watch())
    rng = random.Random(11)
    try:
        interval = 0.01  # a batch of load plus one probe every 10 ms
        per_batch = max(1, int(rate * interval))
        deadline = time.perf_counter() + seconds
        number = 0
        while time.perf_counter() < deadline:
            tick = time.perf_counter()
            # Live traffic: stamped as sent (the history was loaded before).
            moment = datetime.now(UTC)
            batch = events(per_batch, users, moment, rng, days=0)
            probe = f"probe-{number}"
            number += 1
            stamp = moment.isoformat()
            batch.append(
                (probe, orjson.dumps({"user_id": probe, "name": "Probe", "timestamp": stamp}))
            )
            sent[probe] = time.perf_counter()
            await producer.send_encoded(topic, batch)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - tick)))
        await asyncio.sleep(2)
    finally:
        watcher.cancel()
        await producer.stop()
        await consumer.stop()
    return sorted(latencies)


def _scale_out(
    workers: int, users: int, event_count: int, now: datetime, storage: Storage
) -> tuple[int, float, float]:
    """The throughput phase again, on the same tags and events, with ``workers`` engine
    processes in one consumer group (role ``segments``) beside one projections process:
    (events applied, seconds, CPU seconds of the engine processes together)."""
    settings = Settings()
    topics = Topics.from_settings(settings)
    rng = random.Random(7)  # as in run(): the same users, tags and events
    tags = tag_updates(users, now, rng)
    payload = events(event_count, users, now, rng)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reach-bench-")))
        env = {
            "REACH_HTTP_PORT": "0",
            "REACH_PROJECTION_FLUSH_SECONDS": "0.5",
            "REACH_BROKER_STORAGE": storage,
        }
        engines = start_engines(stack, folder, env, workers)
        pids = [engine.process.pid for engine in engines if engine.process is not None]
        assert engines[0].info is not None
        bootstrap = engines[0].info.broker

        async def scenario() -> tuple[int, float, float]:
            code, body = await engines[0].http.call("POST", "/v1/segments", segments())
            assert code == 200, body
            await _defined(engines, {segment["id"] for segment in segments()}, 60)
            producer = IngestProducer(
                bootstrap, settings.max_record_bytes, settings.events_per_record
            )
            await producer.start()
            await producer.send_encoded(topics.tags, tags)
            await _wait_inputs(engines, users, 600)
            console.print(f"throughput, {workers} engine processes: {event_count:,} events ...")
            started, cpu_started = time.perf_counter(), sum(map(cpu_seconds, pids))
            await producer.send_encoded(topics.events, payload)
            done = await _wait_inputs(engines, users + event_count, 600) - users
            elapsed = time.perf_counter() - started
            cpu = sum(map(cpu_seconds, pids)) - cpu_started
            await producer.stop()
            return done, elapsed, cpu

        return asyncio.run(scenario())


def run(
    users: int,
    event_count: int,
    memory_users: int,
    latency_rate: float = 0,
    role: str = "all",
    storages: Sequence[Storage] = ("durable", "memory"),
    workers: int = 1,
) -> None:
    """One table, a group of rows per broker storage, measured one after the other."""
    if workers > 1 and role != "segments":
        raise ValueError("several engine workers need role segments")
    settings = Settings()
    rows: list[tuple[str, str, str, str, str]] = []
    for storage in storages:
        console.print(f"segments benchmark on {storage} broker storage ...")
        measured = _measure(
            settings, users, event_count, memory_users, latency_rate, role, storage, workers
        )
        rows.extend((storage, *row) for row in measured)
    title = (
        f"Segments benchmark: 20 segments, {users:,} users, {event_count:,} events, "
        f"{settings.partitions} partitions"
    )
    print_figures(console, title, ("storage", "measure", "count", "time / size", "figure"), rows)


def _measure(
    settings: Settings,
    users: int,
    event_count: int,
    memory_users: int,
    latency_rate: float,
    role: str,
    storage: Storage,
    workers: int = 1,
) -> list[tuple[str, str, str, str]]:
    topics = Topics.from_settings(settings)
    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[tuple[str, str, str, str]] = []
    one: list[float] = []  # the one process's events/s, wall-clock and per CPU-second
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reach-bench-")))
        env = {
            "REACH_HTTP_PORT": "0",
            "REACH_PROJECTION_FLUSH_SECONDS": "0.5",
            "REACH_BROKER_STORAGE": storage,
        }
        system = start_engine(stack, folder, env, role)
        assert system.info is not None
        assert system.process is not None
        bootstrap, pid = system.info.broker, system.process.pid

        async def scenario() -> None:
            code, body = await system.http.call("POST", "/v1/segments", segments())
            assert code == 200, body
            rss_empty = rss_kib(pid)
            producer = IngestProducer(
                bootstrap, settings.max_record_bytes, settings.events_per_record
            )
            await producer.start()
            await producer.send_encoded(topics.tags, tag_updates(users, now, rng))
            await _wait_inputs([system], users, 600)
            payload = events(event_count, users, now, rng)
            console.print(f"throughput: {event_count:,} events for {users:,} users ...")
            started, cpu_started = time.perf_counter(), cpu_seconds(pid)
            await producer.send_encoded(topics.events, payload)
            done = await _wait_inputs([system], users + event_count, 600) - users
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(pid) - cpu_started
            await producer.stop()
            rss_loaded = rss_kib(pid)
            rate = done / elapsed
            one.extend((done / elapsed, done / cpu))
            rows.append(
                (
                    f"segment agents: events -> state -> memberships (role {role})",
                    f"{done:,}",
                    f"{elapsed:.2f}",
                    f"{rate:,.0f} events/s",
                )
            )
            rows.append(
                (
                    "  per CPU-second of that process (its own cost, cores shared)",
                    f"{done:,}",
                    f"{cpu:.2f} CPU s",
                    f"{done / cpu:,.0f} events/s",
                )
            )
            sustained = rate
            if role == "all":
                # The same process projects every event and membership change into
                # ClickHouse, which the figure above does not wait for; the rate it can
                # keep up does.
                projected = await _wait_projected(system, event_count, 600)
                sustained = event_count / (time.perf_counter() - started)
                rows.append(
                    (
                        "  with its projections: events and membership changes in ClickHouse",
                        f"{projected:,} rows",
                        f"{time.perf_counter() - started:.2f}",
                        f"{sustained:,.0f} events/s",
                    )
                )
            raw_seconds, _, raw_events = await _raw_consume(bootstrap, topics.events, event_count)
            rows.append(
                (
                    "baseline: raw aiokafka consumer + orjson, same topic",
                    f"{raw_events:,}",
                    f"{raw_seconds:.2f}",
                    f"{raw_events / raw_seconds:,.0f} events/s",
                )
            )
            # The backlog's last flushes and timers done: the latency of a steady load.
            await settle(system)
            load = latency_rate or sustained / 2
            console.print(f"latency: 10 s at {load:,.0f} events/s ...")
            latencies = await _latency(
                bootstrap, topics.events, topics.memberships, settings, load, 10, users
            )
            rows.append(
                (
                    f"event -> membership latency at {load:,.0f} events/s",
                    f"{len(latencies):,} probes",
                    f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms",
                    f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms",
                )
            )
            per_user = (rss_loaded - rss_empty) * 1024 / users
            rows.append(
                (
                    f"worker memory per user ({settings.table_store} store)",
                    f"{users:,} users",
                    f"+{(rss_loaded - rss_empty) / 1024:.0f} MiB",
                    f"{per_user:,.0f} bytes/user",
                )
            )
            status_now = await status(system)
            rows.append(
                (
                    "memberships changed / timers pending",
                    "",
                    f"{status_now['segments']['changes']:,}",
                    f"{status_now['segments']['timers']:,} timers",
                )
            )
            if memory_users > users:
                extra = memory_users - users
                producer = IngestProducer(
                    bootstrap, settings.max_record_bytes, settings.events_per_record
                )
                await producer.start()
                more = [
                    (
                        f"more-{n}",
                        orjson.dumps(
                            {
                                "user_id": f"more-{n}",
                                "op": "set",
                                "timestamp": now.isoformat(),
                                "tags": {"Country": COUNTRIES[n % 8], "Plan": "free"},
                            }
                        ),
                    )
                    for n in range(extra)
                ]
                before = int((await status(system))["segments"]["inputs"])
                for offset in range(0, extra, 100_000):
                    await producer.send_encoded(topics.tags, more[offset : offset + 100_000])
                await _wait_inputs([system], before + extra, 1200)
                await producer.stop()
                rss_more = rss_kib(pid)
                per_user_more = (rss_more - rss_empty) * 1024 / memory_users
                rows.append(
                    (
                        f"worker memory per user ({settings.table_store} store)",
                        f"{memory_users:,} users",
                        f"+{(rss_more - rss_empty) / 1024:.0f} MiB",
                        f"{per_user_more:,.0f} bytes/user",
                    )
                )

        asyncio.run(scenario())

    if workers > 1:
        done, elapsed, cpu = _scale_out(workers, users, event_count, now, storage)
        rate, per_cpu = done / elapsed, done / cpu
        rows += [
            (
                f"the same with {workers} engine processes in one group (role segments)",
                f"{done:,}",
                f"{elapsed:.2f}",
                f"{rate:,.0f} events/s ({rate / one[0]:.2f}x)",
            ),
            (
                f"  per CPU-second of the {workers} engine processes together",
                f"{done:,}",
                f"{cpu:.2f} CPU s",
                f"{per_cpu:,.0f} events/s ({per_cpu / one[1]:.2f}x)",
            ),
        ]
    return rows
