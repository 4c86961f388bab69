"""What the demo shows at its end and checks: the counts in ClickHouse, the segments,
the journeys' statistics and who got what, and that the terminal, ClickHouse and the
HTML report agree."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from client.system import HttpClient
from projections.journey_stats import format_stats
from projections.report import collect, render_html

console = Console(width=120)

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


async def status(api: HttpClient) -> dict[str, Any]:
    _, status = await api.call("GET", "/v1/status")
    return dict(status)


async def _settled(api: HttpClient, timeout: float = 120) -> None:
    """Until ClickHouse holds every send command and the counts stop moving."""
    deadline = time.monotonic() + timeout
    last: list[Any] = []
    while time.monotonic() < deadline:
        commands = int((await status(api)).get("segments", {}).get("commands", 0))
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


async def check(api: HttpClient, fed: Fed) -> tuple[bool, str]:
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
