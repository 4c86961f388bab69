"""The HTML report in a real browser: written to a file, opened by headless Chromium
(Debian's, which .ci/run installs; in CI a missing browser fails, see tests/browser.py),
and the numbers read from the DOM Chromium built equal the data the report was made
from."""

from __future__ import annotations

import subprocess

import pytest

from projections.report import ReportData, render_html, write_report
from tests.browser import FLAGS, require_chromium
from tests.unit.test_report import SEED, Page, read_page, synthetic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data() -> ReportData:
    return synthetic()


@pytest.fixture(scope="module")
def dom(data: ReportData, tmp_path_factory: pytest.TempPathFactory) -> Page:
    browser = require_chromium()
    folder = tmp_path_factory.mktemp("report-browser")
    path = write_report(folder / "report.html", data)
    completed = subprocess.run(
        [
            str(browser),
            *FLAGS,
            f"--user-data-dir={folder / 'profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "</html>" in completed.stdout, completed.stderr[-3000:]
    return read_page(completed.stdout)


def test_the_browser_keeps_every_number(data: ReportData, dom: Page) -> None:
    # Nothing dropped or moved out of its element by the browser's parser.
    source = read_page(render_html(data))
    assert [(n.attrs, n.text) for n in dom.numbers] == [(n.attrs, n.text) for n in source.numbers]


def test_step_and_edge_counts_shown_are_the_data(data: ReportData, dom: Page) -> None:
    for report in data.journeys[: len(SEED)]:
        journey = report.definition.id
        for node in report.definition.nodes:
            for name, value in report.steps[node.id].items():
                shown = dom.find(journey=journey, step=node.id, metric=name)
                assert [number.shown for number in shown] == (
                    [value] if value or name == "entered" else []
                )
        for edge in report.edges:
            number = dom.one(journey=journey, edge=f"{edge.source}.{edge.output}", to=edge.target)
            assert number.shown == edge.users


def test_the_seed_campaign_as_shown(dom: Page) -> None:
    once = {"journey": "reengage-once"}
    assert dom.one(**once, step="first-email", metric="entered").text == "1,000"
    assert dom.one(**once, step="first-email", metric="opened").text == "300"
    assert dom.one(**once, edge="first-email.not_opened").text == "700"
    assert dom.one(**once, edge="second-email.next").text == "700"
    assert dom.one(**once, step="done", metric="exited").text == "1,000"


def test_segment_last_sizes_shown_are_the_data(data: ReportData, dom: Page) -> None:
    for series in data.segments:
        last = series.sizes[-1][1] if series.sizes else 0
        assert dom.one(segment=series.segment_id, metric="members").shown == last
    assert dom.one(segment="inactive-7d", metric="members").text == "190"
