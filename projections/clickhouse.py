"""The ClickHouse client: embedded chDB (``chdb://dir``) or a server (``http://...``).

Both go through clickhouse-connect, so the code path is the same at both scales.
Calls block; callers on an event loop run them in a thread.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

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


SORTED_BY_IDENTITY = {
    "segment_memberships": ("050_segment_memberships.sql", "segment_id, user_id, change_id"),
    "journey_activity": ("080_journey_activity.sql", "journey_id, step, activity, activity_id"),
}
"""Tables whose rows earlier versions sorted by instant: their file and today's key."""

ASIDE = "{}__before_upgrade"


def migrate(client: Client, database: str, files: dict[str, str]) -> list[str]:
    """Move the rows of tables with an earlier sorting key into today's layout
    (``sql/migrations/001_fact_identities.sql``); returns the tables upgraded. Safe to
    run again after a crash at any statement."""
    text = _migration("001_fact_identities.sql")
    upgraded = []
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


def query_read_only(
    client: Client, sql: str, parameters: dict[str, Any] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run an analyst's query with ClickHouse's readonly=1: writes and DDL are refused."""
    result = client.query(sql, parameters=parameters, settings=READ_ONLY)
    return list(result.column_names), [tuple(row) for row in result.result_rows]
