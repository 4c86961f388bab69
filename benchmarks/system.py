"""The system a benchmark measures: one engine process, or with ``role="segments"``
the engine alone in its process and projections (ClickHouse) in another, on one broker,
so that the figures are the engine process's own (or several engine processes in one
consumer group, to measure scale-out); and how its figures are printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import Topics
from worker.supervisor import SystemProcess


def start_engine(
    stack: contextlib.ExitStack, folder: Path, env: dict[str, str], role: str
) -> SystemProcess:
    """The engine process (role ``all`` or ``segments``), stopped with ``stack``."""
    if role == "segments":
        durable = env.get("REACH_BROKER_STORAGE", "durable") == "durable"
        storage_dir = folder / "broker" if durable else None
        broker = stack.enter_context(EmbeddedBroker(storage_dir=storage_dir))
        env = {**env, "REACH_BROKER_URL": f"kafka://{broker.bootstrap}"}
        stack.enter_context(
            SystemProcess(folder / "projections", {**env, "REACH_ROLE": "projections"})
        )
        env["REACH_ROLE"] = "segments"
    return stack.enter_context(SystemProcess(folder / "engine", env))


def start_engines(
    stack: contextlib.ExitStack, folder: Path, env: dict[str, str], workers: int
) -> list[SystemProcess]:
    """``workers`` engine processes (role ``segments``, one consumer group) beside one
    projections process, on one broker, stopped with ``stack``; returned once the group
    has given each engine its share of the partitions."""
    settings = Settings()
    if not 1 <= workers <= settings.partitions:
        raise ValueError(f"{workers} workers for {settings.partitions} partitions")
    first = start_engine(stack, folder, env, "segments")
    more = {**env, "REACH_BROKER_URL": first.env["REACH_BROKER_URL"], "REACH_ROLE": "segments"}
    engines = [first]
    for number in range(2, workers + 1):
        engines.append(stack.enter_context(SystemProcess(folder / f"engine-{number}", more)))
    events = Topics.from_settings(settings).events
    asyncio.run(_balanced(engines, events, settings.partitions, timeout=120))
    return engines


async def _balanced(
    engines: Sequence[SystemProcess], topic: str, partitions: int, timeout: float
) -> None:
    """Wait until each engine owns some of ``topic``'s partitions, and each partition
    belongs to exactly one engine."""
    deadline = time.monotonic() + timeout
    while True:
        shares = [
            [part for part in (await status(engine))["assigned"] if part.rsplit(":", 1)[0] == topic]
            for engine in engines
        ]
        owned = [part for share in shares for part in share]
        if all(shares) and len(owned) == len(set(owned)) == partitions:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the engines' group did not share {topic} out: {shares}")
        await asyncio.sleep(0.2)


async def status(system: SystemProcess) -> dict[str, Any]:
    """The engine's ``/v1/status``."""
    _, answer = await system.http.call("GET", "/v1/status")
    result: dict[str, Any] = answer
    return result


async def settle(system: SystemProcess, quiet: float = 1.5, timeout: float = 900) -> float:
    """Wait until the worker is idle (no input applied, row projected or record acked
    for ``quiet`` seconds), so one phase's backlog does not weigh on the next; returns
    the moment of the last change seen."""
    last, changed = None, time.perf_counter()
    deadline = changed + timeout
    while time.perf_counter() < deadline:
        current = await status(system)
        seen = (current["segments"]["inputs"], current["projected"], current["acked_records"])
        if seen != last:
            last, changed = seen, time.perf_counter()
        elif time.perf_counter() - changed >= quiet:
            break
        await asyncio.sleep(0.25)
    return changed


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far. On a 2-core machine the
    engine shares the cores with the broker (and the projections process), so its
    rate per CPU-second tells its own cost apart from that sharing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of stat(5), the 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_figures(
    console: Console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]
) -> None:
    """A benchmark's figures as one table, a row per measure."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else float("nan")
