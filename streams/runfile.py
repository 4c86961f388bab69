"""The run file and the lock of a data directory: how CLI commands find a running
system (its broker and HTTP API), and how a second system is kept off its data.

One system runs from a data directory at a time. ``reach up`` takes an exclusive
``flock`` on ``<data dir>/reach.lock`` before anything opens the stores there; the OS
releases it when the process ends, however it ends, so a lock is never stale. Only
the process that holds the lock writes or removes the run file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

NAME = "run.json"
LOCK_NAME = "reach.lock"


@dataclass(frozen=True)
class RunInfo:
    pid: int
    broker: str
    http: str
    role: str = ""
    """The worker's role (REACH_ROLE); empty in run files of older versions."""
    clock: str = ""
    """``wall`` or ``simulated`` (REACH_CLOCK); empty in run files of older versions."""


class AlreadyRunning(RuntimeError):
    """Another process holds the data directory; the message says which, in one line."""


class DataDirLock:
    """An exclusive hold on a data directory, for as long as this object is kept
    (or the process lives)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def hold(data_dir: Path) -> DataDirLock:
    """Take the data directory's lock, or raise AlreadyRunning naming its holder."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    # Not inherited by child processes (the broker), which would keep it past us.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(describe_holder(data_dir)) from None
    except BaseException:
        os.close(fd)
        raise
    # The holder's pid, for the message another process gives when it is refused.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    # A run file left now is a dead system's (killed before it could remove it): its
    # pid may since belong to another process, so it must not be taken for a system.
    remove(data_dir)
    return DataDirLock(path, fd)


def describe_holder(data_dir: Path) -> str:
    """``a system is already running from DIR (pid N, http://...)``, with what is known."""
    try:
        pid_text = (data_dir / LOCK_NAME).read_text().strip()[:20]
    except OSError:
        pid_text = ""
    pid = int(pid_text) if pid_text.isdigit() else None
    info = read(data_dir)
    if info is not None and (pid is None or info.pid == pid):
        return f"a system is already running from {data_dir} (pid {info.pid}, {info.http})"
    holder = f"pid {pid}" if pid is not None else "another process"
    return f"{data_dir} is in use by {holder} (a system starting, or a command reading it)"


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
    """Remove the run file: only for the process that holds the data directory."""
    with contextlib.suppress(FileNotFoundError):
        (data_dir / NAME).unlink()
