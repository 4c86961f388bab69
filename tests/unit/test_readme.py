"""The README's first lines work as written by someone who has just cloned the
repository: `reach` is on no PATH until the README has said how to put it there."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
MAKEFILE = README.parent / "Makefile"


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
