"""Benchmark: journeys on the embedded system (worker role all, wall clock, the
configured table store), each figure next to a baseline measured in the same run.

1. Audience launch: N users are put in segment ``bench-audience`` by tag updates; a
   journey "audience (at launch) -> email -> exit" is launched, and the time from the
   launch request to the N-th send command read from the send-commands topic gives
   send commands/s. Baseline: a raw aiokafka consumer + orjson reading those same
   commands from the start of the topic (the floor for any reader of that topic).
2. Step latency: users enter "trigger BenchStart -> push (split after 1 day) ->
   opened -> email"; an ``opened`` feedback per user is produced (one per record) at
   a steady rate, and the time from producing it to reading the user's email command
   gives p50/p99. Baseline: a raw aiokafka producer/consumer pair on a scratch topic
   at the same rate and record size (the broker's and client's own share).
3. Pending timers: users are put, through API entries, into "delay 30 days -> email"
   in two halves, each until the status reports its timers and the worker is idle;
   the worker's RSS growth per pending timer (overall, and the second half alone),
   next to the growth of its state directory (RocksDB table and timer queues) per user.

How to read it: the ratio to a baseline is the engine's own cost. A launch far below
the raw read rate is the worker (sweep, per-user step, state, and the activity it
projects into ClickHouse in the same process), not Kafka; latency above the baseline
is the worker's feedback -> step -> command path. RSS per timer includes RocksDB's
write buffers (bounded, up to 64 MiB per partition database, table and queues): the
overall figure falls as the count grows, the second half's is closer to the marginal
cost. The state directory holds the write-ahead log (raw values) until a write buffer
fills, then compressed tables: bytes per user drop once that happens. Not a timed test:
it prints figures. ``reach bench journeys`` or ``python -m benchmarks.journeys``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console

from benchmarks.ingest import _raw_consume
from benchmarks.journey_workload import (
    AUDIENCE,
    LATENCY,
    LAUNCH,
    TIMERS,
    Item,
    addresses,
    journeys,
    presets,
)
from benchmarks.reader import Reader, until
from benchmarks.system import (
    cpu_seconds,
    percentile,
    print_figures,
    rss_kib,
    settle,
    start_engine,
    status,
)
from streams.ingest import IngestProducer
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.topics import Topics, ensure_topics
from worker.supervisor import SystemProcess

console = Console(width=160)
CHUNK = 100_000  # items generated and produced at a time: bounded client memory

Row = tuple[str, str, str]
"""measure, count, figure; a baseline is its own row, indented, under its figure."""


async def _call(system: SystemProcess, method: str, path: str, body: Any = None) -> Any:
    code, answer = await system.http.call(method, path, body)
    if code >= 400:
        raise RuntimeError(f"{method} {path}: {code} {answer}")
    return answer


async def _produce_chunks(
    bootstrap: str,
    settings: Settings,
    topic: str,
    make: Callable[[int, int], Iterator[Item]],
    count: int,
) -> None:
    producer = IngestProducer(bootstrap, settings.max_record_bytes, settings.events_per_record)
    await producer.start()
    try:
        for offset in range(0, count, CHUNK):
            items = make(offset, min(count, offset + CHUNK))
            await producer.send_encoded(topic, ((i["user_id"], orjson.dumps(i)) for i in items))
    finally:
        await producer.stop()


# --- 1. audience launch -------------------------------------------------------------


async def audience_launch(system: SystemProcess, bootstrap: str, users: int) -> list[Row]:
    settings, topics = Settings(), Topics.from_settings(Settings())
    now = datetime.now(UTC).isoformat()

    def tags(start: int, end: int) -> Iterator[Item]:
        for n in range(start, end):
            tags = {"Country": "PT", **addresses(f"aud-{n}")}
            yield {"user_id": f"aud-{n}", "op": "set", "timestamp": now, "tags": tags}

    await _produce_chunks(bootstrap, settings, topics.tags, tags, users)

    async def members() -> bool:
        return int((await status(system))["segments"]["members"].get(AUDIENCE, 0)) >= users

    if not await until(members, max(600, users / 200), poll=0.2):
        raise RuntimeError(f"segment {AUDIENCE} did not reach {users:,} members")
    await settle(system)  # the tags' and memberships' projection done: a launch alone
    console.print(f"  launching to {users:,} members ...")
    arrivals: list[float] = []

    def on_command(item: Item, arrived: float) -> None:
        if item["journey_id"] == LAUNCH:
            arrivals.append(arrived)

    assert system.process is not None
    pid = system.process.pid
    reader = await Reader(bootstrap, topics.send_commands, on_command).start()
    try:
        started, cpu_started = time.perf_counter(), cpu_seconds(pid)
        await _call(system, "POST", f"/v1/journeys/{LAUNCH}/launch")
        done = await until(lambda: len(arrivals) >= users, max(600, users / 200), poll=0.02)
        cpu = cpu_seconds(pid) - cpu_started
    finally:
        await reader.stop()
    # Its activity and commands in ClickHouse too: the launch's whole cost.
    idle = await settle(system) - started
    count = len(arrivals)
    elapsed = (arrivals[-1] if arrivals else time.perf_counter()) - started
    first = (arrivals[0] - started) * 1000 if arrivals else float("nan")
    raw_seconds, _, raw_items = await _raw_consume(bootstrap, topics.send_commands, users)
    return [
        (
            "audience launch -> send commands read from the topic",
            f"{count:,}" + ("" if done else f" of {users:,}"),
            f"{count / elapsed:,.0f} commands/s ({elapsed:.2f} s, first after {first:,.0f} ms)",
        ),
        (
            "  per CPU-second of the engine process (its own cost, cores shared)",
            f"{count:,}",
            f"{count / cpu:,.0f} commands/s ({cpu:.2f} CPU s)",
        ),
        (
            "  baseline: raw aiokafka consumer + orjson, same commands",
            f"{raw_items:,}",
            f"{raw_items / raw_seconds:,.0f} commands/s ({raw_seconds:.2f} s)",
        ),
        (
            "launch -> worker idle (activity and commands in ClickHouse)",
            f"{count:,}",
            f"{count / idle:,.0f} users/s ({idle:.2f} s)",
        ),
    ]


# --- 2. step latency ----------------------------------------------------------------


async def _paced(
    producer: AIOKafkaProducer,
    topic: str,
    records: list[tuple[str, int, bytes]],
    rate: float,
    sent: dict[str, float],
) -> None:
    """Produce one record per item at ``rate``/s, noting when each was handed over."""
    pending = []
    started = time.perf_counter()
    for number, (user, partition, value) in enumerate(records):
        wait = started + number / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        sent[user] = time.perf_counter()
        pending.append(await producer.send(topic, value, partition=partition))
    await asyncio.gather(*pending)


async def step_latency(system: SystemProcess, bootstrap: str, users: int, rate: float) -> list[Row]:
    settings, topics = Settings(), Topics.from_settings(Settings())
    first: dict[str, str] = {}
    sent: dict[str, float] = {}
    latencies: list[float] = []

    def on_command(item: Item, arrived: float) -> None:
        if item["journey_id"] != LATENCY:
            return
        if item["step"] == "push":
            first[item["user_id"]] = item["command_id"]
        elif item["step"] == "email" and (at := sent.pop(item["user_id"], None)) is not None:
            latencies.append(arrived - at)

    reader = await Reader(bootstrap, topics.send_commands, on_command).start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await _call(system, "POST", f"/v1/journeys/{LATENCY}/launch")
        now = datetime.now(UTC).isoformat()

        def reachable(start: int, end: int) -> Iterator[Item]:
            for n in range(start, end):
                user = f"lat-{n}"
                yield {"user_id": user, "op": "set", "timestamp": now, "tags": addresses(user)}

        def starts(start: int, end: int) -> Iterator[Item]:
            for n in range(start, end):
                yield {"user_id": f"lat-{n}", "name": "BenchStart", "timestamp": now}

        # Addresses first (a message step to a user without one sends nothing): applied
        # before the events that start the journey.
        applied = int((await status(system))["segments"]["inputs"])

        async def addressed() -> bool:
            return int((await status(system))["segments"]["inputs"]) >= applied + users

        await _produce_chunks(bootstrap, settings, topics.tags, reachable, users)
        if not await until(addressed, 300):
            raise RuntimeError("the latency users' addresses were not applied")
        await _produce_chunks(bootstrap, settings, topics.events, starts, users)
        if not await until(lambda: len(first) >= users, 300):
            raise RuntimeError(f"only {len(first):,} of {users:,} first commands arrived")
        records = []
        for user, command in sorted(first.items()):
            feedback = {
                "command_id": command,
                "user_id": user,
                "status": "opened",
                "channel": "push",
                "timestamp": datetime.now(UTC).isoformat(),
            }
            value = b"[" + orjson.dumps(feedback) + b"]"
            records.append((user, partition_for(user, settings.partitions), value))
        await _paced(producer, topics.feedback, records, rate, sent)
        await until(lambda: len(latencies) >= users, 60)
        engine = sorted(latencies)

        # Baseline: the same records, rate and client settings, through a scratch topic.
        scratch = f"{settings.topic_prefix}bench-scratch"
        await ensure_topics(bootstrap, [scratch], settings.partitions)
        raw_sent: dict[str, float] = {}
        raw: list[float] = []

        def on_raw(item: Item, arrived: float) -> None:
            if (at := raw_sent.pop(item["user_id"], None)) is not None:
                raw.append(arrived - at)

        raw_reader = await Reader(bootstrap, scratch, on_raw).start()
        try:
            await _paced(producer, scratch, records, rate, raw_sent)
            await until(lambda: len(raw) >= users, 60)
        finally:
            await raw_reader.stop()
        baseline = sorted(raw)
    finally:
        await producer.stop()
        await reader.stop()
    return [
        (
            f"feedback opened -> next step's command read, at {rate:,.0f}/s",
            f"{len(engine):,}" + ("" if len(engine) >= users else f" of {users:,}"),
            _p50_p99(engine),
        ),
        (
            "  baseline: raw aiokafka produce -> consume, scratch topic, same rate",
            f"{len(baseline):,}",
            _p50_p99(baseline),
        ),
    ]


def _p50_p99(latencies: list[float]) -> str:
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return f"p50 {p50 * 1000:,.1f} ms, p99 {p99 * 1000:,.1f} ms"


# --- 3. pending timers --------------------------------------------------------------


def _size(folder: Path, contains: str = "") -> int:
    """Bytes of the files under ``folder`` (apparent size) whose path has ``contains``."""
    total = 0
    for path in folder.rglob("*"):
        if contains in str(path.relative_to(folder)):
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                pass  # RocksDB removes files while we look
    return total


async def pending_timers(system: SystemProcess, users: int) -> list[Row]:
    """Two halves, each measured once the worker is idle: the second half's growth is
    the marginal cost, free of what is bounded (RocksDB write buffers, ClickHouse and
    Python arenas warming up)."""
    settings = Settings()
    assert system.process is not None
    pid = system.process.pid
    state = system.data_dir / "state"
    timers_marker = f"{settings.topic_prefix}timers-"
    await _call(system, "POST", f"/v1/journeys/{TIMERS}/launch")
    await settle(system)
    base = int((await status(system))["segments"]["timers"])

    async def mark() -> tuple[int, int, int, int]:
        timers = int((await status(system))["segments"]["timers"]) - base
        return timers, rss_kib(pid) * 1024, _size(state), _size(state, timers_marker)

    marks = [await mark()]
    busy, done = 0.0, True
    batch = min(50_000, settings.max_batch_items)
    for first, last in ((0, users // 2), (users // 2, users)):
        started = time.perf_counter()
        for offset in range(first, last, batch):
            names = range(offset, min(last, offset + batch))
            body = {"users": [{"user_id": f"wait-{n}"} for n in names]}
            await _call(system, "POST", f"/v1/journeys/{TIMERS}/entries", body)

        async def all_set(expected: int = last) -> bool:
            return int((await status(system))["segments"]["timers"]) - base >= expected

        done = await until(all_set, max(900, users / 200), poll=0.5) and done
        busy += time.perf_counter() - started
        await settle(system)  # the last flushes of state and projections
        marks.append(await mark())
    (_, rss0, disk0, queues0), (half, rss1, _, _), (count, rss2, disk2, queues2) = marks
    per, second = max(count, 1), max(count - half, 1)
    return [
        (
            "users entered into a 30-day delay (API entries) -> timers pending",
            f"{count:,}" + ("" if done else f" of {users:,}"),
            f"{count / busy:,.0f} entries/s ({busy:.1f} s)",
        ),
        (
            f"worker RSS growth per pending timer ({settings.table_store} store)",
            f"{count:,}",
            f"+{(rss2 - rss0) / 2**20:,.0f} MiB = {(rss2 - rss0) / per:,.0f} bytes/timer; "
            f"second half alone {(rss2 - rss1) / second:,.0f} bytes/timer",
        ),
        (
            "  next to: state directory growth per user (table + timer queues)",
            f"{count:,}",
            f"+{(disk2 - disk0) / 2**20:,.0f} MiB = {(disk2 - disk0) / per:,.0f} bytes/user "
            f"(timer queues {(queues2 - queues0) / per:,.0f})",
        ),
    ]


# --- run ----------------------------------------------------------------------------


def run(
    users: int, latency_users: int, latency_rate: float, timers: int, role: str = "all"
) -> None:
    settings = Settings()
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reach-bench-")))
        # The journey engine alone: delivery (the simulator) would add its own load.
        env = {"REACH_HTTP_PORT": "0", "REACH_DELIVER": "false"}
        system = start_engine(stack, folder, env, role)
        assert system.info is not None
        bootstrap = system.info.broker

        async def scenario() -> None:
            segment = {
                "id": AUDIENCE,
                "name": "bench audience",
                "expression": 'T("Country", eq, "PT")',
            }
            await _call(system, "POST", "/v1/segments", [segment])
            await _call(system, "POST", "/v1/presets", presets())
            await _call(system, "POST", "/v1/journeys", journeys())
            console.print(f"audience launch: {users:,} users ...")
            rows.extend(await audience_launch(system, bootstrap, users))
            console.print(f"step latency: {latency_users:,} users at {latency_rate:,.0f}/s ...")
            rows.extend(await step_latency(system, bootstrap, latency_users, latency_rate))
            console.print(f"pending timers: {timers:,} users ...")
            rows.extend(await pending_timers(system, timers))

        asyncio.run(scenario())

    title = (
        f"Journeys benchmark: 1 worker (role {role}, {settings.clock} clock, "
        f"{settings.table_store} store), {settings.partitions} partitions"
    )
    print_figures(console, title, ("measure", "count", "figure"), rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journeys", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--latency-users", type=int, default=2_000)
    parser.add_argument("--latency-rate", type=float, default=200.0)
    parser.add_argument("--timers", type=int, default=1_000_000)
    parser.add_argument("--role", choices=["all", "segments"], default="all")
    args = parser.parse_args(argv)
    run(args.users, args.latency_users, args.latency_rate, args.timers, args.role)


if __name__ == "__main__":
    main()
