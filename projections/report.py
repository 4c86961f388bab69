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
  its chart's points: ``data-segment data-at data-value``.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import quote

from projections.journey_stats import JOURNEY_COUNTS, STEP_COUNTS
from projections.report_layout import Layout, Point, Route, layout
from schemas.journeys import (
    ABSplitNode,
    AudienceEntry,
    DelayNode,
    JourneyDefinition,
    MessageNode,
    Node,
    ReachabilityNode,
    SegmentSplitNode,
    TriggerEntry,
    WaitForEventNode,
    WebhookNode,
)

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


@dataclass(frozen=True)
class ReportData:
    journeys: Sequence[JourneyReport] = ()
    segments: Sequence[SegmentSeries] = ()
    generated_at: datetime | None = None
    bucket: Bucket = "hour"


class ReportError(RuntimeError):
    """The API refused a read the report needs (unknown journey, no projections...)."""


# --- collecting -----------------------------------------------------------------------


class Api(Protocol):
    """What the report needs of ``streams.client.HttpClient``."""

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
    return ReportData(list(journeys), segments, datetime.now(UTC), bucket)


def write_report(path: Path | str, data: ReportData) -> Path:
    target = Path(path)
    target.write_text(render_html(data), encoding="utf-8")
    return target


# --- rendering ------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _attrs(**values: object) -> str:
    """`` data-journey="..." ...`` from keyword names (underscores become dashes)."""
    return "".join(f' {name.replace("_", "-")}="{_e(value)}"' for name, value in values.items())


def _number(value: int) -> str:
    return f"{value:,}"


def _when(moment: datetime, bucket: str = "hour") -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).strftime("%Y-%m-%d" if bucket == "day" else "%Y-%m-%d %H:%M")
    return f"{text} UTC"


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _f(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


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

FILL = {
    "message": "#dbeafe",
    "delay": "#f1f5f9",
    "wait_for_event": "#fef3c7",
    "segment_split": "#ede9fe",
    "ab_split": "#ede9fe",
    "reachability": "#ede9fe",
    "update_profile": "#dcfce7",
    "webhook": "#dcfce7",
    "exit": "#e5e7eb",
}
LINE = 16  # px between the text lines of a box
HEAD = 26  # px of a box above its text lines: padding and the id


def render_html(data: ReportData) -> str:
    """The whole page; every user-provided string escaped."""
    title = "reachstream report"
    generated = f" — generated {_when(data.generated_at)}" if data.generated_at else ""
    links = [
        f'<a href="#journey-{_e(j.definition.id)}">{_e(j.definition.name)}</a>'
        for j in data.journeys
    ]
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
            f'<article class="journey" id="journey-{_e(journey.id)}"'
            f"{_attrs(data_journey=journey.id)}>",
            f"<h3>{_e(journey.name)}</h3>",
            f'<p class="meta">{_e(" · ".join(meta))}</p>',
            _totals(report),
            f'<div class="graph">{_graph(report, index)}</div>',
            _earlier(report),
            "</article>",
        ]
    )


def _totals(report: JourneyReport) -> str:
    journey_id = report.definition.id
    cells = []
    for name in JOURNEY_COUNTS:
        value = int(report.totals.get(name) or 0)
        attrs = _attrs(data_journey=journey_id, data_metric=name, data_value=value)
        cells.append(
            f"<div><dt>{_e(name.replace('_', ' '))}</dt><dd{attrs}>{_number(value)}</dd></div>"
        )
    ctr = report.totals.get("ctr")
    shown = "-" if ctr is None else f"{float(ctr):.1%}"
    attrs = _attrs(
        data_journey=journey_id, data_metric="ctr", data_value="" if ctr is None else ctr
    )
    cells.append(f"<div><dt>CTR</dt><dd{attrs}>{shown}</dd></div>")
    return f'<dl class="totals">{"".join(cells)}</dl>'


def _detail(node: Node) -> str:
    """What a box says under its id: the type and what matters most for it."""
    if isinstance(node, MessageNode):
        return f"{node.channel} · {node.preset}"
    if isinstance(node, SegmentSplitNode):
        return f"segment {node.segment}"
    if isinstance(node, ReachabilityNode):
        return f"channel {node.channel}"
    if isinstance(node, ABSplitNode):
        return " · ".join(f"{v.name} {v.percent}%" for v in node.variants)
    if isinstance(node, WaitForEventNode):
        return f"timeout {node.timeout.amount} {node.timeout.unit}"
    if isinstance(node, DelayNode) and node.duration:
        return f"{node.duration.amount} {node.duration.unit}"
    if isinstance(node, WebhookNode):
        return node.url
    return ""


def _shown_counts(counts: Mapping[str, int]) -> list[str]:
    """Entered always; the other counts where not zero."""
    return ["entered", *(name for name in STEP_COUNTS[1:] if counts.get(name, 0))]


def _edges(journey: JourneyDefinition) -> list[tuple[str, str, str]]:
    return [
        (node.id, output, node.next[output])
        for node in journey.nodes
        for output in node.outputs()
        if output in node.next
    ]


