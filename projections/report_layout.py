"""Where a journey graph's boxes and edges go in the report: columns of nodes by
longest path from the start, nodes of a column stacked and centred, edges that skip
columns routed through placeholder slots so they pass between boxes, not over them.

Loops (allowed through a step that waits) are cut where a depth-first walk from the
start meets a node still on its path; those edges are drawn back along the bottom.
Pure: ids and sizes in, coordinates out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    layer: int


@dataclass(frozen=True)
class Route:
    source: str
    output: str
    target: str
    points: tuple[Point, ...]
    """Forward: the source's port, then in and out of each column it crosses, then the
    target's port. Back: the source's port, corners down to a lane under the graph and
    back up, the target's port."""
    back: bool


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    routes: list[Route]
    width: float
    height: float


@dataclass(frozen=True)
class Spacing:
    box_width: float = 180
    column_gap: float = 130
    row_gap: float = 28
    passage: float = 26
    """The height a skipping edge takes in a column it crosses."""
    margin: float = 16
    lane: float = 18
    """The gap between two back edges' lanes under the graph."""


Edge = tuple[str, str, str]  # source, output, target


def layout(
    start: str,
    edges: Sequence[Edge],
    heights: Mapping[str, float],
    spacing: Spacing | None = None,
) -> Layout:
    """Place every node of ``heights`` (the box height of each) and route ``edges``.
    Nodes the start does not reach (a valid journey has none) go in the first column."""
    space = spacing or Spacing()
    order, back = _walk(start, edges, list(heights))
    forward = [edge for edge in edges if edge not in back]
    layer = _layers(order, forward)
    columns, chains = _columns(order, forward, layer)
    boxes: dict[str, Box] = {}
    slots: dict[str, float] = {}  # placeholder slot -> its centre line
    size = {slot: heights.get(slot, space.passage) for column in columns for slot in column}
    stacked = [
        sum(size[slot] for slot in column) + space.row_gap * (len(column) - 1) for column in columns
    ]
    tallest = max(stacked, default=0.0)
    for index, column in enumerate(columns):
        x = space.margin + index * (space.box_width + space.column_gap)
        y = space.margin + (tallest - stacked[index]) / 2
        for slot in column:
            if slot in heights:
                boxes[slot] = Box(x, y, space.box_width, size[slot], index)
            else:
                slots[slot] = y + size[slot] / 2
            y += size[slot] + space.row_gap
    bottom = space.margin + tallest
    routes = _routes(forward, sorted(back), boxes, slots, chains, space, bottom)
    width = 2 * space.margin + len(columns) * space.box_width
    width += max(len(columns) - 1, 0) * space.column_gap
    if back:  # room for the lanes' turns right of the last column
        width += space.column_gap / 2
    height = bottom + space.lane * len(back) + space.margin
    return Layout(boxes, routes, width, height)


def _walk(start: str, edges: Sequence[Edge], nodes: list[str]) -> tuple[list[str], set[Edge]]:
    """Depth-first from the start (outputs in order): the discovery order, and the
    edges that close a loop (to a node still on the walk's path)."""
    outgoing: dict[str, list[Edge]] = {node: [] for node in nodes}
    for edge in edges:
        outgoing.setdefault(edge[0], []).append(edge)
    order: list[str] = []
    seen: set[str] = set()
    on_path: set[str] = set()
    back: set[Edge] = set()
    for root in [start, *nodes]:
        if root in seen or root not in outgoing:
            continue
        seen.add(root)
        order.append(root)
        on_path.add(root)
        stack = [(root, iter(outgoing[root]))]
        while stack:
            node, pending = stack[-1]
            following = next(pending, None)
            if following is None:
                on_path.discard(node)
                stack.pop()
                continue
            target = following[2]
            if target in on_path:
                back.add(following)
            elif target not in seen and target in outgoing:
                seen.add(target)
                order.append(target)
                on_path.add(target)
                stack.append((target, iter(outgoing[target])))
    return order, back


def _layers(order: list[str], forward: list[Edge]) -> dict[str, int]:
    """Longest path from the roots, over the loop-free edges (in topological order)."""
    incoming = dict.fromkeys(order, 0)
    for _, _, target in forward:
        incoming[target] += 1
    layer = dict.fromkeys(order, 0)
    ready = [node for node in order if incoming[node] == 0]
    while ready:
        node = ready.pop(0)
        for source, _, target in forward:
            if source == node:
                layer[target] = max(layer[target], layer[node] + 1)
                incoming[target] -= 1
                if incoming[target] == 0:
                    ready.append(target)
    return layer


