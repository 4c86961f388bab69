"""How the CLI prints rows: a table for people, JSON lines or CSV for programs.

A table never cuts a value: on a terminal long cells wrap (fold) inside their column,
and anywhere else (a pipe, a file) the table takes the width it needs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import click
import orjson
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

Format = Literal["table", "json", "csv"]
F = TypeVar("F", bound=Callable[..., Any])


def format_options(command: F) -> F:
    """``--json`` and ``--csv`` (``as_json``, ``as_csv``): see ``output_format``."""
    command = click.option("--csv", "as_csv", is_flag=True, help="Print CSV, with a header.")(
        command
    )
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")(
        command
    )


def output_format(as_json: bool, as_csv: bool) -> Format:
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    return "json" if as_json else "csv" if as_csv else "table"


def cell(value: Any, joiner: str = ", ") -> str:
    """A value as table or CSV text: lists joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return joiner.join(cell(item) for item in value)
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def emit(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    output: Format,
    joiners: Mapping[str, str] | None = None,
) -> None:
    """Print ``rows`` (raw values, one per column) as a table, JSON lines or CSV."""
    if output == "json":
        for row in rows:
            click.echo(orjson.dumps(dict(zip(columns, row, strict=True)), default=str))
        return
    joins = [(joiners or {}).get(column, ", ") for column in columns]
    text = [[cell(value, join) for value, join in zip(row, joins, strict=True)] for row in rows]
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(text)
        click.echo(buffer.getvalue(), nl=False)
        return
    print_table(columns, text)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(*columns)
    for column in table.columns:
        column.overflow = "fold"  # on a narrow terminal: wrap, never an ellipsis
    for row in rows:
        table.add_row(*row)
    console = Console()  # the current stdout (click's test runner swaps it)
    if not console.is_terminal:
        # Piped or redirected: as wide as the table needs, whatever COLUMNS says.
        console = Console(width=_natural_width(columns, rows))
    console.print(table)


def _natural_width(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    widths = [cell_len(column) for column in columns]
    for row in rows:
        for index, value in enumerate(row):
            longest = max((cell_len(line) for line in value.splitlines()), default=0)
            widths[index] = max(widths[index], longest)
    # Each column has a space of padding either side, and a border before it.
    return sum(widths) + 3 * len(widths) + 1