def _graph(report: JourneyReport, index: int) -> str:
    journey = report.definition
    zero: dict[str, int] = {}
    counts = {node.id: report.steps.get(node.id, zero) for node in journey.nodes}
    heights = {
        node.id: HEAD + LINE * len(_lines(node, counts[node.id])) + 10 for node in journey.nodes
    }
    placed = layout(journey.start, _edges(journey), heights)
    users = {(e.source, e.output, e.target): e.users for e in report.edges}
    marker = f"arrow-{index}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(placed.width)}" '
        f'height="{_f(placed.height)}" viewBox="0 0 {_f(placed.width)} {_f(placed.height)}" '
        f'role="img" aria-label="{_e(journey.name)}: steps and edges">',
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#9aa5b1"/></marker></defs>',
    ]
    for route in placed.routes:
        parts.append(_route(journey.id, route, users.get(_key(route), 0), marker))
    for node in journey.nodes:
        parts.append(_node(journey.id, node, counts[node.id], placed))
    parts.append("</svg>")
    return "\n".join(parts)


def _key(route: Route) -> tuple[str, str, str]:
    return (route.source, route.output, route.target)


def _path(points: Sequence[Point], back: bool) -> str:
    (x, y), *rest = points
    path = [f"M{_f(x)},{_f(y)}"]
    for qx, qy in rest:
        if back:
            path.append(f"L{_f(qx)},{_f(qy)}")
        else:
            # Horizontal tangents at both ends: a smooth S between columns.
            middle = (x + qx) / 2
            path.append(f"C{_f(middle)},{_f(y)} {_f(middle)},{_f(qy)} {_f(qx)},{_f(qy)}")
        x, y = qx, qy
    return " ".join(path)


def _route(journey_id: str, route: Route, users: int, marker: str) -> str:
    points = route.points
    if route.back:
        (ax, lane), (bx, _) = points[2], points[3]
        label_x, label_y = (ax + bx) / 2, lane - 4
    else:
        (ax, ay), (bx, by) = points[0], points[1]
        label_x, label_y = (ax + bx) / 2, (ay + by) / 2 + 4
    attrs = _attrs(
        data_journey=journey_id,
        data_edge=f"{route.source}.{route.output}",
        data_to=route.target,
        data_metric="users",
        data_value=users,
    )
    css = "edge back" if route.back else "edge"
    return (
        f'<g class="route"><path class="{css}" d="{_path(points, route.back)}" '
        f'marker-end="url(#{marker})"/>'
        f'<text class="edge-label" x="{_f(label_x)}" y="{_f(label_y)}" text-anchor="middle">'
        f"<title>{_e(route.source)} → {_e(route.output)} → {_e(route.target)}</title>"
        f'{_e(_fit(route.output, 14))} <tspan class="count"{attrs}>{_number(users)}</tspan>'
        "</text></g>"
    )


def _lines(node: Node, counts: Mapping[str, int]) -> list[str]:
    """A box's lines under its id: the type, what matters most for it, then counts."""
    detail = _detail(node)
    return [node.type, *([detail] if detail else []), *_shown_counts(counts)]


