"""The ClickHouse client: embedded chDB (``chdb://dir``) or a server (``http://...``).

Both go through clickhouse-connect, so the code path is the same at both scales.
Calls block; callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import clickhouse_connect
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.common import StreamContext
from clickhouse_connect.driver.query import QueryResult

from projections.query_guard import check_explain_ast, check_query

READ_ONLY = {"readonly": 1}


def connect(dsn: str, database: str) -> Client:
    """Open a client and apply the projection tables (idempotent: IF NOT EXISTS)."""
    if dsn.startswith("chdb://"):
        # Importing chdb registers its clickhouse-connect backend.
        import chdb  # noqa: F401
    client = clickhouse_connect.get_client(dsn=dsn)
    apply_schema(client, database)
    # clickhouse-connect imports pandas lazily on the first insert (seconds here);
    # pay for it now rather than on the hot path.
    from clickhouse_connect.driver import options

    _ = options.pd
    return client


def sql_files() -> list[tuple[str, str]]:
    folder = importlib.resources.files("projections").joinpath("sql")
    return sorted(
        (entry.name, entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".sql")
    )


def apply_schema(client: Client, database: str) -> None:
    """Apply every file in order; the first creates the database, the rest run inside
    it (a view resolves its unqualified tables in the database current at creation).
    Tables of an earlier layout are upgraded in place first (``migrate``)."""
    first, *rest = sql_files()
    client.command(first[1], parameters={"database": database})
    client.database = database
    files = dict(rest)
    migrate(client, database, files)
    for text in files.values():
        client.command(text, parameters={"database": database})
        view = ROLLUP_VIEW.search(text)
        if view is not None:
            backfill(client, database, view["view"], view["target"], view["select"])


ROLLUP_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS \{database:Identifier\}\.(?P<view>\w+)\s+"
    r"TO \{database:Identifier\}\.(?P<target>\w+)\s+AS\n(?P<select>.*)",
    re.DOTALL,
)
"""A rollup's materialized view in its file: its name, its target table, its query."""


BACKFILLED = "backfilled by: "
"""The start of a rollup table's comment, followed by the views whose backfill ran."""


def backfill(client: Client, database: str, view: str, target: str, select: str) -> bool:
    """Once per materialized view, just after it is created: add the rows its source
    table held already to its rollup (``sql/migrations/003_rollup_backfill.sql``),
    then note the view in the rollup table's comment. A row inserted meanwhile is seen
    by both the view and the backfill, and counts once (rollups count identities);
    after a crash before the note, the backfill runs again, harmlessly. Returns
    whether it ran."""
    found = client.query(
        "SELECT comment FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database, "t": target},
    ).result_rows
    comment = str(found[0][0]) if found else ""
    done = comment.removeprefix(BACKFILLED).split(", ") if comment.startswith(BACKFILLED) else []
    if view in done:
        return False
    (insert,) = _statements(_migration("003_rollup_backfill.sql"))
    names = {"database": database, "target": target}
    # A backfill spans many months (partitions): allowed, not an error.
    settings = {"throw_on_max_partitions_per_insert_block": 0}
    client.command(insert.replace("{select}", select), parameters=names, settings=settings)
    # COMMENT takes a literal, not a parameter: view names are \w+ (ROLLUP_VIEW).
    note = BACKFILLED + ", ".join([*done, view])
    client.command(
        f"ALTER TABLE {{database:Identifier}}.{{target:Identifier}} MODIFY COMMENT '{note}'",
        parameters=names,
    )
    return True


SORTED_BY_IDENTITY = {
    "segment_memberships": ("050_segment_memberships.sql", "segment_id, user_id, change_id"),
    "journey_activity": ("080_journey_activity.sql", "journey_id, step, activity, activity_id"),
    "send_commands": ("070_send_commands.sql", "user_id, command_id"),
}
"""Tables whose rows earlier versions sorted otherwise (by instant, or by identity
alone): their file and today's key."""

ASIDE = "{}__before_upgrade"

REDEFINED_VIEWS = {"journey_daily_from_activity": "activity != 'bounced'"}
"""Rollup views whose query changed: a stored definition without the text given is an
earlier one (``sql/migrations/004_rollup_views.sql``)."""


