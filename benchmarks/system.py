"""The system a benchmark measures: one engine process, or with ``role="segments"``
the engine alone in its process and projections (ClickHouse) in another, on one broker,
so that the figures are the engine process's own; and how its figures are printed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from streams.broker import EmbeddedBroker
from streams.supervisor import SystemProcess


def start_engine(
    stack: contextlib.ExitStack, folder: Path, env: dict[str, str], role: str
) -> SystemProcess:
    """The engine process (role ``all`` or ``segments``), stopped with ``stack``."""
    if role == "segments":
        broker = stack.enter_context(EmbeddedBroker())
        env = {**env, "REACH_BROKER_URL": f"kafka://{broker.bootstrap}"}
        stack.enter_context(
            SystemProcess(folder / "projections", {**env, "REACH_ROLE": "projections"})
        )
        env["REACH_ROLE"] = "segments"
    return stack.enter_context(SystemProcess(folder / "engine", env))


def print_figures(
    console: Console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]
) -> None:
    """A benchmark's figures as one table, a row per measure."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)
