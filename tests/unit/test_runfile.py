"""The run file and the data directory's lock, in one process (a second open file
description conflicts like a second process; tests/integration has two processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams import runfile


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    held = runfile.hold(tmp_path / "data")
    with pytest.raises(runfile.AlreadyRunning):
        runfile.hold(tmp_path / "data")
    held.release()
    assert not held.held
    runfile.hold(tmp_path / "data").release()


def test_the_refusal_names_the_running_system(tmp_path: Path) -> None:
    held = runfile.hold(tmp_path)
    info = runfile.RunInfo(os.getpid(), "127.0.0.1:1", "http://127.0.0.1:2", "all", "wall")
    runfile.write(tmp_path, info)
    with pytest.raises(runfile.AlreadyRunning) as refused:
        runfile.hold(tmp_path)
    assert str(refused.value) == (
        f"a system is already running from {tmp_path} (pid {os.getpid()}, http://127.0.0.1:2)"
    )
    assert runfile.read(tmp_path) == info  # the refused one removed nothing
    held.release()


def test_a_holder_without_a_run_file_yet(tmp_path: Path) -> None:
    held = runfile.hold(tmp_path)
    with pytest.raises(runfile.AlreadyRunning, match=f"in use by pid {os.getpid()}"):
        runfile.hold(tmp_path)
    held.release()


def test_taking_the_lock_clears_a_dead_systems_run_file(tmp_path: Path) -> None:
    # Killed before it could remove its run file, and its pid reused (here: ours).
    runfile.write(tmp_path, runfile.RunInfo(os.getpid(), "127.0.0.1:1", "http://127.0.0.1:2"))
    held = runfile.hold(tmp_path)
    assert runfile.read(tmp_path) is None
    held.release()


def test_run_files_of_older_versions_still_read(tmp_path: Path) -> None:
    (tmp_path / runfile.NAME).write_text(f'{{"pid": {os.getpid()}, "broker": "b", "http": "h"}}')
    info = runfile.read(tmp_path)
    assert info is not None
    assert (info.role, info.clock) == ("", "")
