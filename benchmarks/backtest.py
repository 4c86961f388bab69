"""Benchmark: a back-test of the seed journey (``reengage-once`` over the seed's
segments) on an archive of N events for U users, next to the live engine's rate on the
same inputs in the same run.

1. The archive: U users' tag updates and N events (a third of the users stop opening
   the app a week before the back-test, so the campaign has an audience), spread over
   the 14 days before and the 14 days of the back-test, written into an embedded
   ClickHouse store as the projections write them.
2. Reading the archive: the inputs streamed back by (user, time) in native blocks and
   decoded into inputs, with nothing replayed (the reader's own cost).
3. The back-test: the same stream replayed through the user processor (warm-up, ticks,
   audience run, simulated delivery): inputs/s, and the commands it made.
4. Baseline, the live engine: an embedded system (role ``segments``: the engine in a
   process of its own) with the seed's segments, presets and journeys, the campaign
   launched; the same tag updates and events produced to its topics, and the inputs/s
   it applies (``reach bench segments`` measures the same way).

The back-test needs no broker and no changelog, and reads its inputs in bulk: the
target is at least the live rate. ``reach bench backtest [--events N --users U]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from benchmarks.segments import _wait_inputs
from benchmarks.system import cpu_seconds, print_figures, start_engine
from delivery.backtest import simulated
from delivery.simulator import DEFAULTS
from engine.backtest import Backtest
from files.journeys import load as load_journeys
from files.presets import load as load_presets
from files.segments import load as load_segments
from projections.archive import count_inputs, replay, store_inputs, timelines
from projections.clickhouse import connect
from schemas.events import Event
from schemas.tags import TagUpdate
from streams.ingest import IngestProducer
from streams.settings import Settings
from streams.topics import Topics

console = Console(width=140)
EXAMPLES = Path(__file__).parents[1] / "examples"
START = datetime(2026, 12, 7, tzinfo=UTC)
END = START + timedelta(days=14)
HISTORY = START - timedelta(days=14)
JOURNEY = "reengage-once"
NAMES = ("ApplicationOpen", "ScreenOpen", "ScreenOpen", "InAppPurchase")


def workload(events: int, users: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Tag updates, then events in time order (JSON-ready)."""
    installed = (START - timedelta(days=90)).isoformat()
    for number in range(users):
        yield {
            "user_id": f"user-{number:06d}",
            "op": "set",
            "timestamp": installed,
            "tags": {
                "First Install": {"type": "date", "value": installed},
                "Email": f"user-{number}@example.com",
                "Time zone": "Europe/Paris",
            },
        }
    rng = random.Random(seed)
    span = (END - HISTORY) / max(events, 1)
    lapse = START - timedelta(days=8)
    for number in range(events):
        user = rng.randrange(users)
        at = HISTORY + span * number
        name = rng.choice(NAMES)
        if user % 3 == 0 and at > lapse and name == "ApplicationOpen":
            name = "ScreenOpen"  # lapsed: still in the app's data, never opening it
        yield {
            "user_id": f"user-{user:06d}",
            "name": name,
            "timestamp": at.isoformat(),
            "attributes": {"n": number},
        }


def _backtest() -> Backtest:
    segments = load_segments(EXAMPLES / "seed-segments.yaml")
    journeys = [j for j in load_journeys(EXAMPLES / "seed-journeys.yaml") if j.id == JOURNEY]
    return Backtest(segments, journeys, START, END, simulate=simulated(DEFAULTS, 0))


