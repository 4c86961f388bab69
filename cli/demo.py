"""``reach demo``: the seed campaign on the embedded system, in simulated time.

Starts everything embedded, loads the example workspace (the seed's segments, presets
and journeys), gives a few thousand simulated users two weeks of history, launches the
seed's campaign (once, on Thursday at 09:00 in Paris) and its weekly variant (Fridays
at 17:00 in each user's zone), then plays two weeks hour by hour: the users' events,
the clock, the journeys' emails, the simulated channel's deliveries and opens. Prints
segment sizes and per-step journey statistics from ClickHouse, who got the first
email, who opened it, who got the follow-up, and writes the HTML report; the numbers
in the terminal, in ClickHouse and in the report are checked against each other.
A few invalid records show the dead letters on the way."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from cli.demo_check import LAUNCHED, Fed, check, console
from cli.demo_population import HOUR, events, hourly, people, tags
from client.system import HttpClient
from files.journeys import load as load_journeys
from files.presets import load as load_presets
from files.segments import load as load_segments
from streams.settings import Settings
from streams.ticks import TickDriver
from streams.topics import Topics
from worker.supervisor import SystemProcess

SEED_SEGMENTS = Path(__file__).parents[1] / "examples" / "seed-segments.yaml"
SEED_JOURNEYS = Path(__file__).parents[1] / "examples" / "seed-journeys.yaml"
SEED_PRESETS = Path(__file__).parents[1] / "examples" / "seed-presets.yaml"
MAX_RECORD_BYTES = 100_000  # small, so the demo can show a record over the limit


def invalid_records(now: datetime) -> list[tuple[str, bytes]]:
    """(topic kind, raw record): one of each kind of bad input a producer might send."""
    ts = now.isoformat()
    good = {"user_id": "user-00000", "name": "ScreenOpen", "timestamp": ts}
    return [
        ("events", b"this is not JSON"),
        ("events", orjson.dumps({"name": "ApplicationOpen", "timestamp": ts})),
        ("events", orjson.dumps({"user_id": 42, "name": "ApplicationOpen", "timestamp": ts})),
        (
            "events",
            orjson.dumps(
                {"user_id": "bad-input-2", "name": "ScreenOpen", "timestamp": "next tuesday"}
            ),
        ),
        (
            "tags",
            orjson.dumps(
                {"user_id": "bad-input-3", "op": "explode", "tags": {"a": 1}, "timestamp": ts}
            ),
        ),
        ("events", orjson.dumps({**good, "attributes": {"blob": "x" * MAX_RECORD_BYTES}})),
        # A batch with one bad item: the item is dead-lettered, its neighbours arrive.
        (
            "events",
            orjson.dumps(
                [
                    {**good, "name": "BatchNeighbourBefore"},
                    {**good, "timestamp": True},
                    {**good, "name": "BatchNeighbourAfter"},
                ]
            ),
        ),
    ]


async def _presets(api: HttpClient) -> None:
    """The seed's presets, which its journeys need first, and the campaign's first
    email as a user of each language would get it."""
    presets = [d.model_dump(mode="json") for d in load_presets(SEED_PRESETS)]
    status, body = await api.call("POST", "/v1/presets", presets)
    if status != 200:
        raise RuntimeError(f"/v1/presets answered {status}: {body}")
    console.print(f"defined the seed's presets: {', '.join(p['id'] for p in presets)}")
    table = Table("Language tag", "variant", "subject", title="we-miss-you, rendered")
    for language in ("en", "pt-BR", "hi"):
        tags = {"Language": language, "First Name": "Ana"}
        path = "/v1/presets/we-miss-you/render"
        status, rendered = await api.call("POST", path, {"tags": tags, "user_id": "user-0001"})
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {rendered}")
        table.add_row(language, str(rendered["language"]), rendered["content"]["subject"])
    console.print(table)


# --- the simulation -----------------------------------------------------------------

START = datetime(2026, 12, 7, tzinfo=UTC)
"""A Monday: the seed's once-run is on Thursday 10 December at 09:00 in Paris, and the
weekly journey runs on Fridays at 17:00 in each user's zone."""


async def _post(api: HttpClient, path: str, items: list[Any]) -> None:
    for start in range(0, len(items), 5000):
        status, body = await api.call("POST", path, items[start : start + 5000])
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body}")


async def _workspace(api: HttpClient) -> None:
    await _presets(api)
    segments = [d.model_dump(mode="json") for d in load_segments(SEED_SEGMENTS)]
    journeys = [d.model_dump(mode="json") for d in load_journeys(SEED_JOURNEYS)]
    for path, body, what in [
        ("/v1/segments", segments, "segments"),
        ("/v1/journeys", journeys, "journeys"),
    ]:
        status, answer = await api.call("POST", path, body)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {answer}")
        console.print(f"defined the seed's {what}: {', '.join(d['id'] for d in body)}")


async def _bad_records(system: SystemProcess, topics: Topics, now: datetime) -> int:
    """One of each kind of bad input, straight to Kafka: they go to the dead letters."""
    assert system.info is not None
    producer = AIOKafkaProducer(
        bootstrap_servers=system.info.broker, max_request_size=4 * MAX_RECORD_BYTES
    )
    await producer.start()
    try:
        bad = invalid_records(now)
        for kind, raw in bad:
            await producer.send_and_wait(getattr(topics, kind), raw, partition=0)
    finally:
        await producer.stop()
    return len(bad)


