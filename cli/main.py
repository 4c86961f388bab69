"""The ``reach`` command."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import click
import orjson
from click.core import ParameterSource
from pydantic import ValidationError

from cli.client import HttpClient
from cli.output import cell, emit, format_options, output_format
from cli.query import query as query_command
from streams.settings import BrokerStorage, Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"REACH_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


api_key_option = click.option(
    "--api-key", envvar="REACH_API_KEY", default=None, help="Key with the needed scope."
)


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


@main.command()
@format_options
@api_key_option
def status(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """Where the running system is and what it does: broker, HTTP API, data directory,
    role, clock, then its own status (partitions, counters, ...)."""
    from streams import runfile

    settings = _settings()
    info = runfile.read(settings.data_dir)
    if info is None:
        raise click.ClickException(
            f"no system is running from {settings.data_dir} (start one with `reach up`)"
        )
    answer = _call(api_key, "GET", "/v1/status")
    found: dict[str, Any] = {
        "broker": answer.get("broker", info.broker),
        "http": info.http,
        "data_dir": str(settings.data_dir),
        "pid": info.pid,
        "role": info.role or answer.get("role", "unknown"),
        "clock": answer.get("clock", {"mode": info.clock or "unknown"}),
    }
    found.update({key: value for key, value in answer.items() if key not in found})
    output = output_format(as_json, as_csv)
    if output == "json":
        click.echo(orjson.dumps(found, default=str))
        return
    rows = list(_flatten(found))
    if output == "csv":
        emit(("setting", "value"), rows, "csv")
        return
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {cell(value)}")


def _flatten(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested objects as dotted keys; lists stay whole (printed joined)."""
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@main.group()
def send() -> None:
    """Produce NDJSON records (one JSON object per line) to an input topic."""


SHOWN_INVALID_LINES = 20


def _send(kind: str, source: BinaryIO, validate: bool, partial: bool) -> None:
    from cli import client
    from streams.topics import Topics

    settings = _settings()
    topic = getattr(Topics.from_settings(settings), kind)
    lines = list(source)
    skipped = 0
    if validate:
        # The workers' own codec: what it refuses would only show up as dead letters.
        lines, invalid = client.check_lines(kind, lines, settings.max_record_bytes)
        for problem in invalid[:SHOWN_INVALID_LINES]:
            click.echo(f"line {problem.line}: {problem.reason}: {problem.detail[:300]}", err=True)
        if len(invalid) > SHOWN_INVALID_LINES:
            click.echo(f"... and {len(invalid) - SHOWN_INVALID_LINES} more", err=True)
        if invalid and not partial:
            raise click.ClickException(
                f"{len(invalid)} of {len(lines) + len(invalid)} lines are invalid; nothing "
                "was sent (--partial sends the valid ones, --no-validate sends every line)"
            )
        if invalid and not lines:
            raise click.ClickException(f"none of the {len(invalid)} lines is valid; nothing sent")
        skipped = len(invalid)
    try:
        items, records = asyncio.run(client.send_ndjson(settings, topic, lines))
    except client.NotRunning as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"sent {items} lines to {topic} in {records} records"
        + (f"; skipped {skipped} invalid lines" if skipped else "")
    )


_VALIDATE = click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Check every line as the workers will before sending; any invalid line "
    "stops the command with nothing sent. --no-validate sends every line as it is "
    "(invalid ones become dead letters).",
)
_PARTIAL = click.option(
    "--partial", is_flag=True, help="Send the valid lines, list the invalid ones and skip them."
)

for _kind, _help in (
    ("events", "Send behavioural events."),
    ("tags", "Send tag updates."),
    ("feedback", "Send message feedback."),
):

    def _command(source: BinaryIO, validate: bool, partial: bool, kind: str = _kind) -> None:
        _send(kind, source, validate, partial)

    send.command(name=_kind, help=_help)(
        click.argument("source", type=click.File("rb"))(_VALIDATE(_PARTIAL(_command)))
    )


def require_local_data(settings: Settings) -> None:
    """Refuse to open an embedded ClickHouse store that does not exist (opening it
    would create an empty one and answer from it): a wrong REACH_DATA_DIR, most
    likely. A ClickHouse server (REACH_CLICKHOUSE_DSN=http...) is not checked."""
    dsn = settings.clickhouse
    if not dsn.startswith("chdb://"):
        return
    store = Path(dsn.removeprefix("chdb://"))
    if not (store / "metadata" / f"{settings.clickhouse_database}.sql").is_file():
        raise click.ClickException(
            f"no data here: is REACH_DATA_DIR right? (no ClickHouse database "
            f"'{settings.clickhouse_database}' in {store})"
        )


