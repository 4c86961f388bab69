"""``reach query``: a read-only SQL query on the projections, through the query door."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from cli.output import emit, format_options, output_format
from streams.settings import Settings


@click.command()
@click.argument("sql")
@format_options
@click.option("--api-key", envvar="REACH_API_KEY", default=None, help="Key with the read scope.")
def query(sql: str, as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """Run a read-only SQL query on the projections (writes are refused)."""
    from cli.client import HttpClient, running_api
    from cli.main import _settings

    settings = _settings()
    url = running_api(settings.data_dir)
    try:
        if url:
            columns, rows = asyncio.run(HttpClient(url, api_key).query(sql))
        else:
            columns, rows = _query_directly(settings, sql)
    except Exception as error:
        raise click.ClickException(str(error).strip().splitlines()[0]) from None
    emit(columns, rows, output_format(as_json, as_csv))


def _query_directly(settings: Settings, sql: str) -> tuple[list[str], list[Any]]:
    # No system runs: open the store ourselves (chDB allows one process per path), then
    # query through the same door and limits as the HTTP API, on a client of its own.
    from cli.main import local_data
    from projections.clickhouse import QueryLimits, connect, connect_analyst, query_read_only

    limits = QueryLimits(
        seconds=settings.query_timeout_seconds,
        memory_bytes=settings.query_max_memory_bytes,
        result_rows=settings.query_max_result_rows,
        result_bytes=settings.query_max_result_bytes,
    )
    with local_data(settings):
        connect(settings.clickhouse, settings.clickhouse_database)
        analyst = connect_analyst(settings.query_clickhouse, settings.clickhouse_database, limits)
        columns, rows = query_read_only(analyst, sql, settings=None)
    return columns, [list(row) for row in rows]
