"""``reach bench``: the benchmarks."""

from __future__ import annotations

from typing import cast

import click
from click.core import ParameterSource

from cli import common
from streams.settings import BrokerStorage


@click.group()
def bench() -> None:
    """Benchmarks (they print figures next to a baseline measured in the same run)."""


_STORAGE = click.option(
    "--storage",
    type=click.Choice(["both", "durable", "memory"]),
    default="both",
    show_default=True,
    help="The embedded broker's storage; both: durable, then memory, in one table.",
)


def _storages(choice: str) -> tuple[BrokerStorage, ...]:
    return ("durable", "memory") if choice == "both" else (cast(BrokerStorage, choice),)


@bench.command(name="ingest")
@click.option("--events", default=500_000, show_default=True)
@click.option("--users", default=100_000, show_default=True)
@click.option(
    "--role",
    type=click.Choice(["projections", "all"]),
    default="projections",
    show_default=True,
    help="The worker's role: all also keeps segment state per user.",
)
@_STORAGE
def bench_ingest(events: int, users: int, role: str, storage: str) -> None:
    """Events/s through ingest -> agent -> ClickHouse, next to a raw aiokafka consumer."""
    from benchmarks.ingest import run

    run(events, users, role, _storages(storage))


_ENGINE_ROLE = click.option(
    "--role",
    type=click.Choice(["all", "segments"]),
    default="all",
    show_default=True,
    help="segments: the engine (segments and journeys) in a process of its own, "
    "projections in another.",
)


@bench.command(name="segments")
@click.option("--users", default=100_000, show_default=True)
@click.option("--events", "event_count", default=300_000, show_default=True)
@click.option(
    "--memory-users",
    default=0,
    show_default=True,
    help="Also load this many users in all and report memory per user.",
)
@click.option(
    "--latency-rate",
    default=0.0,
    help="Events/s during the latency probe (default: half the measured throughput).",
)
@_ENGINE_ROLE
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="N > 1: also measure the throughput of N engine processes in one consumer group "
    "(role segments, the default then), next to one process's in the same run.",
)
@_STORAGE
@click.pass_context
def bench_segments(
    ctx: click.Context,
    users: int,
    event_count: int,
    memory_users: int,
    latency_rate: float,
    role: str,
    workers: int,
    storage: str,
) -> None:
    """Events/s through the segment agents, latency p50/p99, memory per user."""
    from benchmarks.segments import run

    if workers > 1 and role != "segments":
        if ctx.get_parameter_source("role") is not ParameterSource.DEFAULT:
            raise click.UsageError(f"--workers {workers} needs --role segments")
        role = "segments"
    partitions = common.settings().partitions
    if workers > partitions:
        raise click.UsageError(f"--workers {workers} is more than the {partitions} partitions")
    run(users, event_count, memory_users, latency_rate, role, _storages(storage), workers)


@bench.command(name="state")
@click.option("--writes", default=200_000, show_default=True)
@click.option("--keys", default=100_000, show_default=True)
@click.option("--hot-keys", default=10_000, show_default=True)
def bench_state(writes: int, keys: int, hot_keys: int) -> None:
    """Writes/s through the coalescing state table, next to one changelog record per write."""
    from benchmarks.state import run

    run(writes, keys, hot_keys)


@bench.command(name="journeys")
@click.option("--users", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--latency-users", type=click.IntRange(min=1), default=2_000, show_default=True)
@click.option("--latency-rate", type=click.FloatRange(min=1), default=200.0, show_default=True)
@click.option("--timers", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@_ENGINE_ROLE
def bench_journeys(
    users: int, latency_users: int, latency_rate: float, timers: int, role: str
) -> None:
    """Audience launch commands/s, feedback -> next step latency, memory per pending timer."""
    from benchmarks.journeys import run

    run(users, latency_users, latency_rate, timers, role)


@bench.command(name="rollups")
@click.option("--rows", type=click.IntRange(min=1), default=20_000_000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
def bench_rollups(rows: int, repeats: int) -> None:
    """Daily journey stats from the rollup, next to the raw facts with FINAL."""
    from benchmarks.rollups import run

    run(rows, repeats)


@bench.command(name="delivery")
@click.option("--commands", "count", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--web-commands", type=click.IntRange(min=10), default=300, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
def bench_delivery(count: int, web_commands: int, concurrency: int) -> None:
    """Commands/s per worker through the push adapters against local fakes, next to a
    raw client loop against the same fakes."""
    from benchmarks.delivery import run

    run(count, web_commands, concurrency)


@bench.command(name="backtest")
@click.option("--events", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option("--users", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option(
    "--live/--no-live",
    default=True,
    show_default=True,
    help="Also measure the live engine on the same inputs (the baseline).",
)
def bench_backtest(events: int, users: int, live: bool) -> None:
    """Back-test inputs/s (archive read + replay) next to the live engine's, same inputs."""
    from benchmarks.backtest import run

    run(events, users, live)