def _columns(
    order: list[str], forward: list[Edge], layer: dict[str, int]
) -> tuple[list[list[str]], dict[Edge, list[str]]]:
    """Each column's slots top to bottom, and each skipping edge's placeholder slots.
    A column is ordered by the mean position of what leads into it (fewer crossings),
    then by discovery order."""
    rank = {node: float(index) for index, node in enumerate(order)}
    leads: dict[str, list[str]] = {node: [] for node in order}
    chains: dict[Edge, list[str]] = {}
    for edge in forward:
        source, output, target = edge
        previous = source
        chain = []
        for step in range(layer[source] + 1, layer[target]):
            slot = f"{source}.{output}#{step}"  # node ids hold no dots or hashes
            chain.append(slot)
            layer[slot] = step
            rank[slot] = rank[source] + 0.5
            leads[slot] = [previous]
            previous = slot
        chains[edge] = chain
        leads[target].append(previous)
    depth = max(layer.values(), default=0) + 1
    columns: list[list[str]] = [[] for _ in range(depth)]
    for slot in sorted(layer, key=lambda slot: rank[slot]):
        columns[layer[slot]].append(slot)
    position: dict[str, float] = {}
    for column in columns:
        column.sort(
            key=lambda slot: (
                _mean([position[lead] for lead in leads[slot]], rank[slot]),
                rank[slot],
            )
        )
        position.update((slot, float(index)) for index, slot in enumerate(column))
    return columns, chains


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _routes(
    forward: list[Edge],
    back: list[Edge],
    boxes: dict[str, Box],
    slots: dict[str, float],
    chains: dict[Edge, list[str]],
    space: Spacing,
    bottom: float,
) -> list[Route]:
    """Edges leave a box's right side and enter the next one's left side; ports are
    spread along the side in the order of what they lead to (back edges last), so
    edges at one box do not cross there. A back edge turns down in the gap after its
    source, runs along its own lane under the graph, and up the gap before its target:
    it never crosses a box."""
    below = float("inf")

    def first_y(edge: Edge) -> float:
        if edge in lanes:
            return below
        chain = chains[edge]
        return slots[chain[0]] if chain else _centre(boxes[edge[2]])

    def last_y(edge: Edge) -> float:
        if edge in lanes:
            return below
        chain = chains[edge]
        return slots[chain[-1]] if chain else _centre(boxes[edge[0]])

    lanes = {edge: number for number, edge in enumerate(back)}
    out_port = _ports([*forward, *back], boxes, key=first_y, side=0)
    in_port = _ports([*forward, *back], boxes, key=last_y, side=2)
    routes = []
    for edge in forward:
        source, output, target = edge
        box = boxes[source]
        points: list[Point] = [(box.x + box.width, out_port[edge])]
        for slot in chains[edge]:
            column = int(slot.rsplit("#", 1)[1])
            left = space.margin + column * (space.box_width + space.column_gap)
            points += [(left, slots[slot]), (left + space.box_width, slots[slot])]
        points.append((boxes[target].x, in_port[edge]))
        routes.append(Route(source, output, target, tuple(points), back=False))
    for edge, number in lanes.items():
        source, output, target = edge
        start, end = boxes[source], boxes[target]
        lane = bottom + space.lane * (number + 1)
        turn = space.column_gap / 4 + 6 * number  # apart from other lanes' turns
        down, up = start.x + start.width + turn, end.x - turn
        points = [
            (start.x + start.width, out_port[edge]),
            (down, out_port[edge]),
            (down, lane),
            (up, lane),
            (up, in_port[edge]),
            (end.x, in_port[edge]),
        ]
        routes.append(Route(source, output, target, tuple(points), back=True))
    return routes


def _ports(
    forward: list[Edge], boxes: dict[str, Box], key: Callable[[Edge], float], side: int
) -> dict[Edge, float]:
    """The y of each edge's end on the node at ``side`` (0: source, 2: target)."""
    by_node: dict[str, list[Edge]] = {}
    for edge in forward:
        by_node.setdefault(edge[side], []).append(edge)
    found: dict[Edge, float] = {}
    for node, group in by_node.items():
        box = boxes[node]
        group.sort(key=lambda edge: (key(edge), edge[1]))
        for index, edge in enumerate(group):
            found[edge] = box.y + box.height * (index + 1) / (len(group) + 1)
    return found


def _centre(box: Box) -> float:
    return box.y + box.height / 2
