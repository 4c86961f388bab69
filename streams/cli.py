"""The ``reach`` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from streams.client import HttpClient
from streams.settings import Settings

console = Console()


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"REACH_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


@click.group()
def main() -> None:
    """reachstream: real-time segments and customer journeys on Kafka and ClickHouse."""


@main.command()
def up() -> None:
    """Run the system until Ctrl-C (broker if none configured, worker, projections, HTTP API)."""
    from streams.runtime import StartupError, run

    try:
        run(_settings())
    except StartupError as error:
        raise click.ClickException(str(error)) from None


@main.group()
def send() -> None:
    """Produce NDJSON records (one JSON object per line) to an input topic."""


def _send(kind: str, source: BinaryIO) -> None:
    from streams.client import NotRunning, send_ndjson
    from streams.topics import Topics

    settings = _settings()
    topic = getattr(Topics.from_settings(settings), kind)
    lines = list(source)
    try:
        items, records = asyncio.run(send_ndjson(settings, topic, lines))
    except NotRunning as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"sent {items} lines to {topic} in {records} records")


for _kind, _help in (
    ("events", "Send behavioural events."),
    ("tags", "Send tag updates."),
    ("feedback", "Send message feedback."),
):

    def _command(source: BinaryIO, kind: str = _kind) -> None:
        _send(kind, source)

    send.command(name=_kind, help=_help)(click.argument("source", type=click.File("rb"))(_command))


@main.command()
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON lines.")
@click.option("--api-key", envvar="REACH_API_KEY", default=None, help="Key with the read scope.")
def query(sql: str, as_json: bool, api_key: str | None) -> None:
    """Run a read-only SQL query on the projections (writes are refused)."""
    from streams.client import HttpClient, running_api

    settings = _settings()
    url = running_api(settings.data_dir)
    try:
        if url:
            columns, rows = asyncio.run(HttpClient(url, api_key).query(sql))
        else:
            columns, rows = _query_directly(settings, sql)
    except Exception as error:
        raise click.ClickException(str(error).strip().splitlines()[0]) from None
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(dict(zip(columns, row, strict=True)), default=str))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


def _query_directly(settings: Settings, sql: str) -> tuple[list[str], list[Any]]:
    # No system runs: open the store ourselves (chDB allows one process per path).
    from projections.clickhouse import connect, query_read_only

    columns, rows = query_read_only(connect(settings.clickhouse, settings.clickhouse_database), sql)
    return columns, [list(row) for row in rows]


@main.command()
@click.option("--users", default=2000, show_default=True, type=click.IntRange(min=10))
@click.option("--days", default=14, show_default=True, type=click.IntRange(min=1, max=60))
@click.option(
    "--report",
    "report_path",
    default="reach-demo-report.html",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
def demo(users: int, days: int, report_path: Path) -> None:
    """The seed campaign end to end on embedded defaults, in simulated time."""
    from streams.demo import run_demo

    if not run_demo(_settings(), users=users, days=days, report_path=report_path):
        raise click.ClickException("the demo's numbers do not all agree (see above)")


def _api(api_key: str | None) -> HttpClient:
    from streams.client import HttpClient, running_api

    url = running_api(_settings().data_dir)
    if url is None:
        raise click.ClickException("no system is running from this data dir (start `reach up`)")
    return HttpClient(url, api_key)


def _call(api_key: str | None, method: str, path: str, body: Any = None) -> Any:
    status, answer = asyncio.run(_api(api_key).call(method, path, body))
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        raise click.ClickException(str(message))
    return answer


api_key_option = click.option(
    "--api-key", envvar="REACH_API_KEY", default=None, help="Key with the needed scope."
)


@main.group()
def segments() -> None:
    """Define, list and inspect segments (through the running system's HTTP API)."""


@segments.command(name="apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_key_option
def segments_apply(path: Path, api_key: str | None) -> None:
    """Create or change the segments in a JSON or YAML file (one or a list)."""
    from streams.segment_files import DefinitionError, load

    try:
        definitions = load(path)
    except DefinitionError as error:
        raise click.ClickException(str(error)) from None
    body = [definition.model_dump(mode="json") for definition in definitions]
    for applied in _call(api_key, "POST", "/v1/segments", body)["applied"]:
        click.echo(f"applied {applied['id']} (version {applied['version']})")


@segments.command(name="list")
@api_key_option
def segments_list(api_key: str | None) -> None:
    """The live segments."""
    table = Table("id", "version", "name", "expression")
    for segment in _call(api_key, "GET", "/v1/segments")["segments"]:
        table.add_row(
            segment["id"], str(segment["version"]), segment["name"], segment["expression"]
        )
    console.print(table)


@segments.command(name="show")
@click.argument("segment_id")
@api_key_option
def segments_show(segment_id: str, api_key: str | None) -> None:
    """One segment's definition, as JSON, with its expression."""
    click.echo(
        orjson.dumps(
            _call(api_key, "GET", f"/v1/segments/{segment_id}"), option=orjson.OPT_INDENT_2
        )
    )


@segments.command(name="delete")
@click.argument("segment_id")
@api_key_option
def segments_delete(segment_id: str, api_key: str | None) -> None:
    """Delete a segment: its members all exit."""
    answer = _call(api_key, "DELETE", f"/v1/segments/{segment_id}")
    click.echo(f"deleted {answer['deleted']} (version {answer['version']})")


@segments.command(name="preview")
@click.argument("expression")
@click.option("--sample", default=10, show_default=True, help="How many members to show.")
@api_key_option
def segments_preview(expression: str, sample: int, api_key: str | None) -> None:
    """Count and sample the users matching EXPRESSION now, without saving anything."""
    answer = _call(
        api_key, "POST", "/v1/segments/preview", {"expression": expression, "sample": sample}
    )
    click.echo(f"{answer['members']} of {answer['users']} users match")
    for user in answer["sample"]:
        click.echo(f"  {user}")


@main.group()
def presets() -> None:
    """Define, list, inspect and preview content presets (through the HTTP API)."""


@presets.command(name="apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_key_option
def presets_apply(path: Path, api_key: str | None) -> None:
    """Create or change the presets in a JSON or YAML file (one or a list)."""
    from streams.preset_files import from_document

    _apply_file(path, api_key, "/v1/presets", from_document)


@presets.command(name="list")
@api_key_option
def presets_list(api_key: str | None) -> None:
    """The presets, their channel, version and languages."""
    table = Table("id", "channel", "version", "name", "languages")
    for preset in _call(api_key, "GET", "/v1/presets")["presets"]:
        languages = [preset["default_language"] or "(base)", *preset["languages"]]
        table.add_row(
            preset["id"],
            preset["channel"],
            str(preset["version"]),
            preset["name"],
            ", ".join(languages),
        )
    console.print(table)


@presets.command(name="show")
@click.argument("preset_id")
@api_key_option
def presets_show(preset_id: str, api_key: str | None) -> None:
    """A preset's definition and the journeys that send it, as JSON."""
    answer = _call(api_key, "GET", f"/v1/presets/{preset_id}")
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2))


@presets.command(name="delete")
@click.argument("preset_id")
@api_key_option
def presets_delete(preset_id: str, api_key: str | None) -> None:
    """Delete a preset no journey may still send."""
    answer = _call(api_key, "DELETE", f"/v1/presets/{preset_id}")
    click.echo(f"deleted {answer['deleted']} (version {answer['version']})")


@presets.command(name="render")
@click.argument("preset_id")
@click.option("--tags", default="{}", help='The user\'s tags, a JSON object: {"Language": "pt"}.')
@click.option("--properties", default="{}", help="Entry properties, a JSON object.")
@click.option("--user-id", default="", help="The user id ({{user_id}}).")
@api_key_option
def presets_render(
    preset_id: str, tags: str, properties: str, user_id: str, api_key: str | None
) -> None:
    """Preview PRESET_ID as a user with these tags and properties would get it."""
    body = {
        "tags": _json_object(tags, "--tags"),
        "properties": _json_object(properties, "--properties"),
        "user_id": user_id,
    }
    answer = _call(api_key, "POST", f"/v1/presets/{preset_id}/render", body)
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2))


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return parsed


