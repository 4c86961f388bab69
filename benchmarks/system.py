"""The system a benchmark measures: one engine process, or with ``role="segments"``
the engine alone in its process and projections (ClickHouse) in another, on one broker,
so that the figures are the engine process's own."""

from __future__ import annotations

import contextlib
from pathlib import Path

from streams.broker import EmbeddedBroker
from streams.supervisor import SystemProcess


def start_engine(
    stack: contextlib.ExitStack, folder: Path, env: dict[str, str], role: str
) -> SystemProcess:
    """The engine process (role ``all`` or ``segments``), stopped with ``stack``."""
    if role == "segments":
        broker = stack.enter_context(EmbeddedBroker())
        env = {**env, "REACH_BROKER_URL": f"kafka://{broker.bootstrap}"}
        stack.enter_context(
            SystemProcess(folder / "projections", {**env, "REACH_ROLE": "projections"})
        )
        env["REACH_ROLE"] = "segments"
    return stack.enter_context(SystemProcess(folder / "engine", env))
