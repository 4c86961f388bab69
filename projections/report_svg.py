"""The report's drawings, as inline SVG: a journey graph (boxes with their counts,
edges labelled with their output and users, placed by ``report_layout``) and a segment's
size over time; and the small text helpers the page shares. Pure: strings out, every
user-provided string escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from projections.journey_stats import STEP_COUNTS
from projections.report_layout import Edge, Layout, Point, Route, layout
from schemas.journey_nodes import (
    ABSplitNode,
    DelayNode,
    MessageNode,
    Node,
    ReachabilityNode,
    SegmentSplitNode,
    WaitForEventNode,
    WebhookNode,
)
from schemas.journeys import JourneyDefinition


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_attrs(**values: object) -> str:
    """`` data-journey="..." ...`` from keyword names (underscores become dashes)."""
    return "".join(f' {name.replace("_", "-")}="{esc(value)}"' for name, value in values.items())


def count_text(value: int) -> str:
    return f"{value:,}"


def moment_text(moment: datetime, bucket: str = "hour") -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).strftime("%Y-%m-%d" if bucket == "day" else "%Y-%m-%d %H:%M")
    return f"{text} UTC"


def fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


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


def shown_counts(counts: Mapping[str, int]) -> list[str]:
    """Entered always; the other counts where not zero."""
    return ["entered", *(name for name in STEP_COUNTS[1:] if counts.get(name, 0))]


def journey_edges(journey: JourneyDefinition) -> list[Edge]:
    return [
        (node.id, output, node.next[output])
        for node in journey.nodes
        for output in node.outputs()
        if output in node.next
    ]


def graph_svg(
    journey: JourneyDefinition,
    steps: Mapping[str, Mapping[str, int]],
    users: Mapping[Edge, int],
    index: int,
) -> str:
    """The journey's boxes and edges with their counts; ``index`` keeps the page's ids
    apart."""
    zero: dict[str, int] = {}
    counts = {node.id: steps.get(node.id, zero) for node in journey.nodes}
    heights = {
        node.id: HEAD + LINE * len(_lines(node, counts[node.id])) + 10 for node in journey.nodes
    }
    placed = layout(journey.start, journey_edges(journey), heights)
    marker = f"arrow-{index}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(placed.width)}" '
        f'height="{num(placed.height)}" viewBox="0 0 {num(placed.width)} {num(placed.height)}" '
        f'role="img" aria-label="{esc(journey.name)}: steps and edges">',
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


def _key(route: Route) -> Edge:
    return (route.source, route.output, route.target)


def _path(points: Sequence[Point], back: bool) -> str:
    (x, y), *rest = points
    path = [f"M{num(x)},{num(y)}"]
    for qx, qy in rest:
        if back:
            path.append(f"L{num(qx)},{num(qy)}")
        else:
            # Horizontal tangents at both ends: a smooth S between columns.
            middle = (x + qx) / 2
            path.append(f"C{num(middle)},{num(y)} {num(middle)},{num(qy)} {num(qx)},{num(qy)}")
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
    attrs = data_attrs(
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
        f'<text class="edge-label" x="{num(label_x)}" y="{num(label_y)}" text-anchor="middle">'
        f"<title>{esc(route.source)} → {esc(route.output)} → {esc(route.target)}</title>"
        f'{esc(fit(route.output, 14))} <tspan class="count"{attrs}>{count_text(users)}</tspan>'
        "</text></g>"
    )


def _lines(node: Node, counts: Mapping[str, int]) -> list[str]:
    """A box's lines under its id: the type, what matters most for it, then counts."""
    detail = _detail(node)
    return [node.type, *([detail] if detail else []), *shown_counts(counts)]


def _node(journey_id: str, node: Node, counts: Mapping[str, int], placed: Layout) -> str:
    box = placed.boxes[node.id]
    left, right = box.x + 10, box.x + box.width - 10
    tooltip = " — ".join(part for part in (node.id, node.name, _detail(node)) if part)
    parts = [
        f'<g class="node"{data_attrs(data_journey=journey_id, data_node=node.id)}>'
        f"<title>{esc(tooltip)}</title>",
        f'<rect x="{num(box.x)}" y="{num(box.y)}" width="{num(box.width)}" '
        f'height="{num(box.height)}" rx="6" fill="{FILL.get(node.type, "#fff")}"/>',
        f'<text class="id" x="{num(left)}" y="{num(box.y + 18)}">{esc(fit(node.id, 22))}</text>',
    ]
    lines = _lines(node, counts)
    kinds = len(lines) - len(shown_counts(counts))
    for line, name in enumerate(lines):
        y = num(box.y + HEAD + LINE * (line + 1) - 4)
        if line < kinds:
            parts.append(f'<text class="kind" x="{num(left)}" y="{y}">{esc(fit(name, 25))}</text>')
            continue
        value = int(counts.get(name, 0))
        attrs = data_attrs(
            data_journey=journey_id, data_step=node.id, data_metric=name, data_value=value
        )
        parts.append(f'<text x="{num(left)}" y="{y}">{esc(name.replace("_", " "))}</text>')
        parts.append(
            f'<text class="count" x="{num(right)}" y="{y}" text-anchor="end"{attrs}>'
            f"{count_text(value)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


CHART = {"width": 640.0, "height": 170.0, "left": 56.0, "right": 16.0, "top": 12.0, "bottom": 26.0}


def chart_svg(
    segment_id: str,
    name: str,
    sizes: Sequence[tuple[datetime, int]],
    span: tuple[datetime, datetime],
    bucket: str,
) -> str:
    """A step line over ``span`` (start before end): a size holds until the next bucket
    with a change, and after the last one to the right edge. ``sizes`` is not empty."""
    width, height = CHART["width"], CHART["height"]
    left, right = CHART["left"], width - CHART["right"]
    top, bottom = CHART["top"], height - CHART["bottom"]
    start, end = span
    values = [members for _, members in sizes]
    low, high = min(0, *values), max(1, *values)

    def x(at: datetime) -> float:
        return left + (right - left) * (at - start).total_seconds() / (end - start).total_seconds()

    def y(members: int) -> float:
        return bottom - (bottom - top) * (members - low) / (high - low)

    first_at, first = sizes[0]
    path = [f"M{num(x(first_at))},{num(y(first))}"]
    for at, members in sizes[1:]:
        path.append(f"H{num(x(at))} V{num(y(members))}")
    path.append(f"H{num(right)}")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" height="{num(height)}" '
        f'viewBox="0 0 {num(width)} {num(height)}" role="img" '
        f'aria-label="{esc(name)}: members over time">',
    ]
    for value in sorted({low, (low + high) // 2, high}):
        parts.append(
            f'<line class="grid" x1="{num(left)}" x2="{num(right)}" y1="{num(y(value))}" '
            f'y2="{num(y(value))}"/><text class="axis" x="{num(left - 6)}" '
            f'y="{num(y(value) + 4)}" text-anchor="end">{count_text(value)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{num(left)}" y="{num(height - 8)}">'
        f"{esc(moment_text(start, bucket))}</text>"
        f'<text class="axis" x="{num(right)}" y="{num(height - 8)}" text-anchor="end">'
        f"{esc(moment_text(end, bucket))}</text>"
    )
    parts.append(f'<path class="series" d="{" ".join(path)}"/>')
    for at, members in sizes:
        attrs = data_attrs(data_segment=segment_id, data_at=at.isoformat(), data_value=members)
        parts.append(
            f'<circle class="point" cx="{num(x(at))}" cy="{num(y(members))}" r="3"{attrs}>'
            f"<title>{esc(moment_text(at, bucket))}: {count_text(members)}</title></circle>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
