"""Child processes of the embedded system (broker, object store, ``reach up`` itself):
free loopback ports, dying with the parent, stopping in order."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from types import TracebackType
from typing import Self


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` on loopback now (connections of a previous
    listener still in TIME_WAIT do not count, as for the broker itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    # Linux: the child gets ``sig`` if the process that started it dies, even by
    # SIGKILL, so no orphan outlives a crashed parent. Own process group: a Ctrl-C
    # meant for the parent reaches the child only through the parent.
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)
    os.setpgrp()


def stop_child(process: subprocess.Popen[bytes], sig: int, timeout: float) -> int:
    """Signal a child to stop, wait for it, kill it if it takes too long."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Started:
    """A child process (or a group of them) that ``with`` starts and stops."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
