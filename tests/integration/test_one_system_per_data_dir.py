"""One system per data directory, held by a lock; a port in use is one line.

Real processes: a running system (``reach up`` in a child), and a second ``reach up``
on the same data directory, which must say who holds it and touch nothing of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import runfile
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration


def reach_up(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "up"],
        env={**os.environ, "REACH_DATA_DIR": str(data_dir), "REACH_HTTP_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def reach(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, "REACH_DATA_DIR": str(data_dir)},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_a_second_system_on_the_same_data_dir_says_who_runs_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with SystemProcess(data_dir, {"REACH_HTTP_PORT": "0", "REACH_PARTITIONS": "2"}) as first:
        assert first.info is not None
        run_file = (data_dir / runfile.NAME).read_bytes()

        second = reach_up(data_dir)

        assert second.returncode != 0
        assert error_lines(second) == [
            f"Error: a system is already running from {data_dir.resolve()} "
            f"(pid {first.info.pid}, {first.info.http})"
        ]
        # Nothing of the first was touched: its run file, its process, its API.
        assert (data_dir / runfile.NAME).read_bytes() == run_file
        assert runfile.read(data_dir) == first.info
        assert first.process is not None
        assert first.process.poll() is None

        # The supervisor (demo, benchmarks, tests) refuses the same way and also
        # leaves the run file alone.
        with pytest.raises(RuntimeError, match="already running"):
            SystemProcess(data_dir, {"REACH_HTTP_PORT": "0"}).start(timeout=120)
        assert (data_dir / runfile.NAME).read_bytes() == run_file

        asyncio.run(first.http.wait_healthy(timeout=10))

        # What the CLI says about it, from another directory: the data directory is
        # absolute, the addresses are the ones it runs on, and its clock is the wall.
        status = reach(data_dir, "status", "--json")
        assert status.returncode == 0, status.stderr
        found = json.loads(status.stdout)
        assert found["data_dir"] == str(data_dir.resolve())
        assert (found["broker"], found["http"], found["pid"]) == (
            first.info.broker,
            first.info.http,
            first.info.pid,
        )
        assert found["role"] == "all"
        assert found["clock"]["mode"] == "wall"
        tick = reach(data_dir, "clock", "tick", "2026-11-08T10:00:00Z")
        assert tick.returncode != 0
        assert "wall clock" in tick.stderr


def test_the_lock_goes_with_the_process(tmp_path: Path) -> None:
    """A holder killed with SIGKILL leaves no lock behind: the OS releases it."""
    data_dir = tmp_path / "data"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from streams import runfile; "
            "lock = runfile.hold(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runfile.AlreadyRunning, match=f"pid {holder.pid}"):
            runfile.hold(data_dir)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            lock = runfile.hold(data_dir)
            break
        except runfile.AlreadyRunning:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.1)
    lock.release()


def test_a_port_in_use_is_one_line_naming_its_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = reach_up(tmp_path, REACH_HTTP_PORT=str(port))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0]
    assert "REACH_HTTP_PORT" in lines[0]
    assert not (tmp_path / "broker.log").exists()  # nothing was started
    assert not (tmp_path / runfile.NAME).exists()