def _node(journey_id: str, node: Node, counts: Mapping[str, int], placed: Layout) -> str:
    box = placed.boxes[node.id]
    left, right = box.x + 10, box.x + box.width - 10
    tooltip = " — ".join(part for part in (node.id, node.name, _detail(node)) if part)
    parts = [
        f'<g class="node"{_attrs(data_journey=journey_id, data_node=node.id)}>'
        f"<title>{_e(tooltip)}</title>",
        f'<rect x="{_f(box.x)}" y="{_f(box.y)}" width="{_f(box.width)}" '
        f'height="{_f(box.height)}" rx="6" fill="{FILL.get(node.type, "#fff")}"/>',
        f'<text class="id" x="{_f(left)}" y="{_f(box.y + 18)}">{_e(_fit(node.id, 22))}</text>',
    ]
    lines = _lines(node, counts)
    kinds = len(lines) - len(_shown_counts(counts))
    for line, name in enumerate(lines):
        y = _f(box.y + HEAD + LINE * (line + 1) - 4)
        if line < kinds:
            parts.append(f'<text class="kind" x="{_f(left)}" y="{y}">{_e(_fit(name, 25))}</text>')
            continue
        value = int(counts.get(name, 0))
        attrs = _attrs(
            data_journey=journey_id, data_step=node.id, data_metric=name, data_value=value
        )
        parts.append(f'<text x="{_f(left)}" y="{y}">{_e(name.replace("_", " "))}</text>')
        parts.append(
            f'<text class="count" x="{_f(right)}" y="{y}" text-anchor="end"{attrs}>'
            f"{_number(value)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _earlier(report: JourneyReport) -> str:
    """Counts of steps and edges the shown version no longer has (from earlier ones)."""
    journey = report.definition
    current = {node.id for node in journey.nodes}
    drawn = set(_edges(journey))
    rows = []
    for step, counts in report.steps.items():
        if step in current:
            continue
        cells = []
        for name in _shown_counts(counts):
            value = counts.get(name, 0)
            attrs = _attrs(
                data_journey=journey.id, data_step=step, data_metric=name, data_value=value
            )
            cells.append(f"{_e(name.replace('_', ' '))} <span{attrs}>{_number(value)}</span>")
        rows.append(f"<tr><td>step {_e(step)}</td><td>{', '.join(cells)}</td></tr>")
    for edge in report.edges:
        if (edge.source, edge.output, edge.target) in drawn:
            continue
        attrs = _attrs(
            data_journey=journey.id,
            data_edge=f"{edge.source}.{edge.output}",
            data_to=edge.target,
            data_metric="users",
            data_value=edge.users,
        )
        rows.append(
            f"<tr><td>edge {_e(edge.source)} → {_e(edge.output)} → {_e(edge.target)}</td>"
            f"<td>users <span{attrs}>{_number(edge.users)}</span></td></tr>"
        )
    if not rows:
        return ""
    return (
        "<details><summary>Steps and edges of earlier versions</summary>"
        f"<table>{''.join(rows)}</table></details>"
    )


# --- segments -------------------------------------------------------------------------


CHART = {"width": 640.0, "height": 170.0, "left": 56.0, "right": 16.0, "top": 12.0, "bottom": 26.0}


def _segments_section(segments: Sequence[SegmentSeries], bucket: Bucket) -> str:
    parts = [
        '<section id="segments"><h2>Segments</h2>'
        f'<p class="meta">members at the end of each {bucket} with a change</p>'
    ]
    if not segments:
        parts.append('<p class="empty">No segments.</p></section>')
        return "\n".join(parts)
    moments = [at for series in segments for at, _ in series.sizes]
    span = (min(moments), max(moments)) if moments else None
    rows = []
    for series in segments:
        if series.sizes:
            at, members = series.sizes[-1]
            when = _when(at, bucket)
            stamp = at.isoformat()
        else:
            members, when, stamp = 0, "no change yet", ""
        attrs = _attrs(
            data_segment=series.segment_id, data_metric="members", data_value=members, data_at=stamp
        )
        rows.append(
            f'<tr><td><a href="#segment-{_e(series.segment_id)}">{_e(series.segment_id)}</a></td>'
            f"<td>{_e(series.name)}</td><td class='n'{attrs}>{_number(members)}</td>"
            f"<td>{_e(when)}</td></tr>"
        )
    parts.append(
        "<table><thead><tr><th>segment</th><th>name</th><th>members</th><th>as of</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    for series in segments:
        parts.append(
            f'<h3 id="segment-{_e(series.segment_id)}">{_e(series.name)} '
            f'<span class="meta">({_e(series.segment_id)})</span></h3>'
        )
        if series.sizes and span:
            parts.append(f'<div class="chart">{_chart(series, span, bucket)}</div>')
        else:
            parts.append('<p class="empty">No membership change yet.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _chart(series: SegmentSeries, span: tuple[datetime, datetime], bucket: Bucket) -> str:
    """A step line: a size holds until the next bucket with a change, and after the
    last one to the right edge (the latest bucket of any segment)."""
    width, height = CHART["width"], CHART["height"]
    left, right = CHART["left"], width - CHART["right"]
    top, bottom = CHART["top"], height - CHART["bottom"]
    start, end = span
    if end <= start:
        end = start + timedelta(seconds=BUCKET_SECONDS[bucket])
    values = [members for _, members in series.sizes]
    low, high = min(0, *values), max(1, *values)

    def x(at: datetime) -> float:
        return left + (right - left) * (at - start).total_seconds() / (end - start).total_seconds()

    def y(members: int) -> float:
        return bottom - (bottom - top) * (members - low) / (high - low)

    first_at, first = series.sizes[0]
    path = [f"M{_f(x(first_at))},{_f(y(first))}"]
    for at, members in series.sizes[1:]:
        path.append(f"H{_f(x(at))} V{_f(y(members))}")
    path.append(f"H{_f(right)}")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(width)}" height="{_f(height)}" '
        f'viewBox="0 0 {_f(width)} {_f(height)}" role="img" '
        f'aria-label="{_e(series.name)}: members over time">',
    ]
    for value in sorted({low, (low + high) // 2, high}):
        parts.append(
            f'<line class="grid" x1="{_f(left)}" x2="{_f(right)}" y1="{_f(y(value))}" '
            f'y2="{_f(y(value))}"/><text class="axis" x="{_f(left - 6)}" '
            f'y="{_f(y(value) + 4)}" text-anchor="end">{_number(value)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{_f(left)}" y="{_f(height - 8)}">{_e(_when(start, bucket))}</text>'
        f'<text class="axis" x="{_f(right)}" y="{_f(height - 8)}" text-anchor="end">'
        f"{_e(_when(end, bucket))}</text>"
    )
    parts.append(f'<path class="series" d="{" ".join(path)}"/>')
    for at, members in series.sizes:
        attrs = _attrs(data_segment=series.segment_id, data_at=at.isoformat(), data_value=members)
        parts.append(
            f'<circle class="point" cx="{_f(x(at))}" cy="{_f(y(members))}" r="3"{attrs}>'
            f"<title>{_e(_when(at, bucket))}: {_number(members)}</title></circle>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
