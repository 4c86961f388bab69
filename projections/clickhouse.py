"""The ClickHouse client: embedded chDB (``chdb://dir``) or a server (``http://...``).

Both go through clickhouse-connect, so the code path is the same at both scales.
Calls block; callers on an event loop run them in a thread.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import clickhouse_connect
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
    it (a view resolves its unqualified tables in the database current at creation)."""
    first, *rest = sql_files()
    client.command(first[1], parameters={"database": database})
    client.database = database
    for _name, text in rest:
        client.command(text, parameters={"database": database})


def query_read_only(
    client: Client, sql: str, parameters: dict[str, Any] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run an analyst's query with ClickHouse's readonly=1: writes and DDL are refused."""
    result = client.query(sql, parameters=parameters, settings=READ_ONLY)
    return list(result.column_names), [tuple(row) for row in result.result_rows]
