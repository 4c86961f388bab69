"""The HTML report: each journey's graph with the users counted on every step and edge,
and segment sizes over time, as one self-contained page (inline CSS and SVG, no
script, nothing fetched), so it can be mailed or opened offline.

``collect`` reads the data over the HTTP API, ``render_html`` turns it into the page
(pure), ``write_report`` saves it. Every number shown carries data attributes naming
it, for tests and scrapers (values as plain numbers in ``data-value``; the text may
have thousands separators):

- journey totals: ``data-journey data-metric`` (``entries`` ... ``clicked``, ``ctr``);
- step counts: ``data-journey data-step data-metric`` (a ``STEP_COUNTS`` name);
- edge counts: ``data-journey data-edge="<step>.<output>" data-to data-metric="users"``;
- a segment's latest size: ``data-segment data-metric="members"`` (with ``data-at``);
  its chart's points: ``data-segment data-at data-value``;
- the daily figures (from the rollup ``journey_daily_stats``):
  ``data-journey data-day data-metric`` (a ``DAILY_COUNTS`` name or ``open_rate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import quote

from projections.journey_stats import JOURNEY_COUNTS, STEP_COUNTS
from projections.report_svg import (
    chart_svg,
    count_text,
    data_attrs,
    esc,
    graph_svg,
    journey_edges,
    moment_text,
    shown_counts,
)
from schemas.journeys import AudienceEntry, JourneyDefinition, TriggerEntry

Bucket = Literal["hour", "day"]
BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}


class EdgeCount(NamedTuple):
    source: str
    output: str
    target: str
    users: int


class JourneyReport(NamedTuple):
    definition: JourneyDefinition
    steps: Mapping[str, Mapping[str, int]]
    """Step id -> its ``STEP_COUNTS`` (missing ones are 0), over every version."""
    edges: Sequence[EdgeCount]
    totals: Mapping[str, int | float | None]
    """``JOURNEY_COUNTS`` and ``ctr`` (None before the first send)."""
    status: str = ""


class SegmentSeries(NamedTuple):
    segment_id: str
    name: str
    sizes: Sequence[tuple[datetime, int]]
    """(start of a bucket, members at its end), for the buckets with a change, in order."""


DAILY_COUNTS = (
    "entered",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "converted",
    "unsubscribed",
    "bounced",
)


class DailyFigures(NamedTuple):
    """One journey's figures on one day (UTC), summed over its versions and steps."""

    day: str
    """ISO date."""
    journey_id: str
    counts: Mapping[str, int]
    """``DAILY_COUNTS``."""

    @property
    def open_rate(self) -> float | None:
        delivered = self.counts.get("delivered", 0)
        return self.counts.get("opened", 0) / delivered if delivered else None


@dataclass(frozen=True)
class ReportData:
    journeys: Sequence[JourneyReport] = ()
    segments: Sequence[SegmentSeries] = ()
    generated_at: datetime | None = None
    bucket: Bucket = "hour"
    daily: Sequence[DailyFigures] = ()


class ReportError(RuntimeError):
    """The API refused a read the report needs (unknown journey, no projections...)."""


# --- collecting -----------------------------------------------------------------------


class Api(Protocol):
    """What the report needs of ``client.system.HttpClient``."""

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]: ...

    async def query(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[list[Any]]]: ...


# Edges add up over versions, as steps do in journey_stats.
EDGES_SQL = """
SELECT from_step, output, to_step, sum(users)
FROM journey_edge_stats
WHERE journey_id = {journey:String}
GROUP BY from_step, output, to_step
ORDER BY from_step, output, to_step
"""
# Members at the end of each bucket with a change: the running sum of entries minus
# exits (as 060_segment_sizes.sql per hour, here per any bucket). Buckets as epoch
# seconds: the JSON of the answer keeps them exact and zone-free.
SEGMENT_SIZES_SQL = """
SELECT
    segment_id,
    toUnixTimestamp(bucket),
    sum(toInt64(entered) - toInt64(exited)) OVER (PARTITION BY segment_id ORDER BY bucket)
FROM
(
    SELECT
        segment_id,
        toStartOfInterval(at, INTERVAL {seconds:UInt32} SECOND) AS bucket,
        countIf(change = 'entered') AS entered,
        countIf(change = 'exited') AS exited
    FROM segment_memberships FINAL
    WHERE has({segments:Array(String)}, segment_id)
    GROUP BY segment_id, bucket
)
ORDER BY segment_id, bucket
"""