async def _simulate(
    system: SystemProcess, settings: Settings, users: int, days: int, seed: int
) -> Fed:
    api, topics, fed = system.http, Topics.from_settings(settings), Fed()
    rng = random.Random(seed)
    population = people(users, START, rng)
    history = START - timedelta(days=14)
    await _workspace(api)
    profile = [tags(person) for person in population]
    await _post(api, "/v1/tags", profile)
    fed.tags += len(profile)
    past = [e for person in population for e in events(person, history, START, seed)]
    past.sort(key=lambda item: item["timestamp"])
    await _post(api, "/v1/events", past)
    fed.add_events(past)
    fed.dead = await _bad_records(system, topics, history)
    neighbours = orjson.loads(invalid_records(history)[-1][1])
    fed.add_events([neighbours[0], neighbours[2]])  # the bad batch's good items
    assert system.info is not None
    # Each tick waits, in the worker, for the inputs written before it (and for the
    # feedback it releases); with ``wait`` it returns once every partition applied it.
    async with TickDriver(system.info.broker, topics) as clock:
        await clock.tick(START, wait=True)
        for journey_id in LAUNCHED:
            status, body = await api.call("POST", f"/v1/journeys/{journey_id}/launch")
            if status != 200:
                raise RuntimeError(f"launching {journey_id} answered {status}: {body}")
        console.print(
            f"{users:,} users, {len(past):,} events over the 14 days before {START:%a %d %b}; "
            f"launched {', '.join(LAUNCHED)}"
        )
        end = START + timedelta(days=days)
        future = [e for person in population for e in events(person, START, end, seed)]
        hours = hourly(future, START, end)
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=len(hours))
            for hour, batch in enumerate(hours):
                if batch:
                    await _post(api, "/v1/events", batch)
                    fed.add_events(batch)
                # A tick needs no wait to be right (it waits for the inputs before it);
                # waiting once a simulated day keeps the progress bar honest.
                last = hour + 1 == len(hours)
                await clock.tick(START + (hour + 1) * HOUR, wait=last or (hour + 1) % 24 == 0)
                progress.update(
                    task, advance=1, description=f"{START + (hour + 1) * HOUR:%a %d %b %H:00}"
                )
    console.print(f"simulated {days} days: {fed.events:,} events in all")
    return fed


# --- what happened ------------------------------------------------------------------


def run_demo(
    settings: Settings,
    users: int = 2000,
    days: int = 14,
    report_path: Path = Path("reach-demo-report.html"),
    seed: int = 7,
    keep: Path | None = None,
) -> bool:
    """``keep``: the data directory to run in and leave behind (a temporary one,
    deleted at the end, otherwise)."""
    place: contextlib.AbstractContextManager[str]
    if keep is None:
        place = tempfile.TemporaryDirectory(prefix="reach-demo-")
    else:
        keep.mkdir(parents=True, exist_ok=True)
        place = contextlib.nullcontext(str(keep.resolve()))
    with place as folder:
        env = {
            "REACH_HTTP_PORT": "0",
            "REACH_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
            "REACH_DATA_DIR": str(Path(folder)),
            "REACH_CLOCK": "simulated",
            "REACH_PROJECTION_FLUSH_SECONDS": "0.5",
        }
        console.print("starting the broker, the worker and ClickHouse (embedded, simulated time)…")
        started = time.monotonic()
        with SystemProcess(Path(folder), env) as system:
            assert system.info is not None
            console.print(
                f"up in {time.monotonic() - started:.1f}s — HTTP API "
                f"{system.info.http}, broker {system.info.broker}"
            )
            console.print(asyncio.run(simulated_channels(system.info.http)))
            demo_settings = Settings(data_dir=Path(folder))
            fed = asyncio.run(_simulate(system, demo_settings, users, days, seed))
            ok, page = asyncio.run(check(system.http, fed))
            report_path.write_text(page, encoding="utf-8")
            console.print(f"HTML report: {report_path.resolve()}")
            console.print("stopping…")
        console.print(f"done in {time.monotonic() - started:.0f}s")
        if keep is not None:
            console.print(kept_message(Path(folder)), soft_wrap=True)
        return ok


async def simulated_channels(url: str) -> str:
    """Which channels the running worker simulates (``channels`` in its status)."""
    status, body = await HttpClient(url).call("GET", "/v1/status")
    served = body.get("channels", {}) if status == 200 and isinstance(body, dict) else {}
    simulated = [name for name, adapter in served.items() if adapter == "simulated"]
    real = [name for name, adapter in served.items() if adapter != "simulated"]
    return (
        f"simulated channels (nothing is sent): {', '.join(simulated) or 'none'}; "
        f"real: {', '.join(real) or 'none'}"
    )


def kept_message(folder: Path) -> str:
    """How to explore a kept demo's data (the system is stopped: ``reach query`` opens
    the store itself)."""
    return (
        f"the demo's data is kept in {folder}; query it with\n"
        f"  REACH_DATA_DIR={folder} reach query "
        '"SELECT * FROM journey_daily_stats ORDER BY day, journey_id, step"\n'
        f"(docs/analytics.md has the tables and example queries)"
    )
