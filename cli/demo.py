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
import re
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from cli.client import HttpClient
from cli.demo_population import HOUR, events, hourly, people, tags
from projections.journey_stats import format_stats
from projections.report import collect, render_html
from streams.journey_files import load as load_journeys
from streams.preset_files import load as load_presets
from streams.segment_files import load as load_segments
from streams.settings import Settings
from streams.supervisor import SystemProcess
from streams.ticks import TickDriver
from streams.topics import Topics

SEED_SEGMENTS = Path(__file__).parents[1] / "examples" / "seed-segments.yaml"
SEED_JOURNEYS = Path(__file__).parents[1] / "examples" / "seed-journeys.yaml"
SEED_PRESETS = Path(__file__).parents[1] / "examples" / "seed-presets.yaml"
MAX_RECORD_BYTES = 100_000  # small, so the demo can show a record over the limit
console = Console(width=120)


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


async def _wait_for(api: HttpClient, sql: str, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        _, rows = await api.query(sql)
        found = int(rows[0][0])
        if found >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def _report_segments(api: HttpClient) -> None:
    """Members now (the worker's count) next to the ClickHouse membership log."""
    deadline = time.monotonic() + 30
    while True:
        _, status = await api.call("GET", "/v1/status")
        live = status["segments"]["members"]
        _, rows = await api.query(
            "SELECT segment_id, countIf(change = 'entered') - countIf(change = 'exited') "
            "FROM segment_memberships FINAL GROUP BY segment_id"
        )
        logged = dict(rows)
        if all(logged.get(s, 0) == n for s, n in live.items()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    _, segments = await api.call("GET", "/v1/segments")
    table = Table("segment", "expression", "members now", "in ClickHouse", title="Segments")
    for segment in segments["segments"]:
        segment_id = segment["id"]
        table.add_row(
            segment_id,
            segment["expression"],
            str(live.get(segment_id, 0)),
            str(logged.get(segment_id, 0)),
        )
    console.print(table)


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
LAUNCHED = ("reengage-once", "reengage-weekly")


@dataclass
class Fed:
    """What the demo posted, to wait for and to check against."""

    events: int = 0
    tags: int = 0
    dead: int = 0
    distinct: set[bytes] = field(default_factory=set)
    """The events' contents: identical events share a derived id, one row in ClickHouse."""

    def add_events(self, items: list[Any]) -> None:
        self.events += len(items)
        self.distinct.update(orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in items)


async def _post(api: HttpClient, path: str, items: list[Any]) -> None:
    for start in range(0, len(items), 5000):
        status, body = await api.call("POST", path, items[start : start + 5000])
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body}")


async def _status(api: HttpClient) -> dict[str, Any]:
    _, status = await api.call("GET", "/v1/status")
    return dict(status)


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


async def _settled(api: HttpClient, timeout: float = 120) -> None:
    """Until ClickHouse holds every send command and the counts stop moving."""
    deadline = time.monotonic() + timeout
    last: list[Any] = []
    while time.monotonic() < deadline:
        commands = int((await _status(api)).get("segments", {}).get("commands", 0))
        _, rows = await api.query(
            "SELECT (SELECT count() FROM send_commands FINAL), "
            "(SELECT count() FROM journey_activity FINAL), (SELECT count() FROM feedback FINAL)"
        )
        if rows and int(rows[0][0]) >= commands and rows == last:
            return
        last = rows
        await asyncio.sleep(0.5)


async def _who(api: HttpClient, journey_id: str) -> dict[str, list[str]]:
    """Users of the seed campaign by what happened to them, from ClickHouse."""
    _, rows = await api.query(
        "SELECT multiIf(step = 'first-email' AND activity = 'sent', 'got the first email', "
        "step = 'done' AND activity = 'entered' AND detail = 'first-email.opened', "
        "'opened it within 5 days', "
        "step = 'first-email' AND activity = 'not_opened', 'did not', "
        "step = 'second-email' AND activity = 'sent', 'got the follow-up', '') AS what, "
        "groupUniqArray(user_id) FROM journey_activity FINAL "
        "WHERE journey_id = {journey:String} GROUP BY what HAVING what != ''",
        {"journey": journey_id},
    )
    return {what: sorted(users) for what, users in rows}


async def _report(api: HttpClient, fed: Fed) -> tuple[bool, str]:
    """Prints what happened; returns whether every number agrees, and the HTML report."""
    ok = True
    distinct = len(fed.distinct)
    got_events = await _wait_for(api, "SELECT count() FROM events FINAL", distinct, 60)
    got_dead = await _wait_for(api, "SELECT count() FROM dead_letters FINAL", fed.dead, 30)
    _, rows = await api.query(
        "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason ORDER BY reason"
    )
    console.print(
        f"events in ClickHouse {got_events:,}/{distinct:,} distinct; "
        f"dead letters {got_dead}/{fed.dead} ("
        + ", ".join(f"{reason} {count}" for reason, count in rows)
        + ")"
    )
    ok &= got_events == distinct and got_dead == fed.dead
    await _settled(api)
    await _report_segments(api)
    shown: dict[str, dict[str, Any]] = {}
    for journey_id in LAUNCHED:
        status, stats = await api.call("GET", f"/v1/journeys/{journey_id}/stats")
        if status != 200:
            raise RuntimeError(f"stats of {journey_id} answered {status}: {stats}")
        shown[journey_id] = stats
        console.print(f"[bold]{journey_id}[/]")
        console.print(format_stats(stats))
    who = await _who(api, "reengage-once")
    table = Table("the seed campaign (reengage-once)", "users", "for example", title="Who")
    groups = ("got the first email", "opened it within 5 days", "did not", "got the follow-up")
    for what in groups:
        found = who.get(what, [])
        example = ", ".join(found[:4]) + (" …" if len(found) > 4 else "")
        table.add_row(what, str(len(found)), example)
    console.print(table)
    steps = {step["step"]: step for step in shown["reengage-once"]["steps"]}
    first, second = steps.get("first-email", {}), steps.get("second-email", {})
    sent, opened, ignored, followed = (set(who.get(what, [])) for what in groups)
    problems = [
        problem
        for problem, wrong in [
            ("first emails in ClickHouse and in the statistics", len(sent) != first.get("sent")),
            ("opened + not opened = first emails", opened | ignored != sent or opened & ignored),
            ("follow-ups in ClickHouse and in the statistics", len(followed) != second.get("sent")),
            ("follow-ups only to those who did not open", not followed <= ignored),
        ]
        if wrong
    ]
    page = render_html(await collect(api, list(LAUNCHED), None, bucket="hour"))
    in_report = _report_numbers(page)
    for journey_id, stats in shown.items():
        for step in stats["steps"]:
            for metric in ("entered", "sent", "opened", "not_opened", "exited"):
                value = in_report.get((journey_id, step["step"], metric))
                if step[metric] and value != step[metric]:
                    problems.append(f"{journey_id} {step['step']} {metric} in the HTML report")
    agree = not problems
    for problem in problems:
        console.print(f"[red]disagree:[/] {problem}")
    console.print(
        "terminal, ClickHouse and the HTML report "
        + ("[green]agree[/]" if agree else "[red]disagree[/]")
    )
    return ok and agree and first.get("sent", 0) > 0, page


_NUMBER = re.compile(
    r'data-journey="([^"]+)" data-step="([^"]+)" data-metric="([^"]+)" data-value="(\d+)"'
)


def _report_numbers(page: str) -> dict[tuple[str, str, str], int]:
    """(journey, step, metric) -> the number the report shows for it."""
    return {
        (journey, step, metric): int(value)
        for journey, step, metric, value in _NUMBER.findall(page)
    }


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
            demo_settings = Settings(data_dir=Path(folder))
            fed = asyncio.run(_simulate(system, demo_settings, users, days, seed))
            ok, page = asyncio.run(_report(system.http, fed))
            report_path.write_text(page, encoding="utf-8")
            console.print(f"HTML report: {report_path.resolve()}")
            console.print("stopping…")
        console.print(f"done in {time.monotonic() - started:.0f}s")
        if keep is not None:
            console.print(kept_message(Path(folder)), soft_wrap=True)
        return ok


def kept_message(folder: Path) -> str:
    """How to explore a kept demo's data (the system is stopped: ``reach query`` opens
    the store itself)."""
    return (
        f"the demo's data is kept in {folder}; query it with\n"
        f"  REACH_DATA_DIR={folder} reach query "
        '"SELECT * FROM journey_daily_stats ORDER BY day, journey_id, step"\n'
        f"(docs/analytics.md has the tables and example queries)"
    )