@contextlib.contextmanager
def local_data(settings: Settings) -> Iterator[None]:
    """While opening the data directory's embedded store ourselves: the store must
    exist, and the directory's lock is held, so no system starts on it meanwhile."""
    from streams import runfile

    require_local_data(settings)
    if not settings.clickhouse.startswith("chdb://"):
        yield
        return
    try:
        held = runfile.hold(settings.data_dir)
    except runfile.AlreadyRunning as error:
        raise click.ClickException(f"{error}; try again once it is up") from None
    try:
        yield
    finally:
        held.release()


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
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run in DIR (empty or new) and keep the data there, to query it afterwards.",
)
def demo(users: int, days: int, report_path: Path, keep: Path | None) -> None:
    """The seed campaign end to end on embedded defaults, in simulated time."""
    from cli.demo import run_demo

    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise click.UsageError(f"--keep {keep}: the folder is not empty")
    if not run_demo(_settings(), users=users, days=days, report_path=report_path, keep=keep):
        raise click.ClickException("the demo's numbers do not all agree (see above)")


def _api(api_key: str | None) -> HttpClient:
    from cli.client import HttpClient, running_api

    url = running_api(_settings().data_dir)
    if url is None:
        raise click.ClickException("no system is running from this data dir (start `reach up`)")
    return HttpClient(url, api_key)


