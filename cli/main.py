"""The ``reach`` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson

from cli import common
from cli.backtest import backtest
from cli.bench import bench
from cli.channels import channels
from cli.clock import clock
from cli.common import api_key_option
from cli.common import settings as _settings
from cli.definitions import journeys, presets, segments
from cli.explain import explain
from cli.output import cell, emit, format_options, output_format
from cli.query import query as query_command


@click.group()
def main() -> None:
    """reachstream: real-time segments and customer journeys on Kafka and ClickHouse."""


@main.command()
def up() -> None:
    """Run the system until Ctrl-C (broker if none configured, worker, projections, HTTP API)."""
    from worker.runtime import StartupError, run

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
    answer = common.call(api_key, "GET", "/v1/status")
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
    from client import system as client
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
    ("devices", "Send device updates: register, unregister, opt_out, opt_in (docs/devices.md)."),
):

    def _command(source: BinaryIO, validate: bool, partial: bool, kind: str = _kind) -> None:
        _send(kind, source, validate, partial)

    send.command(name=_kind, help=_help)(
        click.argument("source", type=click.File("rb"))(_VALIDATE(_PARTIAL(_command)))
    )


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

    api = common.api(api_key)
    chosen: Bucket = "day" if bucket == "day" else "hour"
    try:
        data = asyncio.run(collect(api, journey_ids or None, segment_ids or None, chosen))
    except ReportError as error:
        raise click.ClickException(str(error)) from None
    write_report(out, data)
    click.echo(f"wrote {out} ({len(data.journeys)} journeys, {len(data.segments)} segments)")


@main.group()
def users() -> None:
    """Act on one user's data."""


@users.command(name="forget")
@click.argument("user_id")
def users_forget(user_id: str) -> None:
    """Delete USER_ID's tags, state and ClickHouse rows (see docs/security.md)."""
    from datetime import UTC

    from client.system import NotRunning, find_broker
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


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def schemas(folder: Path) -> None:
    """Write the JSON Schemas of the input contracts into FOLDER."""
    from schemas.json_schema import write_all

    for path in write_all(folder):
        click.echo(str(path))


for command in (
    segments,
    presets,
    journeys,
    clock,
    bench,
    query_command,
    channels,
    backtest,
    explain,
):
    main.add_command(command)


if __name__ == "__main__":
    sys.exit(main())