@main.group()
def journeys() -> None:
    """Define, drive and inspect journeys (through the running system's HTTP API)."""


@journeys.command(name="apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_key_option
def journeys_apply(path: Path, api_key: str | None) -> None:
    """Create journeys or new versions of them from a JSON or YAML file (one or a list)."""
    from streams.journey_files import from_document

    _apply_file(path, api_key, "/v1/journeys", from_document)


def _apply_file(
    path: Path, api_key: str | None, route: str, check: Callable[[Any], object]
) -> None:
    """Check a definition file locally, then send it as written: the server reads it
    the same way, and a re-dump could change it."""
    from streams.definition_files import DefinitionError, read

    try:
        document = read(path)
        check(document)  # the file's own errors, before anything is sent
    except DefinitionError as error:
        raise click.ClickException(str(error)) from None
    for applied in _call(api_key, "POST", route, document)["applied"]:
        click.echo(f"applied {applied['id']} (version {applied['version']})")


def _journey_action(action: str, help_text: str) -> None:
    def command(journey_id: str, api_key: str | None) -> None:
        answer = _call(api_key, "POST", f"/v1/journeys/{journey_id}/{action}")
        click.echo(f"{answer['id']}: {answer['status']} (launch {answer['launch']})")

    journeys.command(name=action, help=help_text)(
        click.argument("journey_id")(api_key_option(command))
    )


for _action, _action_help in (
    ("launch", "Launch a draft or stopped journey (each launch is a new run)."),
    ("pause", "Pause a launched journey."),
    ("resume", "Resume a paused journey."),
    ("stop", "Stop a launched or paused journey."),
):
    _journey_action(_action, _action_help)


@journeys.command(name="rename")
@click.argument("journey_id")
@click.argument("name")
@api_key_option
def journeys_rename(journey_id: str, name: str, api_key: str | None) -> None:
    """Give a journey a new name (in any state)."""
    answer = _call(api_key, "POST", f"/v1/journeys/{journey_id}/rename", {"name": name})
    click.echo(f"{answer['id']}: renamed to {answer['name']}")


@journeys.command(name="list")
@api_key_option
def journeys_list(api_key: str | None) -> None:
    """The journeys, their status, latest version, launches and entries.

    A launched journey shows as finished once no entry can admit anyone any more (its
    audience schedules have had their last run) and nobody is inside."""
    table = Table("id", "status", "version", "launch", "name", "entries")
    for journey in _call(api_key, "GET", "/v1/journeys")["journeys"]:
        table.add_row(
            journey["id"],
            journey["status"],
            str(journey["version"]),
            str(journey["launch"]),
            journey["name"],
            "; ".join(journey["entries"]),
        )
    console.print(table)


@journeys.command(name="show")
@click.argument("journey_id")
@click.option("--version", type=click.IntRange(min=1), default=None, help="An older version.")
@api_key_option
def journeys_show(journey_id: str, version: int | None, api_key: str | None) -> None:
    """A journey's definition (the latest, or --version N) with its status, as JSON."""
    query = f"?version={version}" if version is not None else ""
    answer = _call(api_key, "GET", f"/v1/journeys/{journey_id}{query}")
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2))