def migrate(client: Client, database: str, files: dict[str, str]) -> list[str]:
    """Add the columns feedback rows gained (``sql/migrations/002_feedback_dimensions.sql``)
    and those of send commands and journey activity (``005_fact_dimensions.sql``), the
    causes of membership changes and journey activity (``030_causes.sql``);
    drop rollup views of an earlier definition (``redefine``); move the rows of tables
    with an earlier sorting key into today's layout
    (``sql/migrations/001_fact_identities.sql``); returns the tables upgraded. Safe to
    run again after a crash at any statement."""
    text = _migration("001_fact_identities.sql")
    upgraded = []
    tables = _tables(client, database)
    if "feedback" in tables:
        for statement in _statements(_migration("002_feedback_dimensions.sql")):
            client.command(statement, parameters={"database": database})
    for name in ("005_fact_dimensions.sql", "030_causes.sql"):
        for statement in _statements(_migration(name)):
            if statement.split(".", 1)[1].split(" ", 1)[0] in tables:
                client.command(statement, parameters={"database": database})
    redefine(client, database)
    for table, (file_name, key) in SORTED_BY_IDENTITY.items():
        aside = ASIDE.format(table)
        result = client.query(
            "SELECT name, sorting_key FROM system.tables WHERE database = {db:String}"
            " AND has({names:Array(String)}, name)",
            parameters={"db": database, "names": [table, aside]},
        )
        found = {str(name): str(sorting_key) for name, sorting_key in result.result_rows}
        if aside not in found and found.get(table, key) == key:
            continue  # today's layout, or no table yet
        names = {"database": database, "table": table, "aside": aside}
        rename, insert, drop = _statements(text)
        if aside not in found:
            client.command(rename, parameters=names)
        client.command(files[file_name], parameters={"database": database})
        shared = [
            column
            for column in _columns(client, database, table)
            if column in set(_columns(client, database, aside))
        ]
        columns = ", ".join(quote_identifier(column) for column in shared)
        client.command(insert.replace("{columns}", columns), parameters=names)
        client.command(drop, parameters=names)
        upgraded.append(table)
    return upgraded


def redefine(client: Client, database: str) -> list[str]:
    """Drop the rollup views of an earlier definition (``REDEFINED_VIEWS``), which the
    schema then creates again; returns their names."""
    (drop,) = _statements(_migration("004_rollup_views.sql"))
    result = client.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}"
        " AND has({names:Array(String)}, name)",
        parameters={"db": database, "names": list(REDEFINED_VIEWS)},
    )
    dropped = []
    for name, query in result.result_rows:
        if REDEFINED_VIEWS[str(name)] not in str(query):
            client.command(drop, parameters={"database": database, "view": str(name)})
            dropped.append(str(name))
    return dropped


def _tables(client: Client, database: str) -> set[str]:
    result = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}",
        parameters={"db": database},
    )
    return {str(row[0]) for row in result.result_rows}


def _migration(name: str) -> str:
    return importlib.resources.files("projections").joinpath("sql", "migrations", name).read_text()


def _statements(text: str) -> list[str]:
    code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [part.strip() for part in code.split(";") if part.strip()]


def _columns(client: Client, database: str, table: str) -> list[str]:
    result = client.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        " ORDER BY position",
        parameters={"db": database, "t": table},
    )
    return [row[0] for row in result.result_rows]