# The daily rollup (103_journey_daily_stats.sql): no FINAL over the facts.
DAILY_SQL = f"""
SELECT toString(day), journey_id, {", ".join(f"sum({name})" for name in DAILY_COUNTS)}
FROM journey_daily_stats
WHERE has({{journeys:Array(String)}}, journey_id)
GROUP BY day, journey_id
ORDER BY day, journey_id
"""


async def daily_figures(api: Api, journey_ids: Sequence[str]) -> list[DailyFigures]:
    """Each journey's figures per day, from the daily rollup; days with none left out."""
    rows = await _query(api, DAILY_SQL, {"journeys": list(journey_ids)})
    return [
        DailyFigures(
            str(day), str(journey_id), dict(zip(DAILY_COUNTS, map(int, counts), strict=True))
        )
        for day, journey_id, *counts in rows
    ]


async def _get(api: Api, path: str) -> Any:
    status, body = await api.call("GET", path)
    if status != 200:
        message = body.get("error") if isinstance(body, dict) else body
        raise ReportError(f"GET {path} answered {status}: {message}")
    return body


async def _query(api: Api, sql: str, parameters: dict[str, Any]) -> list[list[Any]]:
    try:
        _, rows = await api.query(sql, parameters)
    except RuntimeError as error:  # HttpClient's way of passing on the API's refusal
        raise ReportError(f"the query API refused the report's query: {error}") from error
    return rows


async def _journey(api: Api, journey_id: str) -> JourneyReport:
    path = f"/v1/journeys/{quote(journey_id, safe='')}"
    shown, stats, edges = await asyncio.gather(
        _get(api, path),
        _get(api, f"{path}/stats"),  # totals and steps, as `reach journeys stats`
        _query(api, EDGES_SQL, {"journey": journey_id}),
    )
    definition = JourneyDefinition.model_validate(shown["definition"])
    # The journey's name is its latest rename, which the version's definition lacks.
    definition = definition.model_copy(update={"name": shown.get("name") or definition.name})
    steps = {
        row["step"]: {name: int(row.get(name, 0)) for name in STEP_COUNTS} for row in stats["steps"]
    }
    return JourneyReport(
        definition,
        steps,
        [EdgeCount(str(a), str(b), str(c), int(users)) for a, b, c, users in edges],
        stats["journey"],
        str(shown.get("status", "")),
    )


async def segment_sizes(
    api: Api, segment_ids: Sequence[str], bucket: Bucket = "hour"
) -> dict[str, list[tuple[datetime, int]]]:
    """Each segment's (bucket start, members at its end), from segment_memberships."""
    parameters = {"seconds": BUCKET_SECONDS[bucket], "segments": list(segment_ids)}
    rows = await _query(api, SEGMENT_SIZES_SQL, parameters)
    sizes: dict[str, list[tuple[datetime, int]]] = {}
    for segment_id, seconds, members in rows:
        at = datetime.fromtimestamp(int(seconds), UTC)
        sizes.setdefault(str(segment_id), []).append((at, int(members)))
    return sizes


async def collect(
    api: Api,
    journey_ids: Sequence[str] | None = None,
    segment_ids: Sequence[str] | None = None,
    bucket: Bucket = "hour",
) -> ReportData:
    """The report's data for these journeys and segments (None: every one defined)."""
    if journey_ids is None:
        journey_ids = [item["id"] for item in (await _get(api, "/v1/journeys"))["journeys"]]
    journeys = await asyncio.gather(*(_journey(api, journey_id) for journey_id in journey_ids))
    names = {item["id"]: item["name"] for item in (await _get(api, "/v1/segments"))["segments"]}
    wanted = sorted(names) if segment_ids is None else list(segment_ids)
    sizes = await segment_sizes(api, wanted, bucket)
    unknown = [segment_id for segment_id in wanted if segment_id not in names | sizes]
    if unknown:
        # A deleted segment still has its history; a typo has nothing.
        raise ReportError(f"no segment {', '.join(map(repr, unknown))} (defined or in history)")
    segments = [
        SegmentSeries(segment_id, names.get(segment_id, segment_id), sizes.get(segment_id, []))
        for segment_id in wanted
    ]
    daily = await daily_figures(api, journey_ids)
    return ReportData(list(journeys), segments, datetime.now(UTC), bucket, daily)


def write_report(path: Path | str, data: ReportData) -> Path:
    target = Path(path)
    target.write_text(render_html(data), encoding="utf-8")
    return target


# --- rendering ------------------------------------------------------------------------


CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #9aa5b1; --accent: #2563eb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 0; }
h2 { font-size: 18px; margin: 32px 0 4px; border-bottom: 1px solid #e4e7eb; }
h3 { font-size: 16px; margin: 24px 0 4px; }
.meta, .empty { color: var(--muted); }
nav a { margin-right: 12px; }
dl.totals { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
dl.totals div { border: 1px solid #e4e7eb; border-radius: 6px; padding: 4px 10px; }
dl.totals dt { color: var(--muted); font-size: 12px; }
dl.totals dd { margin: 0; font-size: 18px; font-variant-numeric: tabular-nums; }
.graph, .chart { overflow-x: auto; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", sans-serif; fill: var(--ink); }
svg .node rect { stroke: #52606d; stroke-width: 1; }
svg .node .id { font-weight: 600; }
svg .node .kind, svg .axis { fill: var(--muted); }
svg .count { font-variant-numeric: tabular-nums; }
svg .edge { fill: none; stroke: var(--line); stroke-width: 1.5; }
svg .edge.back { stroke-dasharray: 5 3; }
svg .edge-label { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
svg .edge-label .count { font-weight: 600; }
svg .series { fill: none; stroke: var(--accent); stroke-width: 2; }
svg .point { fill: var(--accent); }
svg .grid { stroke: #e4e7eb; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""


def render_html(data: ReportData) -> str:
    """The whole page; every user-provided string escaped."""
    title = "reachstream report"
    generated = f" — generated {moment_text(data.generated_at)}" if data.generated_at else ""
    links = [
        f'<a href="#journey-{esc(j.definition.id)}">{esc(j.definition.name)}</a>'
        for j in data.journeys
    ]
    links.append('<a href="#daily">Daily</a>')
    links.append('<a href="#segments">Segments</a>')
    journeys = [_journey_section(journey, index) for index, journey in enumerate(data.journeys)]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{title}</h1><p class='meta'>{len(data.journeys)} journeys, "
        f"{len(data.segments)} segments{generated}</p><nav>{''.join(links)}</nav></header>",
        '<section id="journeys"><h2>Journeys</h2>',
        *(journeys or ['<p class="empty">No journeys.</p>']),
        "</section>",
        _daily_section(data.daily),
        _segments_section(data.segments, data.bucket),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- a journey ------------------------------------------------------------------------


def _entry(entry: object) -> str:
    if isinstance(entry, AudienceEntry):
        return f"audience {entry.segment} ({entry.schedule.kind})"
    if isinstance(entry, TriggerEntry):
        return f"trigger {entry.match.event}"
    return "api"


def _journey_section(report: JourneyReport, index: int) -> str:
    journey = report.definition
    meta = [f"id {journey.id}", f"version {journey.version}"]
    if report.status:
        meta.append(report.status)
    meta.append("entries: " + "; ".join(_entry(entry) for entry in journey.entries))
    return "\n".join(
        [
            f'<article class="journey" id="journey-{esc(journey.id)}"'
            f"{data_attrs(data_journey=journey.id)}>",
            f"<h3>{esc(journey.name)}</h3>",
            f'<p class="meta">{esc(" · ".join(meta))}</p>',
            _totals(report),
            f'<div class="graph">{_graph(report, index)}</div>',
            _earlier(report),
            "</article>",
        ]
    )


def _graph(report: JourneyReport, index: int) -> str:
    users = {(edge.source, edge.output, edge.target): edge.users for edge in report.edges}
    return graph_svg(report.definition, report.steps, users, index)


def _totals(report: JourneyReport) -> str:
    journey_id = report.definition.id
    cells = []
    for name in JOURNEY_COUNTS:
        value = int(report.totals.get(name) or 0)
        attrs = data_attrs(data_journey=journey_id, data_metric=name, data_value=value)
        cells.append(
            f"<div><dt>{esc(name.replace('_', ' '))}</dt><dd{attrs}>{count_text(value)}</dd></div>"
        )
    ctr = report.totals.get("ctr")
    shown = "-" if ctr is None else f"{float(ctr):.1%}"
    attrs = data_attrs(
        data_journey=journey_id, data_metric="ctr", data_value="" if ctr is None else ctr
    )
    cells.append(f"<div><dt>CTR</dt><dd{attrs}>{shown}</dd></div>")
    return f'<dl class="totals">{"".join(cells)}</dl>'


def _earlier(report: JourneyReport) -> str:
    """Counts of steps and edges the shown version no longer has (from earlier ones)."""
    journey = report.definition
    current = {node.id for node in journey.nodes}
    drawn = set(journey_edges(journey))
    rows = []
    for step, counts in report.steps.items():
        if step in current:
            continue
        cells = []
        for name in shown_counts(counts):
            value = counts.get(name, 0)
            attrs = data_attrs(
                data_journey=journey.id, data_step=step, data_metric=name, data_value=value
            )
            cells.append(f"{esc(name.replace('_', ' '))} <span{attrs}>{count_text(value)}</span>")
        rows.append(f"<tr><td>step {esc(step)}</td><td>{', '.join(cells)}</td></tr>")
    for edge in report.edges:
        if (edge.source, edge.output, edge.target) in drawn:
            continue
        attrs = data_attrs(
            data_journey=journey.id,
            data_edge=f"{edge.source}.{edge.output}",
            data_to=edge.target,
            data_metric="users",
            data_value=edge.users,
        )
        rows.append(
            f"<tr><td>edge {esc(edge.source)} → {esc(edge.output)} → {esc(edge.target)}</td>"
            f"<td>users <span{attrs}>{count_text(edge.users)}</span></td></tr>"
        )
    if not rows:
        return ""
    return (
        "<details><summary>Steps and edges of earlier versions</summary>"
        f"<table>{''.join(rows)}</table></details>"
    )


# --- daily figures --------------------------------------------------------------------


def _daily_section(daily: Sequence[DailyFigures]) -> str:
    parts = [
        '<section id="daily"><h2>Daily figures</h2>'
        '<p class="meta">per journey and day (UTC), each figure on the day it happened; '
        "open rate over delivered</p>"
    ]
    if not daily:
        parts.append('<p class="empty">No journey activity yet.</p></section>')
        return "\n".join(parts)
    head = "".join(f"<th>{esc(name)}</th>" for name in DAILY_COUNTS)
    rows = []
    for figures in daily:
        cells = []
        for name in DAILY_COUNTS:
            value = figures.counts.get(name, 0)
            attrs = data_attrs(
                data_journey=figures.journey_id,
                data_day=figures.day,
                data_metric=name,
                data_value=value,
            )
            cells.append(f"<td class='n'{attrs}>{count_text(value)}</td>")
        rate = figures.open_rate
        attrs = data_attrs(
            data_journey=figures.journey_id,
            data_day=figures.day,
            data_metric="open_rate",
            data_value="" if rate is None else rate,
        )
        cells.append(f"<td class='n'{attrs}>{'-' if rate is None else f'{rate:.1%}'}</td>")
        rows.append(
            f"<tr><td>{esc(figures.day)}</td><td>{esc(figures.journey_id)}</td>{''.join(cells)}</tr>"
        )
    parts.append(
        f"<table><thead><tr><th>day</th><th>journey</th>{head}<th>open rate</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )
    return "\n".join(parts)


# --- segments -------------------------------------------------------------------------


def _segments_section(segments: Sequence[SegmentSeries], bucket: Bucket) -> str:
    parts = [
        '<section id="segments"><h2>Segments</h2>'
        f'<p class="meta">members at the end of each {bucket} with a change</p>'
    ]
    if not segments:
        parts.append('<p class="empty">No segments.</p></section>')
        return "\n".join(parts)
    moments = [at for series in segments for at, _ in series.sizes]
    span = None
    if moments:  # one time axis for all, at least a bucket wide
        start, end = min(moments), max(moments)
        span = (start, max(end, start + timedelta(seconds=BUCKET_SECONDS[bucket])))
    rows = []
    for series in segments:
        if series.sizes:
            at, members = series.sizes[-1]
            when = moment_text(at, bucket)
            stamp = at.isoformat()
        else:
            members, when, stamp = 0, "no change yet", ""
        attrs = data_attrs(
            data_segment=series.segment_id, data_metric="members", data_value=members, data_at=stamp
        )
        rows.append(
            f'<tr><td><a href="#segment-{esc(series.segment_id)}">{esc(series.segment_id)}</a></td>'
            f"<td>{esc(series.name)}</td><td class='n'{attrs}>{count_text(members)}</td>"
            f"<td>{esc(when)}</td></tr>"
        )
    parts.append(
        "<table><thead><tr><th>segment</th><th>name</th><th>members</th><th>as of</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    for series in segments:
        parts.append(
            f'<h3 id="segment-{esc(series.segment_id)}">{esc(series.name)} '
            f'<span class="meta">({esc(series.segment_id)})</span></h3>'
        )
        if series.sizes and span:
            chart = chart_svg(series.segment_id, series.name, series.sizes, span, bucket)
            parts.append(f'<div class="chart">{chart}</div>')
        else:
            parts.append('<p class="empty">No membership change yet.</p>')
    parts.append("</section>")
    return "\n".join(parts)
