"""``reach query``: a read-only SQL query on the projections, through the query door.

For analysts: the SQL comes from the argument, a file (``-f FILE``) or stdin (``-``);
``--param name=value`` fills ClickHouse's server-side parameters (``{name:Type}`` in
the query, typed and escaped by ClickHouse, never spliced into the text); ``--format``
prints a table for people or CSV, TSV or JSON lines for programs. A query may start
with a ``--`` comment: it is the SQL, not an option.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import click
import orjson

from cli.output import cell, emit, output_format
from streams.settings import Settings

FORMATS = ("table", "csv", "tsv", "json")

# Unknown options pass through as arguments: "-- a comment\nSELECT 1" is the SQL.
_LENIENT = {"ignore_unknown_options": True}


@click.command(context_settings=_LENIENT)
@click.argument("sql", required=False)
@click.option(
    "-f",
    "--file",
    "source",
    type=click.File("r"),
    default=None,
    help="Read the SQL from FILE ('-': standard input).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value for {NAME:Type} in the query (repeatable); ClickHouse parses it as Type.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="table (default), csv, tsv (with a header) or json (one object per line).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--csv", "as_csv", is_flag=True, help="Same as --format csv.")
@click.option("--api-key", envvar="REACH_API_KEY", default=None, help="Key with the read scope.")
def query(
    sql: str | None,
    source: TextIO | None,
    params: tuple[str, ...],
    fmt: str | None,
    as_json: bool,
    as_csv: bool,
    api_key: str | None,
) -> None:
    """Run a read-only SQL query on the projections (writes are refused).

    SQL is the query, or '-' to read it from standard input. A query may start
    with a '--' comment line: it is read as the query, not as an option.
    Examples (docs/analytics.md has more):

    \b
      reach query "SELECT * FROM journey_daily_stats" --format csv
      reach query -f funnel.sql --param day=2026-11-02
      echo "SELECT count() FROM events" | reach query -
    """
    from cli.common import settings as _settings
    from client.system import HttpClient, running_api

    text = read_sql(sql, source)
    parameters = parse_params(params)
    output = choose_format(fmt, as_json, as_csv)
    settings = _settings()
    url = running_api(settings.data_dir)
    try:
        if url:
            columns, rows = asyncio.run(HttpClient(url, api_key).query(text, parameters))
        else:
            columns, rows = _query_directly(settings, text, parameters)
    except Exception as error:
        raise click.ClickException(str(error).strip().splitlines()[0]) from None
    write(columns, rows, output)


def read_sql(sql: str | None, source: TextIO | None) -> str:
    """The query text: from ``-f FILE``, or the argument ('-' reads standard input)."""
    if source is not None and sql is not None:
        raise click.UsageError("give the SQL as an argument or with -f FILE, not both")
    if source is not None:
        text = source.read()
    elif sql == "-":
        text = click.get_text_stream("stdin").read()
    elif sql is not None:
        text = sql
    else:
        raise click.UsageError("no query: give SQL, '-' (standard input) or -f FILE")
    if not text.strip():
        raise click.UsageError("the query is empty")
    return text.strip().removesuffix(";").rstrip()


def parse_params(params: Sequence[str]) -> dict[str, str] | None:
    """``name=value`` pairs; values stay text, ClickHouse parses them as the query's
    ``{name:Type}`` says."""
    parameters: dict[str, str] = {}
    for param in params:
        name, equals, value = param.partition("=")
        if not equals or not name.isidentifier():
            raise click.BadParameter(f"{param!r}: use NAME=VALUE", param_hint="--param")
        parameters[name] = value
    return parameters or None


def choose_format(fmt: str | None, as_json: bool, as_csv: bool) -> str:
    legacy = output_format(as_json, as_csv)
    if fmt is not None and (as_json or as_csv) and fmt != legacy:
        raise click.UsageError(f"--format {fmt} and --{legacy} exclude each other")
    return fmt or legacy


def plain(value: Any) -> Any:
    """A value as a plain JSON value: decimals are numbers (not text), nested too."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def write(columns: Sequence[str], rows: Sequence[Sequence[Any]], output: str) -> None:
    if output == "json":
        for row in rows:
            record = {column: plain(value) for column, value in zip(columns, row, strict=True)}
            click.echo(orjson.dumps(record, default=str))
    elif output == "tsv":
        buffer = io.StringIO()
        for line in [columns, *rows]:
            buffer.write("\t".join(_tsv(cell(value)) for value in line) + "\n")
        click.echo(buffer.getvalue(), nl=False)
    else:
        emit(columns, rows, "csv" if output == "csv" else "table")


def _tsv(text: str) -> str:
    """ClickHouse's TabSeparated escaping: backslash, tab and newline."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _query_directly(
    settings: Settings, sql: str, parameters: dict[str, str] | None = None
) -> tuple[list[str], list[Any]]:
    # No system runs: open the store ourselves (chDB allows one process per path), then
    # query through the same door and limits as the HTTP API, on a client of its own.
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
        columns, rows = query_read_only(analyst, sql, parameters, settings=None)
    return columns, [list(row) for row in rows]


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