def check_allowed(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> None:
    """Raise ``QueryRefused`` unless ``sql`` passes the query door's allow-list, in
    sqlglot's parse and in ClickHouse's own (``EXPLAIN AST``, which runs nothing)."""
    database = client.database or "default"
    check_query(sql, database)
    explained = client.raw_query(f"EXPLAIN AST {sql}", parameters=parameters, fmt="TabSeparatedRaw")
    check_explain_ast(explained.decode("utf-8", "replace"), database, "TabSeparatedRaw")


def query_read_only(
    client: Client,
    sql: str,
    parameters: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = READ_ONLY,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a query that passes the query door's allow-list (``check_allowed``), with
    ClickHouse's readonly=1 as a second fence (``settings=None`` on an analysts'
    client, read-only already). Buffered: for small answers; the HTTP query route
    streams through ``AnalystClients`` instead."""
    check_allowed(client, sql, parameters)
    result = client.query(sql, parameters=parameters, settings=settings)
    return list(result.column_names), [tuple(row) for row in result.result_rows]


@dataclass(frozen=True)
class QueryLimits:
    """Limits of one analyst's query, enforced by ClickHouse (defaults in
    streams/settings.py)."""

    seconds: float
    memory_bytes: int
    result_rows: int
    result_bytes: int

    def settings(self, server: bool, readonly: int = 0) -> dict[str, Any]:
        """Session settings of an analysts' client. ``readonly``: the identity's own
        (a server user's profile); when it is 0, ``readonly=1`` comes last, as it
        forbids changing settings after it; under 2 it may not be changed at all."""
        settings: dict[str, Any] = {
            "max_execution_time": self.seconds,
            "max_memory_usage": self.memory_bytes,
            "max_result_rows": self.result_rows,
            "max_result_bytes": self.result_bytes,
            "result_overflow_mode": "throw",
        }
        if server:
            # A server stops a SELECT whose HTTP client went away.
            settings["cancel_http_readonly_queries_on_client_close"] = 1
        if readonly == 0:
            settings["readonly"] = 1
        return settings


def connect_analyst(dsn: str, database: str, limits: QueryLimits) -> Client:
    """A client for analysts' queries only. On chDB it is a connection handle of its
    own, so its session (settings, readonly) never touches the projection writer's;
    on a server, ``dsn`` should name a read-only user (see docs/security.md)."""
    embedded = dsn.startswith("chdb://")
    if embedded:
        import chdb  # noqa: F401
    client = clickhouse_connect.get_client(dsn=dsn, database=database)
    readonly = int(client.command("SELECT getSetting('readonly')"))  # type: ignore[arg-type]
    for key, value in limits.settings(not embedded, readonly).items():
        client.set_client_setting(key, value)
    return client


class AnalystQuery:
    """One analyst's query on a client of its own, read block by block in a worker
    thread; ``kill`` (from any thread) stops it inside ClickHouse."""

    def __init__(self, client: Client, control: Client) -> None:
        self._client = client
        self._control = control
        self._marker = f"/* reach-query:{uuid.uuid4().hex} */"
        self._stream: StreamContext | None = None
        self._exit = contextlib.ExitStack()
        self._reading = threading.Lock()
        self.columns: list[str] = []

    def start(self, sql: str, parameters: dict[str, Any] | None) -> list[str]:
        """Check the query and start it; returns its column names."""
        check_allowed(self._client, sql, parameters)
        with self._reading:
            # The marker comment finds the query in system.processes to kill it.
            stream = self._client.query_row_block_stream(
                f"{self._marker}\n{sql}", parameters=parameters
            )
            self._exit = contextlib.ExitStack()
            self._stream = self._exit.enter_context(stream)
            self.columns = list(cast(QueryResult, stream.source).column_names)
        return self.columns

    def next_block(self) -> Sequence[Sequence[Any]] | None:
        """The next block of rows, or None at the end."""
        with self._reading:
            if self._stream is None:
                return None
            return next(self._stream, None)

    def kill(self) -> None:
        """Stop the query in ClickHouse (the client's own, read-only identity may)."""
        self._control.command(
            "KILL QUERY WHERE startsWith(query, {marker:String}) ASYNC",
            parameters={"marker": self._marker},
        )

    def close(self) -> None:
        """Close the stream (which cancels what is left); kills a query still reading."""
        if not self._reading.acquire(blocking=False):
            with contextlib.suppress(Exception):  # the time limit still stops it
                self.kill()
            self._reading.acquire()
        try:
            if self._stream is not None:
                self._stream = None
                self._exit.close()
        finally:
            self._reading.release()


class AnalystClients:
    """A small pool of analysts' clients (``connect_analyst``); at most ``size``
    queries run at once, each on a client no other query uses meanwhile."""

    def __init__(self, dsn: str, database: str, limits: QueryLimits, size: int) -> None:
        self.dsn = dsn
        self.database = database
        self.limits = limits
        self.size = size
        self._free: list[Client] = []
        self._control: Client | None = None
        self._lock = threading.Lock()

    def take(self) -> Client:
        """A free client (created when none is); blocking: call from a thread."""
        with self._lock:
            if self._free:
                return self._free.pop()
        return connect_analyst(self.dsn, self.database, self.limits)

    def give_back(self, client: Client) -> None:
        with self._lock:
            if len(self._free) < self.size:
                self._free.append(client)
                return
        client.close()

    def control(self) -> Client:
        """The client that kills runaway queries (same read-only identity)."""
        with self._lock:
            if self._control is None:
                self._control = connect_analyst(self.dsn, self.database, self.limits)
            return self._control

    def close(self) -> None:
        with self._lock:
            clients, self._free = self._free, []
            control, self._control = self._control, None
        for client in [*clients, *([control] if control else [])]:
            client.close()