@journeys.command(name="enter")
@click.argument("journey_id")
@click.argument("user_id")
@click.option("--properties", default="{}", help="A JSON object the messages can use.")
@api_key_option
def journeys_enter(journey_id: str, user_id: str, properties: str, api_key: str | None) -> None:
    """Put USER_ID into a launched journey that has an API entry."""
    try:
        parsed = orjson.loads(properties)
    except orjson.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--properties") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--properties")
    body = {"users": [{"user_id": user_id, "properties": parsed}]}
    answer = _call(api_key, "POST", f"/v1/journeys/{journey_id}/entries", body)
    click.echo(f"entered {user_id} into {journey_id} (entry {answer['entry_ids'][0]})")


@journeys.command(name="stats")
@click.argument("journey_id")
@api_key_option
def journeys_stats(journey_id: str, api_key: str | None) -> None:
    """A journey's status and statistics, from its activity in ClickHouse."""
    from projections.journey_stats import format_stats

    click.echo(format_stats(_call(api_key, "GET", f"/v1/journeys/{journey_id}/stats")))


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--journey", "journey_ids", multiple=True, help="A journey (default: all).")
@click.option("--segment", "segment_ids", multiple=True, help="A segment (default: all).")
@click.option(
    "--bucket",
    type=click.Choice(["hour", "day"]),
    default="hour",
    show_default=True,
    help="Segment sizes per hour or per day.",
)
@api_key_option
def report(
    out: Path,
    journey_ids: tuple[str, ...],
    segment_ids: tuple[str, ...],
    bucket: str,
    api_key: str | None,
) -> None:
    """Write an HTML report to OUT: journey graphs with counts, segment sizes over time."""
    from projections.report import Bucket, ReportError, collect, write_report

    api = _api(api_key)
    chosen: Bucket = "day" if bucket == "day" else "hour"
    try:
        data = asyncio.run(collect(api, journey_ids or None, segment_ids or None, chosen))
    except ReportError as error:
        raise click.ClickException(str(error)) from None
    write_report(out, data)
    click.echo(f"wrote {out} ({len(data.journeys)} journeys, {len(data.segments)} segments)")


@main.group()
def clock() -> None:
    """Drive simulated time (REACH_CLOCK=simulated): ticks on the clock topic."""


_wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Return once every partition has applied the tick and its outputs are written.",
)
_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=120.0,
    show_default=True,
    help="Seconds --wait waits.",
)


