"""Every relative link in the README and the docs leads somewhere: to a file or folder
of the repository and, with a ``#fragment``, to a heading of that page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "SECURITY.md",
        ROOT / "deploy" / "README.md",
        *ROOT.glob("docs/*.md"),
    ]
)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)


def _prose(page: Path) -> str:
    """The page without its fenced blocks (code, not links)."""
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors(page: Path) -> set[str]:
    """The fragments GitHub gives the page's headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_prose(page)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(page))
        if not re.match(r"[a-z][a-z+.-]*:", target)  # https:, mailto:, ...
    ]


def test_the_pages_have_links() -> None:
    assert ROOT / "docs" / "architecture.md" in PAGES
    assert sum(len(links(page)) for page in PAGES) > 50


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, broken


def test_anchors_are_what_github_makes_of_headings(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Two commands\n## `reach bench ingest`\n### Send commands, exactly once\n"
        "## Tags\n## Tags\n```\n# not a heading\n```\n"
    )
    assert anchors(page) == {
        "two-commands",
        "reach-bench-ingest",
        "send-commands-exactly-once",
        "tags",
        "tags-1",
    }
