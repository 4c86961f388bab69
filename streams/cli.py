"""The ``reach`` command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

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
def demo() -> None:
    """Start everything on embedded defaults, feed samples (and bad records), print, stop."""
    from streams.demo import run_demo

    if not run_demo(_settings()):
        raise click.ClickException("the demo's records did not all arrive")


@main.group()
def bench() -> None:
    """Benchmarks (they print figures next to a baseline measured in the same run)."""


@bench.command(name="ingest")
@click.option("--events", default=500_000, show_default=True)
@click.option("--users", default=100_000, show_default=True)
def bench_ingest(events: int, users: int) -> None:
    """Events/s through ingest -> agent -> ClickHouse, next to a raw aiokafka consumer."""
    from benchmarks.ingest import run

    run(events, users)


@bench.command(name="state")
@click.option("--writes", default=200_000, show_default=True)
@click.option("--keys", default=100_000, show_default=True)
@click.option("--hot-keys", default=10_000, show_default=True)
def bench_state(writes: int, keys: int, hot_keys: int) -> None:
    """Writes/s through the coalescing state table, next to one changelog record per write."""
    from benchmarks.state import run

    run(writes, keys, hot_keys)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def schemas(folder: Path) -> None:
    """Write the JSON Schemas of the input contracts into FOLDER."""
    from schemas.json_schema import write_all

    for path in write_all(folder):
        click.echo(str(path))


if __name__ == "__main__":
    sys.exit(main())
