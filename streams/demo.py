"""``reach demo``: start the system on embedded defaults, feed sample users, events and
tag updates (with a few invalid records), print what arrived, stop everything."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from projections.journey_stats import format_stats
from streams.client import HttpClient
from streams.journey_files import load as load_journeys
from streams.preset_files import load as load_presets
from streams.segment_files import load as load_segments
from streams.settings import Settings
from streams.supervisor import SystemProcess
from streams.topics import Topics

EVENT_NAMES = ("ApplicationOpen", "ScreenOpen", "InAppPurchase", "ApplicationMinimized")
SEED_SEGMENTS = Path(__file__).parents[1] / "examples" / "seed-segments.yaml"
SEED_JOURNEYS = Path(__file__).parents[1] / "examples" / "seed-journeys.yaml"
SEED_PRESETS = Path(__file__).parents[1] / "examples" / "seed-presets.yaml"
MAX_RECORD_BYTES = 100_000  # small, so the demo can show a record over the limit
console = Console(width=120)


def sample_users(count: int, now: datetime, rng: random.Random) -> tuple[list[Any], list[Any]]:
    """Tag updates and events of ``count`` users over the last two weeks."""
    tags, events = [], []
    for number in range(count):
        user = f"user-{number:04d}"
        installed = now - timedelta(days=rng.randint(14, 400))
        tags.append(
            {
                "user_id": user,
                "op": "set",
                "timestamp": installed.isoformat(),
                "tags": {
                    "Country": rng.choice(["PT", "FR", "IN", "DE", "BR"]),
                    "Language": rng.choice(["pt", "fr", "hi", "de", "en"]),
                    "Application Version": {
                        "type": "version",
                        "value": rng.choice(["2.3.1", "2.4.0"]),
                    },
                    "First Install": {"type": "date", "value": installed.isoformat()},
                    "Email": f"{user}@example.com",
                },
            }
        )
        for _ in range(rng.randint(0, 20)):
            at = now - timedelta(minutes=rng.randint(0, 14 * 24 * 60))
            name = rng.choice(EVENT_NAMES)
            attributes: dict[str, Any] = {}
            if name == "InAppPurchase":
                attributes = {
                    "price": {
                        "type": "price",
                        "amount": f"{rng.randint(1, 50)}.99",
                        "currency": "EUR",
                    }
                }
            events.append(
                {
                    "user_id": user,
                    "name": name,
                    "timestamp": at.isoformat(),
                    "attributes": attributes,
                }
            )
        if rng.random() < 0.3:
            tags.append(
                {
                    "user_id": user,
                    "op": "increment",
                    "tags": {"Sessions": 1},
                    "timestamp": now.isoformat(),
                }
            )
    return tags, events


def invalid_records(now: datetime) -> list[tuple[str, bytes]]:
    """(topic kind, raw record): one of each kind of bad input a producer might send."""
    ts = now.isoformat()
    good = {"user_id": "user-0001", "name": "ScreenOpen", "timestamp": ts}
    return [
        ("events", b"this is not JSON"),
        ("events", orjson.dumps({"name": "ApplicationOpen", "timestamp": ts})),
        ("events", orjson.dumps({"user_id": 42, "name": "ApplicationOpen", "timestamp": ts})),
        (
            "events",
            orjson.dumps(
                {"user_id": "user-0002", "name": "ScreenOpen", "timestamp": "next tuesday"}
            ),
        ),
        (
            "tags",
            orjson.dumps(
                {"user_id": "user-0003", "op": "explode", "tags": {"a": 1}, "timestamp": ts}
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


async def _feed(system: SystemProcess, topics: Topics, now: datetime) -> tuple[int, int, int]:
    assert system.info is not None
    rng = random.Random(7)
    tags, events = sample_users(300, now, rng)
    api = system.http
    definitions = [d.model_dump(mode="json") for d in load_segments(SEED_SEGMENTS)]
    status, body = await api.call("POST", "/v1/segments", definitions)
    if status != 200:
        raise RuntimeError(f"/v1/segments answered {status}: {body}")
    console.print(f"defined the seed's segments: {', '.join(d['id'] for d in definitions)}")
    for path, items in (("/v1/tags", tags), ("/v1/events", events)):
        status, body = await api.call("POST", path, items)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body}")
    status, refused = await api.call("POST", "/v1/events", [events[0], {"user_id": "x"}])
    console.print(f"[dim]HTTP ingest of a mixed batch answers {status}:[/] {refused}")
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
    distinct_events = len({orjson.dumps(event) for event in events}) + 2  # + the neighbours
    return distinct_events, len(tags), len(bad) + 0  # one dead letter per bad record


async def _wait_for(api: HttpClient, sql: str, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        _, rows = await api.query(sql)
        found = int(rows[0][0])
        if found >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def _report(system: SystemProcess, expected: tuple[int, int, int]) -> bool:
    api = system.http
    events, tags, dead = expected
    got_events = await _wait_for(api, "SELECT count() FROM events FINAL", events, 60)
    got_tags = await _wait_for(api, "SELECT count() FROM tag_updates FINAL", tags, 30)
    got_dead = await _wait_for(api, "SELECT count() FROM dead_letters FINAL", dead, 30)

    columns, rows = await api.query(
        "SELECT name, count() AS events, uniqExact(user_id) AS users "
        "FROM events FINAL GROUP BY name ORDER BY events DESC"
    )
    table = Table(*columns, title="Events in ClickHouse, per name")
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)

    columns, rows = await api.query(
        "SELECT source_topic AS topic, source_partition AS part, source_offset AS offset, "
        "source_index AS item, reason, substring(detail, 1, 60) AS detail "
        "FROM dead_letters FINAL "
        "ORDER BY source_topic, source_offset, source_index"
    )
    table = Table(*columns, title="Dead letters, with their reasons")
    for row in rows:
        table.add_row(*("-" if value == -1 else str(value) for value in row))
    console.print(table)
    await _report_segments(api)
    ok = (got_events, got_tags, got_dead) == (events, tags, dead)
    console.print(
        f"events {got_events}/{events}, tag updates {got_tags}/{tags}, "
        f"dead letters {got_dead}/{dead}: " + ("[green]all arrived[/]" if ok else "[red]missing[/]")
    )
    return ok


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


async def _campaign(system: SystemProcess) -> bool:
    """The seed's campaign launched now: the first email to every inactive user, which
    the simulated email channel delivers (feedback from the delivery worker), a third
    of them open it (posted feedback: the simulator's own opens come hours later), and
    the journey's statistics from ClickHouse. The follow-up email waits the journey's 5
    days."""
    api = system.http
    await _presets(api)
    [seed] = [j for j in load_journeys(SEED_JOURNEYS) if j.id == "reengage-once"]
    entry = seed.entries[0].model_dump(mode="json")
    journey = seed.model_dump(mode="json") | {
        "id": "demo-reengage",
        "name": "Come back (demo, now)",
        "entries": [entry | {"schedule": {"kind": "now"}}],
    }
    for method, path, body in [
        ("POST", "/v1/journeys", journey),
        ("POST", "/v1/journeys/demo-reengage/launch", None),
    ]:
        status, answer = await api.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {answer}")
    _, status_now = await api.call("GET", "/v1/status")
    audience = status_now["segments"]["members"].get("inactive-7d", 0)
    console.print(f"launched the seed's campaign now: {audience} users have not opened the app")
    await _wait_for(api, "SELECT count() FROM send_commands FINAL", audience, 30)
    _, commands = await api.query(
        "SELECT command_id, user_id FROM send_commands FINAL ORDER BY user_id"
    )
    now = datetime.now(UTC).isoformat()
    feedback = [
        {"command_id": command, "user_id": user, "status": "opened", "channel": "email",
         "timestamp": now}
        for command, user in commands[::3]
    ]  # fmt: skip
    if feedback:
        await api.call("POST", "/v1/feedback", feedback)
    opened = len(commands[::3])
    await _wait_for(
        api, "SELECT countIf(activity = 'opened') FROM journey_activity FINAL", opened, 30
    )
    # Delivered (or bounced) by the simulator a few seconds after each send.
    outcomes = "SELECT count() FROM feedback FINAL WHERE status IN ('delivered', 'bounced')"
    await _wait_for(api, outcomes, len(commands), 30)
    _, stats = await api.call("GET", "/v1/journeys/demo-reengage/stats")
    console.print(format_stats(stats))
    ok = len(commands) == audience and int(stats["journey"]["opened"]) == opened
    console.print(
        f"first emails {len(commands)}/{audience}, opened {stats['journey']['opened']}/{opened}: "
        + ("[green]as expected[/]" if ok else "[red]missing[/]")
    )
    return ok


def run_demo(settings: Settings) -> bool:
    with tempfile.TemporaryDirectory(prefix="reach-demo-") as folder:
        env = {
            "REACH_HTTP_PORT": "0",
            "REACH_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
            "REACH_DATA_DIR": str(Path(folder)),
        }
        console.print("starting the broker, the worker and ClickHouse (embedded)…")
        started = time.monotonic()
        with SystemProcess(Path(folder), env) as system:
            assert system.info is not None
            console.print(
                f"up in {time.monotonic() - started:.1f}s — HTTP API "
                f"{system.info.http}, broker {system.info.broker}"
            )
            topics = Topics.from_settings(settings)
            now = datetime.now(UTC).replace(microsecond=0)
            expected = asyncio.run(_feed(system, topics, now))
            ok = asyncio.run(_report(system, expected))
            ok = asyncio.run(_campaign(system)) and ok
            console.print("stopping…")
        return ok
