"""Benchmark: the daily journey statistics from the rollup (``journey_daily_stats``),
next to the same question over the raw facts with FINAL (``journey_activity FINAL``),
in the same run, on one embedded ClickHouse (chDB).

Synthetic journey activity rows (default 20M: 20 journeys, 8 steps, 60 days, the
activities of a send funnel) are generated inside the engine (``INSERT … SELECT FROM
numbers()``), so they go through the rollup's materialized view as the projection's
inserts do. A share of them is inserted twice (replays): both paths must count each
identity once, and the benchmark checks that their answers agree. Not a timed test:
it prints figures. ``reach bench rollups [--rows N]`` or ``python -m benchmarks.rollups``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=120)

JOURNEYS = 20
STEPS = 8
DAYS = 60
REPLAYED = 0.02
"""The share of rows inserted a second time, as a replay would."""
BATCH = 2_000_000
TARGET_SECONDS = 1.0

# A send funnel: most rows are entries and sends, fewer deliveries, opens, clicks.
_ACTIVITIES = (
    "['entered', 'entered', 'sent', 'sent', 'delivered', 'delivered', 'opened', "
    "'clicked', 'not_opened', 'goal', 'failed', 'exited']"
)
_INSERT = f"""
INSERT INTO journey_activity
    (activity_id, journey_id, journey_version, run, user_id, step, activity, at, detail,
     command_id, visit, cause, source_partition, source_offset)
SELECT
    concat('a', toString(n)) AS activity_id,
    concat('journey-', toString(n % {JOURNEYS})) AS journey_id,
    1 AS journey_version,
    'r1' AS run,
    concat('u', toString(cityHash64(n) % 1000000)) AS user_id,
    concat('step-', toString(intDiv(n, {JOURNEYS}) % {STEPS})) AS step,
    {_ACTIVITIES}[1 + cityHash64(n, 1) % 12] AS activity,
    toDateTime64('2026-01-01 00:00:00', 3, 'UTC')
        + toIntervalSecond(cityHash64(n, 2) % ({DAYS} * 86400)) AS at,
    '' AS detail,
    '' AS command_id,
    0 AS visit,
    '' AS cause,
    0 AS source_partition,
    n AS source_offset
FROM (SELECT number + {{start:UInt64}} AS n FROM numbers({{count:UInt64}}))
"""

ROLLUP_QUERY = """
SELECT day, journey_id, sum(entered), sum(sent), sum(delivered), sum(opened),
       sum(clicked), sum(converted), sum(opened) / nullIf(sum(delivered), 0)
FROM journey_daily_stats
GROUP BY day, journey_id
ORDER BY day, journey_id
"""

# What a dashboard asks: one journey's steps per day over the last 30 days.
ONE_JOURNEY_ROLLUP = """
SELECT day, step, sum(sent), sum(delivered), sum(opened), sum(clicked), sum(converted)
FROM journey_daily_stats
WHERE journey_id = 'journey-7' AND day > toDate('2026-03-01') - 30
GROUP BY day, step
ORDER BY day, step
"""

ONE_JOURNEY_RAW = """
SELECT toDate(at) AS day, step, countIf(activity = 'sent'), countIf(activity = 'delivered'),
       countIf(activity = 'opened'), countIf(activity = 'clicked'), countIf(activity = 'goal')
FROM journey_activity FINAL
WHERE journey_id = 'journey-7' AND toDate(at) > toDate('2026-03-01') - 30
GROUP BY day, step
ORDER BY day, step
"""

RAW_QUERY = """
SELECT toDate(at) AS day, journey_id, countIf(activity = 'entered'), countIf(activity = 'sent'),
       countIf(activity = 'delivered'), countIf(activity = 'opened'),
       countIf(activity = 'clicked'), countIf(activity = 'goal'),
       countIf(activity = 'opened') / nullIf(countIf(activity = 'delivered'), 0)
FROM journey_activity FINAL
GROUP BY day, journey_id
ORDER BY day, journey_id
"""


def run(rows: int, repeats: int = 3) -> None:
    from projections.clickhouse import connect

    with tempfile.TemporaryDirectory(prefix="reach-bench-rollups-") as folder:
        client = connect(f"chdb://{folder}", "reach")
        started = time.perf_counter()
        for start in range(0, rows, BATCH):
            _load(client, start, min(BATCH, rows - start))
        replayed = int(rows * REPLAYED)
        _load(client, 0, replayed)
        loaded = time.perf_counter() - started
        console.print(
            f"loaded {rows:,} journey activity rows (+{replayed:,} replayed) "
            f"through the rollup's view in {loaded:.0f} s"
        )
        timings = {
            "all journeys by day, rollup (parts unmerged)": _time(
                client.query, ROLLUP_QUERY, repeats
            ),
            "all journeys by day, raw facts FINAL": _time(client.query, RAW_QUERY, repeats),
        }
        started = time.perf_counter()
        client.command("OPTIMIZE TABLE journey_daily FINAL")
        merged = time.perf_counter() - started
        timings["all journeys by day, rollup (merged)"] = _time(client.query, ROLLUP_QUERY, repeats)
        timings["one journey, 30 days by step, rollup"] = _time(
            client.query, ONE_JOURNEY_ROLLUP, repeats
        )
        timings["one journey, 30 days by step, raw FINAL"] = _time(
            client.query, ONE_JOURNEY_RAW, repeats
        )
        answers = [_answer(client.query(sql).result_rows) for sql in (ROLLUP_QUERY, RAW_QUERY)]
        agree = answers[0] == answers[1]
        one = [client.query(sql).result_rows for sql in (ONE_JOURNEY_ROLLUP, ONE_JOURNEY_RAW)]
        agree = agree and [[int(v) for v in r[2:]] for r in one[0]] == [
            [int(v) for v in r[2:]] for r in one[1]
        ]
        client.close()
    console.print(f"merging the rollup's parts (OPTIMIZE … FINAL): {merged:.1f} s")
    table = Table(
        "daily statistics query",
        "rows out",
        "best s",
        "median s",
        title=f"Daily journey statistics over {rows:,} activity rows, {repeats} runs each",
    )
    for name, (seconds, count) in timings.items():
        table.add_row(
            name, f"{count:,}", f"{min(seconds):.3f}", f"{statistics.median(seconds):.3f}"
        )
    console.print(table)
    best = max(min(seconds) for name, (seconds, _) in timings.items() if "raw" not in name)
    verdict = "under" if best < TARGET_SECONDS else "OVER"
    console.print(
        f"slowest rollup query (best of {repeats}) {verdict} the {TARGET_SECONDS:.0f} s target; "
        f"answers agree: {agree}"
    )
    if not agree:
        raise SystemExit("the rollup and the raw facts disagree")


def _load(client: Any, start: int, count: int) -> None:
    client.command(
        _INSERT,
        parameters={"start": start, "count": count},
        settings={"max_insert_block_size": 1_000_000, "min_insert_block_size_rows": 1_000_000},
    )


def _time(query: Callable[[str], Any], sql: str, repeats: int) -> tuple[list[float], int]:
    seconds = []
    count = 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = len(query(sql).result_rows)
        seconds.append(time.perf_counter() - started)
    return seconds, count


def _answer(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Counts as integers, the rate rounded: the two paths' types differ."""
    return [
        (
            *row[:2],
            *(int(value) for value in row[2:8]),
            None if row[8] is None else round(row[8], 9),
        )
        for row in rows
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    run(arguments.rows, arguments.repeats)


if __name__ == "__main__":
    main()