def _call(api_key: str | None, method: str, path: str, body: Any = None) -> Any:
    import aiohttp

    api = _api(api_key)
    try:
        status, answer = asyncio.run(api.call(method, path, body))
    except aiohttp.ClientError as error:
        raise click.ClickException(f"the system at {api.url} does not answer: {error}") from None
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        raise click.ClickException(str(message))
    return answer


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
@format_options
@api_key_option
def segments_list(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """The live segments."""
    columns = ("id", "version", "name", "expression")
    rows = [
        [segment[column] for column in columns]
        for segment in _call(api_key, "GET", "/v1/segments")["segments"]
    ]
    emit(columns, rows, output_format(as_json, as_csv))


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
@format_options
@api_key_option
def presets_list(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """The presets, their channel, version and languages (the default one first)."""
    rows = [
        [
            preset["id"],
            preset["channel"],
            preset["version"],
            preset["name"],
            [preset["default_language"] or "(base)", *preset["languages"]],
        ]
        for preset in _call(api_key, "GET", "/v1/presets")["presets"]
    ]
    emit(("id", "channel", "version", "name", "languages"), rows, output_format(as_json, as_csv))


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
@format_options
@api_key_option
def journeys_list(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """The journeys, their status, latest version, launches and entries.

    A launched journey shows as finished once no entry can admit anyone any more (its
    audience schedules have had their last run) and nobody is inside."""
    columns = ("id", "status", "version", "launch", "name", "entries")
    rows = [
        [journey[column] for column in columns]
        for journey in _call(api_key, "GET", "/v1/journeys")["journeys"]
    ]
    emit(columns, rows, output_format(as_json, as_csv), joiners={"entries": "; "})


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
@format_options
@api_key_option
def journeys_stats(journey_id: str, as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """A journey's status and statistics, from its activity in ClickHouse.

    --json prints the whole answer (totals and steps) as one JSON object; --csv one
    row per step."""
    from projections.journey_stats import STEP_COUNTS, format_stats

    stats = _call(api_key, "GET", f"/v1/journeys/{journey_id}/stats")
    output = output_format(as_json, as_csv)
    if output == "json":
        click.echo(orjson.dumps(stats))
    elif output == "csv":
        columns = ("step", *STEP_COUNTS)
        rows = [
            [step["step"], *(step.get(name, 0) for name in STEP_COUNTS)] for step in stats["steps"]
        ]
        emit(columns, rows, "csv")
    else:
        click.echo(format_stats(stats))


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
@api_key_option
def clock_tick(moment: str, wait: bool, timeout: float, api_key: str | None) -> None:
    """Move simulated time to MOMENT (ISO 8601 or epoch ms); due timers fire."""
    from schemas.values import parse_timestamp

    try:
        instant = parse_timestamp(int(moment) if moment.isdigit() else moment)
    except ValueError:
        raise click.BadParameter(f"{moment!r}: use ISO 8601 or epoch milliseconds") from None
    _tick(instant, wait, timeout, api_key)


@clock.command(name="advance")
@click.argument("duration")
@_wait_option
@_timeout_option
@api_key_option
def clock_advance(duration: str, wait: bool, timeout: float, api_key: str | None) -> None:
    """Move simulated time forward by DURATION (e.g. 30m, 2h, 7d) from the engine's now."""
    from schemas.values import parse_timestamp

    status = _call(api_key, "GET", "/v1/status")
    _tick(parse_timestamp(status["clock"]["now"]) + _duration(duration), wait, timeout, api_key)


def _duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"{text!r}: use a number and one of s, m, h, d, w (e.g. 7d)")
    return timedelta(**{units[unit]: int(number)})


def _tick(moment: datetime, wait: bool, timeout: float, api_key: str | None) -> None:
    from cli import client
    from streams.ticks import TickTimeout
    from streams.topics import Topics

    settings = _settings()
    try:
        client.find_broker(settings)  # no system at all: say that first
        _require_simulated_clock(settings, api_key)
        count = asyncio.run(
            client.send_tick(settings, Topics.from_settings(settings).clock, moment, wait, timeout)
        )
    except (client.NotRunning, TickTimeout) as error:
        raise click.ClickException(str(error)) from None
    done = "applied" if wait else "ticked"
    click.echo(f"{done} {moment.isoformat()} on {count} partitions")


def _require_simulated_clock(settings: Settings, api_key: str | None) -> None:
    """A wall-clock system ignores ticks: refuse rather than report a tick that does
    nothing. The mode comes from the running system (its run file, else its status);
    with no system running from this data directory (a configured broker), from
    REACH_CLOCK here, which must agree with the workers'."""
    from streams import runfile

    info = runfile.read(settings.data_dir)
    mode: str
    if info is None:
        mode, source = settings.clock, "REACH_CLOCK here"
    elif info.clock:
        mode, source = info.clock, "the running system"
    else:
        mode = str(_call(api_key, "GET", "/v1/status")["clock"]["mode"])
        source = "the running system"
    if mode != "simulated":
        raise click.ClickException(
            f"{source} runs on the wall clock, which ignores ticks; simulated time needs "
            "REACH_CLOCK=simulated when the system starts"
        )


@main.group()
def users() -> None:
    """Act on one user's data."""


@users.command(name="forget")
@click.argument("user_id")
def users_forget(user_id: str) -> None:
    """Delete USER_ID's tags, state and ClickHouse rows (see docs/security.md)."""
    from datetime import UTC

    from cli.client import NotRunning, find_broker
    from streams.forget import BadUser, forget_request, send_forget
    from streams.topics import Topics

    settings = _settings()
    try:
        request = forget_request(user_id, datetime.now(UTC))
        bootstrap = find_broker(settings)
        topic = Topics.from_settings(settings).tags
        partition = asyncio.run(send_forget(bootstrap, topic, request))
    except (BadUser, NotRunning) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"forgetting {user_id}: request sent to {topic} partition {partition}; the workers "
        "delete the user's state and rows when they reach it"
    )


@main.group()
def bench() -> None:
    """Benchmarks (they print figures next to a baseline measured in the same run)."""


_STORAGE = click.option(
    "--storage",
    type=click.Choice(["both", "durable", "memory"]),
    default="both",
    show_default=True,
    help="The embedded broker's storage; both: durable, then memory, in one table.",
)


def _storages(choice: str) -> tuple[BrokerStorage, ...]:
    return ("durable", "memory") if choice == "both" else (cast(BrokerStorage, choice),)


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
@_STORAGE
def bench_ingest(events: int, users: int, role: str, storage: str) -> None:
    """Events/s through ingest -> agent -> ClickHouse, next to a raw aiokafka consumer."""
    from benchmarks.ingest import run

    run(events, users, role, _storages(storage))


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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="N > 1: also measure the throughput of N engine processes in one consumer group "
    "(role segments, the default then), next to one process's in the same run.",
)
@_STORAGE
@click.pass_context
def bench_segments(
    ctx: click.Context,
    users: int,
    event_count: int,
    memory_users: int,
    latency_rate: float,
    role: str,
    workers: int,
    storage: str,
) -> None:
    """Events/s through the segment agents, latency p50/p99, memory per user."""
    from benchmarks.segments import run

    if workers > 1 and role != "segments":
        if ctx.get_parameter_source("role") is not ParameterSource.DEFAULT:
            raise click.UsageError(f"--workers {workers} needs --role segments")
        role = "segments"
    partitions = _settings().partitions
    if workers > partitions:
        raise click.UsageError(f"--workers {workers} is more than the {partitions} partitions")
    run(users, event_count, memory_users, latency_rate, role, _storages(storage), workers)


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


@bench.command(name="rollups")
@click.option("--rows", type=click.IntRange(min=1), default=20_000_000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
def bench_rollups(rows: int, repeats: int) -> None:
    """Daily journey stats from the rollup, next to the raw facts with FINAL."""
    from benchmarks.rollups import run

    run(rows, repeats)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def schemas(folder: Path) -> None:
    """Write the JSON Schemas of the input contracts into FOLDER."""
    from schemas.json_schema import write_all

    for path in write_all(folder):
        click.echo(str(path))


main.add_command(query_command)

if __name__ == "__main__":
    sys.exit(main())
