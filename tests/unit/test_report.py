"""The HTML report: rendered from synthetic data (the seed's journeys with made-up
counts, and a journey with branches, merges, a loop and a hostile name), read back
with html.parser; the graph layout's geometry; and ``collect`` against a real
ClickHouse engine holding journey activity and segment memberships."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from files.journeys import load as load_journeys
from projections.journey_stats import STEP_COUNTS
from projections.report import (
    EdgeCount,
    JourneyReport,
    ReportData,
    SegmentSeries,
    render_html,
    write_report,
)
from projections.report_layout import Box, Layout, layout
from schemas.journeys import JourneyDefinition

ROOT = Path(__file__).resolve().parents[2]
SEED = load_journeys(ROOT / "examples" / "seed-journeys.yaml")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script> & \"friends\""

# --- reading a page back ----------------------------------------------------------------

VOID = {"meta", "link", "br", "hr", "img", "input", "source", "wbr", "col", "area", "base"}


@dataclass
class Number:
    attrs: dict[str, str]
    text: str

    @property
    def shown(self) -> int:
        """The text as a number (thousands separators dropped)."""
        return int(self.text.replace(",", ""))


class Page(HTMLParser):
    """Walks a page, failing on a closing tag that does not match the open element, and
    keeps every element with a ``data-value`` and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.numbers: list[Number] = []
        self.tags: list[str] = []
        self.open: list[tuple[str, Number | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = {name: value or "" for name, value in attrs}
        number = Number(found, "") if "data-value" in found else None
        if number is not None:
            self.numbers.append(number)
        if tag not in VOID:
            self.open.append((tag, number))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes nothing"
        expected, _ = self.open.pop()
        assert expected == tag, f"</{tag}> closes <{expected}>"

    def handle_data(self, data: str) -> None:
        for _, number in self.open:
            if number is not None:
                number.text += data

    def find(self, **wanted: str) -> list[Number]:
        keys = {f"data-{name.replace('_', '-')}": value for name, value in wanted.items()}
        return [n for n in self.numbers if all(n.attrs.get(k) == v for k, v in keys.items())]

    def one(self, **wanted: str) -> Number:
        [found] = self.find(**wanted)
        return found


def read_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert not page.open, f"never closed: {[tag for tag, _ in page.open]}"
    return page


# --- synthetic data -------------------------------------------------------------------


def made_up(journey: JourneyDefinition, users: int = 1000) -> JourneyReport:
    """Counts that add up: everyone enters at the start, 30% open a message with a
    split, exits count who reach them. Nodes in the order users reach them (as the
    seed writes them)."""
    entered = {journey.start: users}
    steps: dict[str, dict[str, int]] = {}
    edges = []
    for node in journey.nodes:
        count = entered.get(node.id, 0)
        counts = dict.fromkeys(STEP_COUNTS, 0) | {"entered": count}
        went = dict.fromkeys(node.outputs(), 0)
        if node.type == "message":
            counts["sent"] = count
            if "opened" in went:
                counts["opened"] = went["opened"] = count * 3 // 10
                counts["not_opened"] = went["not_opened"] = count - went["opened"]
            else:
                went["next"] = count
        elif node.type == "exit":
            counts["exited"] = count
        for output, users_out in went.items():
            target = node.next[output]
            edges.append(EdgeCount(node.id, output, target, users_out))
            entered[target] = entered.get(target, 0) + users_out
        steps[node.id] = counts
    totals = {"entries": users, "unique_users": users - 7, "inside_now": 0, "goals": 2,
              "sent": 1700, "opened": 300, "clicked": 1234, "ctr": 1234 / 1700}  # fmt: skip
    return JourneyReport(journey, steps, edges, totals, "launched")


LOOPING = JourneyDefinition.model_validate(
    {
        "id": "looping",
        "name": HOSTILE,
        "entries": [{"kind": "api"}],
        "start": "reach",
        "nodes": [
            {"id": "reach", "type": "reachability", "channel": "push",
             "next": {"reachable": "ab", "unreachable": "mail"}},
            {"id": "ab", "type": "ab_split",
             "variants": [{"name": "a", "percent": 50}, {"name": "b", "percent": 50}],
             "next": {"a": "push-a", "b": "push-b"}},
            {"id": "push-a", "type": "message", "channel": "push", "preset": "pa",
             "next": {"next": "wait"}},
            {"id": "push-b", "type": "message", "channel": "push", "preset": "pb",
             "next": {"next": "wait"}},
            {"id": "mail", "type": "message", "channel": "email", "preset": "m",
             "next": {"next": "done"}},
            {"id": "wait", "type": "wait_for_event", "timeout": {"amount": 2, "unit": "days"},
             "branches": [{"name": "bought", "events": [{"event": "Buy"}]}],
             "next": {"bought": "done", "timeout": "nudge"}},
            {"id": "nudge", "type": "delay", "duration": {"amount": 1, "unit": "days"},
             "next": {"next": "wait"}},
            {"id": "done", "type": "exit"},
        ],
    }
)  # fmt: skip
LOOPING_REPORT = JourneyReport(
    LOOPING,
    {
        "reach": {"entered": 12345},
        "wait": {"entered": 800, "dropped": 3, "goal": 0},
        "retired": {"entered": 5, "sent": 4},  # a step of an earlier version
    },
    [
        EdgeCount("reach", "reachable", "ab", 10000),
        EdgeCount("nudge", "next", "wait", 50),
        EdgeCount("reach", "unreachable", "retired", 5),  # an edge of an earlier version
    ],
    {"entries": 12345, "ctr": None},
)
SEGMENTS = [
    SegmentSeries("inactive-7d", "Inactive 7 days",
                  [(T0 + timedelta(hours=h), 100 + 10 * h) for h in range(0, 12, 3)]),
    SegmentSeries("vip", f"VIP {HOSTILE}", [(T0 + timedelta(hours=5), 3),
                                            (T0 + timedelta(hours=9), 2)]),
    SegmentSeries("empty", "Nobody yet", []),
]  # fmt: skip


def synthetic() -> ReportData:
    journeys = [made_up(journey, 1000 + index) for index, journey in enumerate(SEED)]
    return ReportData([*journeys, LOOPING_REPORT], SEGMENTS, T0 + timedelta(days=1))


# --- the page -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> ReportData:
    return synthetic()


@pytest.fixture(scope="module")
def page(data: ReportData) -> Page:
    return read_page(render_html(data))


def test_page_is_self_contained(data: ReportData) -> None:
    text = render_html(data)
    assert text.startswith("<!DOCTYPE html>")
    page = read_page(text)
    assert "script" not in page.tags
    assert not {"link", "img", "iframe", "object"} & set(page.tags)
    for reference in ("http://", "https://", "src=", "@import", "url(http"):
        assert reference not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_every_step_count_is_shown_with_its_attributes(data: ReportData, page: Page) -> None:
    for report in data.journeys[: len(SEED)]:
        journey = report.definition.id
        for node in report.definition.nodes:
            counts = report.steps[node.id]
            shown = {n.attrs["data-metric"]: n for n in page.find(journey=journey, step=node.id)}
            expected = {"entered"} | {name for name, value in counts.items() if value}
            assert set(shown) == expected, (journey, node.id)
            for name, number in shown.items():
                assert number.shown == counts[name] == int(number.attrs["data-value"])


def test_every_edge_is_labelled_with_its_output_and_users(data: ReportData, page: Page) -> None:
    for report in data.journeys[: len(SEED)]:
        journey = report.definition.id
        drawn = page.find(journey=journey, metric="users")
        assert len(drawn) == len(report.edges)
        for edge in report.edges:
            number = page.one(journey=journey, edge=f"{edge.source}.{edge.output}")
            assert number.attrs["data-to"] == edge.target
            assert number.shown == edge.users


def test_seed_campaign_numbers(page: Page) -> None:
    once = {"journey": "reengage-once"}
    assert page.one(**once, step="first-email", metric="sent").shown == 1000
    assert page.one(**once, step="first-email", metric="not_opened").text == "700"
    assert page.one(**once, edge="first-email.opened").shown == 300
    assert page.one(**once, edge="second-email.next").shown == 700
    assert page.one(**once, step="done", metric="exited").text == "1,000"
    assert page.one(**once, metric="clicked").text == "1,234"
    assert page.one(**once, metric="ctr").text == "72.6%"


def test_earlier_versions_counts_are_listed(page: Page) -> None:
    assert page.one(journey="looping", step="retired", metric="sent").shown == 4
    retired = page.one(journey="looping", edge="reach.unreachable", to="retired")
    assert retired.shown == 5
    # The drawn edge of the same output, to the current target, nobody took.
    assert page.one(journey="looping", edge="reach.unreachable", to="mail").shown == 0
    assert page.one(journey="looping", step="reach", metric="entered").text == "12,345"
    assert page.one(journey="looping", metric="ctr").text == "-"


def test_user_strings_are_escaped(data: ReportData) -> None:
    text = render_html(data)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;friends&quot;" in text
    page = read_page(text)
    assert not [tag for tag in page.tags if tag == "script"]


def test_segments_latest_size_and_points(page: Page) -> None:
    latest = page.one(segment="inactive-7d", metric="members")
    assert latest.shown == 190
    assert latest.attrs["data-at"] == (T0 + timedelta(hours=9)).isoformat()
    assert page.one(segment="vip", metric="members").shown == 2
    assert page.one(segment="empty", metric="members").shown == 0
    points = [n for n in page.find(segment="inactive-7d") if "data-metric" not in n.attrs]
    assert [int(n.attrs["data-value"]) for n in points] == [100, 130, 160, 190]


def test_an_empty_report_still_renders() -> None:
    page = read_page(render_html(ReportData()))
    assert page.numbers == []


def test_write_report(tmp_path: Path, data: ReportData) -> None:
    path = write_report(tmp_path / "report.html", data)
    assert path.read_text(encoding="utf-8") == render_html(data)


# --- the graph's geometry -------------------------------------------------------------


def _layout(journey: JourneyDefinition) -> Layout:
    edges = [(n.id, output, n.next[output]) for n in journey.nodes for output in n.outputs()]
    return layout(journey.start, edges, {node.id: 60.0 + len(node.id) for node in journey.nodes})


def _inside(point: tuple[float, float], box: Box) -> bool:
    x, y = point
    return box.x < x < box.x + box.width and box.y < y < box.y + box.height


@pytest.mark.parametrize("journey", [*SEED, LOOPING], ids=lambda journey: journey.id)
def test_boxes_do_not_overlap_and_edges_go_between_them(journey: JourneyDefinition) -> None:
    placed = _layout(journey)
    boxes = list(placed.boxes.values())
    assert len(boxes) == len(journey.nodes)
    for index, box in enumerate(boxes):
        assert box.x >= 0
        assert box.y >= 0
        assert box.x + box.width <= placed.width
        assert box.y + box.height <= placed.height
        for other in boxes[index + 1 :]:
            beside = box.x + box.width <= other.x or other.x + other.width <= box.x
            apart = beside or box.y + box.height <= other.y or other.y + other.height <= box.y
            assert apart, (box, other)
    for route in placed.routes:
        for point in route.points:
            assert not any(_inside(point, box) for box in boxes), route


def test_a_merge_comes_after_its_longest_path() -> None:
    # first-email -> done, and first-email -> second-email -> done: done is third.
    placed = _layout(SEED[0])
    assert {node: box.layer for node, box in placed.boxes.items()} == {
        "first-email": 0,
        "second-email": 1,
        "done": 2,
    }
    [skip] = [route for route in placed.routes if route.output == "opened"]
    assert len(skip.points) == 4  # in and out of the column it crosses
    assert not skip.back


def test_branches_spread_in_one_column_and_a_loop_goes_back_below() -> None:
    placed = _layout(LOOPING)
    layers = {node: box.layer for node, box in placed.boxes.items()}
    assert layers["ab"] == layers["mail"] == 1
    assert layers["push-a"] == layers["push-b"] == 2
    assert layers["wait"] == 3
    assert layers["nudge"] == layers["done"] == 4  # done: longest path, through wait
    a, b = placed.boxes["push-a"], placed.boxes["push-b"]
    assert a.y + a.height <= b.y  # variants in their order, top to bottom
    [back] = [route for route in placed.routes if route.back]
    assert (back.source, back.target) == ("nudge", "wait")
    lowest = max(box.y + box.height for box in placed.boxes.values())
    assert min(y for _, y in back.points[2:4]) > lowest


# --- collect, on a real ClickHouse engine ---------------------------------------------

# In a child process: the embedded engine allows one data path per process. The API
# stub answers as the HTTP API does, from the same projections (rows through JSON).
_RUN = """
import asyncio, json, sys
import orjson
from projections import rows
from projections.clickhouse import connect, query_read_only
from projections.journey_stats import journey_stats
from projections.report import ReportError, collect, render_html
from schemas.commands import JourneyActivity

folder, payload = sys.argv[1], json.loads(sys.stdin.read())
client = connect("chdb://" + folder, "reach")
for copy in range(2):  # everything twice, in separate parts: FINAL counts it once
    for offset, item in enumerate(payload["activity"]):
        activity = JourneyActivity.model_validate(item)
        row = rows.journey_activity_row(activity, rows.Origin(0, offset))
        client.insert("journey_activity", [row], column_names=list(rows.JOURNEY_ACTIVITY.columns))
    for offset, change in enumerate(payload["memberships"]):
        row = rows.membership_row(change, rows.Origin(0, offset))
        client.insert("segment_memberships", [row],
                      column_names=list(rows.SEGMENT_MEMBERSHIPS.columns))


def through_json(value):
    return orjson.loads(orjson.dumps(value, default=str))


class Api:
    async def call(self, method, path, body=None):
        journey = payload["journey"]
        answers = {
            "/v1/journeys": {"journeys": [{"id": journey["id"]}]},
            "/v1/journeys/" + journey["id"]: {
                "name": "Renamed", "status": "launched", "definition": journey},
            "/v1/journeys/" + journey["id"] + "/stats": journey_stats(client, journey["id"]),
            "/v1/segments": {"segments": [{"id": "s1", "name": "Segment one"}]},
        }
        if path in answers:
            return 200, through_json(answers[path])
        return 404, {"error": "no " + path}

    async def query(self, sql, parameters=None):
        columns, found = query_read_only(client, sql, parameters)
        return columns, through_json([list(row) for row in found])


def summary(data):
    return {
        "journeys": [
            {"id": j.definition.id, "name": j.definition.name, "steps": j.steps,
             "edges": [list(edge) for edge in j.edges], "totals": j.totals}
            for j in data.journeys
        ],
        "segments": {s.segment_id: [s.name, [[at.isoformat(), n] for at, n in s.sizes]]
                     for s in data.segments},
        "figures": [[d.day, d.journey_id, dict(d.counts)] for d in data.daily],
    }


async def main():
    api = Api()
    everything = await collect(api)
    daily = await collect(api, [], ["s1", "s2"], "day")
    try:
        await collect(api, [], ["nowhere"])
        unknown = None
    except ReportError as error:
        unknown = str(error)
    try:
        await collect(api, ["missing"], [])
        missing = None
    except ReportError as error:
        missing = str(error)
    return {"all": summary(everything), "daily": summary(daily), "unknown": unknown,
            "missing": missing, "html": render_html(everything)}


print(json.dumps(asyncio.run(main())))
"""


def _activity(user: str, step: str, activity: str, minutes: int, **more: Any) -> dict[str, Any]:
    version = more.pop("version", 1)
    return {"journey_id": "reengage-once", "journey_version": version, "run": f"r{version}",
            "user_id": user, "step": step, "activity": activity,
            "at": (T0 + timedelta(minutes=minutes)).isoformat(), **more}  # fmt: skip


ACTIVITY = [
    # u1 opens the first email and leaves.
    _activity("u1", "first-email", "entered", 0, detail="journey"),
    _activity("u1", "first-email", "sent", 1, command_id="c1"),
    _activity("u1", "first-email", "opened", 5, command_id="c1"),
    _activity("u1", "done", "entered", 5, detail="first-email.opened"),
    _activity("u1", "done", "exited", 5),
    # u2 does not, gets the second email and leaves.
    _activity("u2", "first-email", "entered", 0, detail="journey"),
    _activity("u2", "first-email", "sent", 1, command_id="c2"),
    _activity("u2", "first-email", "not_opened", 100, command_id="c2"),
    _activity("u2", "second-email", "entered", 100, detail="first-email.not_opened"),
    _activity("u2", "second-email", "sent", 101, command_id="c3"),
    _activity("u2", "done", "entered", 101, detail="second-email.next"),
    _activity("u2", "done", "exited", 101),
    # u3, under version 2, does not open either and is still inside.
    _activity("u3", "first-email", "entered", 10, detail="journey", version=2),
    _activity("u3", "first-email", "sent", 11, command_id="c4", version=2),
    _activity("u3", "first-email", "not_opened", 110, command_id="c4", version=2),
    _activity("u3", "second-email", "entered", 110, detail="first-email.not_opened", version=2),
    # u4, under version 1, went to a step version 2 no longer has.
    _activity("u4", "first-email", "entered", 0, detail="journey"),
    _activity("u4", "retired", "entered", 100, detail="first-email.not_opened"),
]


def _change(segment: str, user: str, change: str, minutes: int) -> dict[str, Any]:
    at = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return {"segment_id": segment, "user_id": user, "change": change, "at": at, "version": 1}


MEMBERSHIPS = [
    _change("s1", "u1", "entered", 5),  # 09:05
    _change("s1", "u2", "entered", 40),  # 09:40
    _change("s1", "u1", "exited", 130),  # 11:10
    _change("s1", "u3", "entered", 25 * 60),  # the next day, 10:00
    _change("s2", "u1", "entered", 0),  # a segment no longer defined: history only
]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    journey = SEED[0].model_dump(mode="json")
    payload = {"activity": ACTIVITY, "memberships": MEMBERSHIPS, "journey": journey}
    folder = tmp_path_factory.mktemp("report") / "clickhouse"
    completed = subprocess.run(
        [sys.executable, "-c", _RUN, str(folder)],
        input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_collect_reads_steps_edges_and_totals(collected: dict[str, Any]) -> None:
    [journey] = collected["all"]["journeys"]
    assert journey["id"] == "reengage-once"
    assert journey["name"] == "Renamed"  # the latest rename, not the version's name
    steps = {
        step: {k: v for k, v in counts.items() if v} for step, counts in journey["steps"].items()
    }
    assert steps == {
        "first-email": {"entered": 4, "sent": 3, "opened": 1, "not_opened": 2},
        "second-email": {"entered": 2, "sent": 1},
        "done": {"entered": 2, "exited": 2},
        "retired": {"entered": 1},
    }
    # Over both versions; u4's edge led to a step of version 1 only.
    assert journey["edges"] == [
        ["first-email", "not_opened", "retired", 1],
        ["first-email", "not_opened", "second-email", 2],
        ["first-email", "opened", "done", 1],
        ["second-email", "next", "done", 1],
    ]
    assert journey["totals"]["entries"] == 4
    assert journey["totals"]["inside_now"] == 2


def test_collect_reads_the_daily_rollup_once_per_row(collected: dict[str, Any]) -> None:
    # Every row was written twice: the rollup counts identities, so once.
    [(day, journey_id, counts)] = collected["all"]["figures"]
    assert (day, journey_id) == (T0.date().isoformat(), "reengage-once")
    assert {name: value for name, value in counts.items() if value} == {
        "entered": 9,  # 4 entries into the journey, 5 into later steps
        "sent": 4,
        "opened": 1,
    }
    page = read_page(collected["html"])
    shown = {
        n.attrs["data-metric"]: n.attrs["data-value"]
        for n in page.numbers
        if n.attrs.get("data-day") == day
    }
    assert shown["sent"] == "4"
    assert shown["open_rate"] == ""  # nothing delivered: no rate


def test_collect_sizes_segments_per_hour_and_per_day(collected: dict[str, Any]) -> None:
    hourly = collected["all"]["segments"]
    assert hourly == {
        "s1": [
            "Segment one",
            [
                ["2026-11-01T09:00:00+00:00", 2],
                ["2026-11-01T11:00:00+00:00", 1],
                ["2026-11-02T10:00:00+00:00", 2],
            ],
        ]
    }
    assert collected["daily"]["segments"] == {
        "s1": ["Segment one", [["2026-11-01T00:00:00+00:00", 1], ["2026-11-02T00:00:00+00:00", 2]]],
        "s2": ["s2", [["2026-11-01T00:00:00+00:00", 1]]],  # deleted, named by its id
    }


def test_collect_refuses_unknown_journeys_and_segments(collected: dict[str, Any]) -> None:
    assert collected["unknown"] == "no segment 'nowhere' (defined or in history)"
    assert collected["missing"] == "GET /v1/journeys/missing answered 404: no /v1/journeys/missing"


def test_collected_report_shows_the_engine_counts(collected: dict[str, Any]) -> None:
    page = read_page(collected["html"])
    once = {"journey": "reengage-once"}
    assert page.one(**once, step="first-email", metric="not_opened").shown == 2
    assert page.one(**once, edge="first-email.not_opened", to="second-email").shown == 2
    assert page.one(**once, edge="first-email.not_opened", to="retired").shown == 1
    assert page.one(segment="s1", metric="members").shown == 2


# --- the command ----------------------------------------------------------------------


def test_reach_report_writes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import common as cli_common
    from cli import main as cli
    from projections import report

    asked: list[Any] = []

    async def fake_collect(api: object, journeys: Any, segments: Any, bucket: str) -> ReportData:
        asked.append((journeys, segments, bucket))
        return synthetic()

    monkeypatch.setattr(cli_common, "api", lambda api_key: object())
    monkeypatch.setattr(report, "collect", fake_collect)
    out = tmp_path / "out.html"
    runner = CliRunner()
    result = runner.invoke(cli.main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (7 journeys, 3 segments)" in result.output
    assert out.read_text(encoding="utf-8") == render_html(synthetic())
    args = [
        "report",
        str(out),
        "--journey",
        "a",
        "--journey",
        "b",
        "--segment",
        "s",
        "--bucket",
        "day",
    ]
    assert runner.invoke(cli.main, args).exit_code == 0
    assert asked == [(None, None, "hour"), (("a", "b"), ("s",), "day")]