def _offline(folder: Path, items: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Archive, read back, back-test: rows of figures."""
    client = connect(f"chdb://{folder / 'clickhouse'}", "reach")
    inputs = [
        Event.model_validate(i) if "name" in i else TagUpdate.model_validate(i) for i in items
    ]
    started = time.perf_counter()
    store_inputs(client, inputs, datetime.now(UTC))
    stored = time.perf_counter() - started
    del inputs
    total = count_inputs(client, "reach", END)
    rows = [("archive written (events and tag updates)", f"{total:,}", f"{stored:.2f}", "")]
    started = time.perf_counter()
    read = sum(len(t.inputs) for t in timelines(client, "reach", END))
    elapsed = time.perf_counter() - started
    rows.append(
        (
            "reading the archive: streamed by (user, time), decoded",
            f"{read:,}",
            f"{elapsed:.2f}",
            f"{read / elapsed:,.0f} inputs/s",
        )
    )
    test = _backtest()
    started, cpu = time.perf_counter(), time.process_time()
    (report,) = replay(client, "reach", [test])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    replayed = sum(report.inputs.values())
    sent = report.journeys[JOURNEY].total("sent")
    rows.append(
        (
            f"back-test of {JOURNEY}: read + replay ({report.users:,} users, {sent:,} sends)",
            f"{replayed:,}",
            f"{elapsed:.2f}",
            f"{replayed / elapsed:,.0f} inputs/s",
        )
    )
    rows.append(
        (
            "  per CPU-second of this process",
            f"{replayed:,}",
            f"{cpu:.2f} CPU s",
            f"{replayed / cpu:,.0f} inputs/s",
        )
    )
    return rows


def _live(folder: Path, items: list[dict[str, Any]], users: int) -> list[tuple[str, str, str, str]]:
    """The live engine on the same inputs: rows of figures."""
    settings = Settings()
    topics = Topics.from_settings(settings)
    tags = [(i["user_id"], orjson.dumps(i)) for i in items[:users]]
    events = [(i["user_id"], orjson.dumps(i)) for i in items[users:]]
    rows: list[tuple[str, str, str, str]] = []
    with contextlib.ExitStack() as stack:
        env = {"REACH_HTTP_PORT": "0", "REACH_PROJECTION_FLUSH_SECONDS": "0.5"}
        system = start_engine(stack, folder, env, "segments")
        assert system.info is not None
        assert system.process is not None
        bootstrap, pid = system.info.broker, system.process.pid

        async def scenario() -> None:
            for path, definitions in (
                ("/v1/presets", load_presets(EXAMPLES / "seed-presets.yaml")),
                ("/v1/segments", load_segments(EXAMPLES / "seed-segments.yaml")),
                ("/v1/journeys", load_journeys(EXAMPLES / "seed-journeys.yaml")),
            ):
                body = [d.model_dump(mode="json") for d in definitions]
                code, answer = await system.http.call("POST", path, body)
                assert code == 200, answer
            code, answer = await system.http.call("POST", f"/v1/journeys/{JOURNEY}/launch")
            assert code == 200, answer
            producer = IngestProducer(
                bootstrap, settings.max_record_bytes, settings.events_per_record
            )
            await producer.start()
            await producer.send_encoded(topics.tags, tags)
            await _wait_inputs([system], users, 600)
            started, cpu = time.perf_counter(), cpu_seconds(pid)
            await producer.send_encoded(topics.events, events)
            done = await _wait_inputs([system], users + len(events), 1800) - users
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
            await producer.stop()
            rows.append(
                (
                    "baseline: the live engine (role segments), same events through Kafka",
                    f"{done:,}",
                    f"{elapsed:.2f}",
                    f"{done / elapsed:,.0f} inputs/s",
                )
            )
            rows.append(
                (
                    "  per CPU-second of the engine process",
                    f"{done:,}",
                    f"{cpu:.2f} CPU s",
                    f"{done / cpu:,.0f} inputs/s",
                )
            )

        asyncio.run(scenario())
    return rows


def run(events: int = 1_000_000, users: int = 100_000, live: bool = True) -> None:
    console.print(f"back-test benchmark: {events:,} events for {users:,} users ...")
    items = list(workload(events, users))
    with tempfile.TemporaryDirectory(prefix="reach-bench-") as folder:
        rows = _offline(Path(folder) / "archive", items)
        if live:
            console.print("the live engine on the same inputs ...")
            rows += _live(Path(folder) / "live", items, users)
    title = f"Back-test benchmark: {JOURNEY} over {events:,} events for {users:,} users"
    print_figures(console, title, ("measure", "count", "time (s)", "figure"), rows)
