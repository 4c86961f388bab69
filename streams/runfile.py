"""The run file: how CLI commands find a running system (its broker and HTTP API)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

NAME = "run.json"


@dataclass(frozen=True)
class RunInfo:
    pid: int
    broker: str
    http: str


def write(data_dir: Path, info: RunInfo) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = data_dir / f".{NAME}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(orjson.dumps(asdict(info)))
    temporary.replace(data_dir / NAME)


def read(data_dir: Path) -> RunInfo | None:
    """The running system's info, or None when none runs from this data dir."""
    try:
        info = RunInfo(**orjson.loads((data_dir / NAME).read_bytes()))
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info


def remove(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / NAME).unlink()
