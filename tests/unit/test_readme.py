"""The README works as written by someone who has just cloned the repository: it is
short, its two commands are the Makefile's and CI's, `reach` is on no PATH until it
has said how to put it there, and its map of the folders is the repository's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
CI_RUN = ROOT / ".ci" / "run"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _recipe(target: str) -> list[str]:
    """The commands of a Makefile target."""
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.M)
    assert match is not None, target
    return [line.strip() for line in match[1].splitlines()]


def test_reads_in_five_minutes() -> None:
    assert len(README.read_text().splitlines()) <= 150


def test_says_how_to_get_reach_on_the_path_before_using_it() -> None:
    text = README.read_text()
    first_use = re.search(r"^reach \w", text, re.M)
    assert first_use is not None
    before = text[: first_use.start()]
    assert "make install" in before
    assert "source .venv/bin/activate" in before


def test_every_make_target_it_names_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", MAKEFILE.read_text(), re.M))
    named = set(re.findall(r"(?:^|`)make ([a-z][\w-]*)", README.read_text(), re.M))
    assert named
    assert named <= targets, named - targets


def test_the_two_commands_are_demo_and_test() -> None:
    block = re.search(r"```sh\n(.*?)```", _section("Two commands"), re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block[1].splitlines()]
    assert commands == ["make demo", "make test"]
    # make demo runs the main job on embedded defaults; make test lints, types, tests.
    assert _recipe("demo") == ["$(BIN)/reach demo"]
    assert {"$(BIN)/ruff check .", "$(BIN)/mypy", "$(BIN)/pytest"} <= set(_recipe("test"))


def test_the_test_command_is_what_ci_runs() -> None:
    commands = [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert "`.ci/run`" in _section("Two commands")


def test_the_map_names_every_folder_and_only_folders() -> None:
    named = set(re.findall(r"^\| `([\w-]+)/` \|", _section("Where each part lives"), re.M))
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages <= named, packages - named
    assert all((ROOT / folder).is_dir() for folder in named), named
    assert {"deploy", "examples"} <= named


def test_links_every_page_of_the_docs() -> None:
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)", README.read_text()))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, pages - linked
