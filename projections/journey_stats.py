"""A journey's statistics, from the journey_stats and journey_step_stats views
(conventions in projections/sql/090_journey_stats.sql and 091_journey_step_stats.sql),
and their terminal rendering."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clickhouse_connect.driver.client import Client

from projections.clickhouse import query_read_only

JOURNEY_COUNTS = ("entries", "unique_users", "inside_now", "goals", "sent", "opened", "clicked")
STEP_COUNTS = (
    "entered",
    "sent",
    "capped",
    "suppressed",
    "unreachable",
    "delivered",
    "opened",
    "clicked",
    "not_opened",
    "failed",
    "goal",
    "exited",
    "dropped",
    "bounced",
)

# Columns are named here rather than read from the answer: chDB names none for an
# empty one.
_JOURNEY_SQL = f"""
SELECT {", ".join(JOURNEY_COUNTS)}, ctr
FROM journey_stats
WHERE journey_id = {{journey:String}}
"""
# A step's counts add up over the journey's versions; steps come in the order users
# first reached them.
_STEPS_SQL = f"""
SELECT step, {", ".join(f"sum({name})" for name in STEP_COUNTS)}
FROM journey_step_stats
WHERE journey_id = {{journey:String}}
GROUP BY step
ORDER BY min(first_at), step
"""


_INSIDE_SQL = """
SELECT journey_id, inside_now
FROM journey_stats
WHERE has({journeys:Array(String)}, journey_id)
"""


def inside_now(client: Client, journey_ids: Iterable[str]) -> dict[str, int]:
    """Users inside each journey now (``journey_stats.inside_now``); 0 for a journey
    nobody entered."""
    wanted = sorted(set(journey_ids))
    if not wanted:
        return {}
    _, found = query_read_only(client, _INSIDE_SQL, {"journeys": wanted})
    inside = dict.fromkeys(wanted, 0)
    inside.update({str(journey_id): int(count) for journey_id, count in found})
    return inside


def journey_stats(client: Client, journey_id: str) -> dict[str, Any]:
    """``{"journey_id", "journey": {entries, ..., ctr}, "steps": [{"step", counts}]}``;
    zeros (ctr None) and no steps for a journey nobody entered. ``ctr`` is clicked /
    delivered (clicked / sent when no delivery was reported), None before the first
    send."""
    parameters = {"journey": journey_id}
    _, found = query_read_only(client, _JOURNEY_SQL, parameters)
    journey: dict[str, Any]
    if found:
        *counts, ctr = found[0]
        journey = {name: int(value) for name, value in zip(JOURNEY_COUNTS, counts, strict=True)}
        journey["ctr"] = None if ctr is None else float(ctr)
    else:
        journey = {**dict.fromkeys(JOURNEY_COUNTS, 0), "ctr": None}
    _, found = query_read_only(client, _STEPS_SQL, parameters)
    steps = [
        {
            "step": step,
            **{name: int(value) for name, value in zip(STEP_COUNTS, counts, strict=True)},
        }
        for step, *counts in found
    ]
    return {"journey_id": journey_id, "journey": journey, "steps": steps}


def _table(headers: list[str], lines: list[list[str]], left: int = 1) -> list[str]:
    """Fixed-width columns: the first ``left`` (names) left-aligned, the others
    (numbers) right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *lines, strict=True)]
    return [
        "  ".join(
            cell.ljust(width) if index < left else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in (headers, *lines)
    ]


def _ctr(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_stats(stats: dict[str, Any]) -> str:
    """The journey's totals (with its status when the stats carry one), then one line
    per step, as fixed-width text."""
    journey = stats["journey"]
    status = [str(stats["status"])] if stats.get("status") else []
    totals = _table(
        ["journey", *(["status"] if status else []), *JOURNEY_COUNTS, "ctr"],
        [
            [
                stats["journey_id"],
                *status,
                *(str(journey[name]) for name in JOURNEY_COUNTS),
                _ctr(journey["ctr"]),
            ]
        ],
        left=1 + len(status),
    )
    if not stats["steps"]:
        return "\n".join([*totals, "", "no activity yet"])
    steps = _table(
        ["step", *STEP_COUNTS],
        [[step["step"], *(str(step[name]) for name in STEP_COUNTS)] for step in stats["steps"]],
    )
    return "\n".join([*totals, "", *steps])
