"""Runs ``reach up`` as a child process: for the demo, the benchmark and the tests.

The child owns the broker and the ClickHouse engine (chDB allows one process per
data path); the parent talks to it through the run file, the broker and HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from client.system import HttpClient
from streams import runfile
from streams.processes import Started, die_with_parent, stop_child


class SystemProcess(Started):
    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, log_path: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "REACH_DATA_DIR": str(data_dir), **(env or {})}
        self.log_path = log_path or data_dir / "system.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.info: runfile.RunInfo | None = None

    @property
    def http(self) -> HttpClient:
        assert self.info is not None, "system not started"
        return HttpClient(self.info.http, self.env.get("REACH_API_KEY"))

    def start(self, timeout: float = 120.0) -> Self:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A system already there is refused before anything of it (its run file, its
        # log) is touched; the child takes the lock for itself.
        try:
            runfile.hold(self.data_dir).release()
        except runfile.AlreadyRunning as error:
            raise RuntimeError(str(error)) from None
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "up"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while (info := runfile.read(self.data_dir)) is None or info.pid != self.process.pid:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"reach up exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"reach up not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.info = info
        asyncio.run(self.http.wait_healthy(timeout=30))
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        # SIGINT, as Ctrl-C: the worker stops its services and its broker in order.
        return stop_child(process, signal.SIGINT, timeout)