@clock.command(name="tick")
@click.argument("moment")
@_wait_option
@_timeout_option
def clock_tick(moment: str, wait: bool, timeout: float) -> None:
    """Move simulated time to MOMENT (ISO 8601 or epoch ms); due timers fire."""
    from schemas.values import parse_timestamp

    try:
        instant = parse_timestamp(int(moment) if moment.isdigit() else moment)
    except ValueError:
        raise click.BadParameter(f"{moment!r}: use ISO 8601 or epoch milliseconds") from None
    _tick(instant, wait, timeout)


@clock.command(name="advance")
@click.argument("duration")
@_wait_option
@_timeout_option
@api_key_option
def clock_advance(duration: str, wait: bool, timeout: float, api_key: str | None) -> None:
    """Move simulated time forward by DURATION (e.g. 30m, 2h, 7d) from the engine's now."""
    from schemas.values import parse_timestamp

    status = _call(api_key, "GET", "/v1/status")
    _tick(parse_timestamp(status["clock"]["now"]) + _duration(duration), wait, timeout)


def _duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"{text!r}: use a number and one of s, m, h, d, w (e.g. 7d)")
    return timedelta(**{units[unit]: int(number)})


def _tick(moment: datetime, wait: bool, timeout: float) -> None:
    from streams.client import NotRunning, send_tick
    from streams.ticks import TickTimeout
    from streams.topics import Topics

    settings = _settings()
    try:
        count = asyncio.run(
            send_tick(settings, Topics.from_settings(settings).clock, moment, wait, timeout)
        )
    except (NotRunning, TickTimeout) as error:
        raise click.ClickException(str(error)) from None
    done = "applied" if wait else "ticked"
    click.echo(f"{done} {moment.isoformat()} on {count} partitions")


@main.group()
def bench() -> None:
    """Benchmarks (they print figures next to a baseline measured in the same run)."""


@bench.command(name="ingest")
@click.option("--events", default=500_000, show_default=True)
@click.option("--users", default=100_000, show_default=True)
@click.option(
    "--role",
    type=click.Choice(["projections", "all"]),
    default="projections",
    show_default=True,
    help="The worker's role: all also keeps segment state per user.",
)
def bench_ingest(events: int, users: int, role: str) -> None:
    """Events/s through ingest -> agent -> ClickHouse, next to a raw aiokafka consumer."""
    from benchmarks.ingest import run

    run(events, users, role)


_ENGINE_ROLE = click.option(
    "--role",
    type=click.Choice(["all", "segments"]),
    default="all",
    show_default=True,
    help="segments: the engine (segments and journeys) in a process of its own, "
    "projections in another.",
)


@bench.command(name="segments")
@click.option("--users", default=100_000, show_default=True)
@click.option("--events", "event_count", default=300_000, show_default=True)
@click.option(
    "--memory-users",
    default=0,
    show_default=True,
    help="Also load this many users in all and report memory per user.",
)
@click.option(
    "--latency-rate",
    default=0.0,
    help="Events/s during the latency probe (default: half the measured throughput).",
)
@_ENGINE_ROLE
def bench_segments(
    users: int, event_count: int, memory_users: int, latency_rate: float, role: str
) -> None:
    """Events/s through the segment agents, latency p50/p99, memory per user."""
    from benchmarks.segments import run

    run(users, event_count, memory_users, latency_rate, role)


@bench.command(name="state")
@click.option("--writes", default=200_000, show_default=True)
@click.option("--keys", default=100_000, show_default=True)
@click.option("--hot-keys", default=10_000, show_default=True)
def bench_state(writes: int, keys: int, hot_keys: int) -> None:
    """Writes/s through the coalescing state table, next to one changelog record per write."""
    from benchmarks.state import run

    run(writes, keys, hot_keys)


@bench.command(name="journeys")
@click.option("--users", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--latency-users", type=click.IntRange(min=1), default=2_000, show_default=True)
@click.option("--latency-rate", type=click.FloatRange(min=1), default=200.0, show_default=True)
@click.option("--timers", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@_ENGINE_ROLE
def bench_journeys(
    users: int, latency_users: int, latency_rate: float, timers: int, role: str
) -> None:
    """Audience launch commands/s, feedback -> next step latency, memory per pending timer."""
    from benchmarks.journeys import run

    run(users, latency_users, latency_rate, timers, role)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def schemas(folder: Path) -> None:
    """Write the JSON Schemas of the input contracts into FOLDER."""
    from schemas.json_schema import write_all

    for path in write_all(folder):
        click.echo(str(path))


if __name__ == "__main__":
    sys.exit(main())
