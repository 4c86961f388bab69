"""The embedded broker's durable storage: the object store honours the conditional
writes tansu relies on, acknowledged records survive SIGKILL of the broker and of the
object store, and neither outlives the process that started it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.broker import EmbeddedBroker
from streams.object_store import BUCKET, ObjectStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def put(url: str, headers: dict[str, str]) -> tuple[int, str | None]:
    request = urllib.request.Request(url, data=b"v", method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.headers.get("ETag")
    except urllib.error.HTTPError as error:
        return error.code, None


def test_the_object_store_honours_conditional_writes(tmp_path: Path) -> None:
    with ObjectStore(tmp_path / "objects") as store:
        url = f"{store.endpoint}/{BUCKET}/conditional"
        created, etag = put(url, {"If-None-Match": "*"})
        assert created == 200
        assert etag
        assert put(url, {"If-None-Match": "*"})[0] == 412
        assert put(url, {"If-Match": '"not-the-etag"'})[0] == 412
        assert put(url, {"If-Match": etag})[0] == 200


def test_the_object_store_keeps_its_ports_and_master_state_across_restarts(
    tmp_path: Path,
) -> None:
    with ObjectStore(tmp_path / "objects") as store:
        port = store.s3_port
    with ObjectStore(tmp_path / "objects") as store:
        assert store.s3_port == port
    # The master keeps its state in a folder named after its port: one folder, reused.
    assert len(list((tmp_path / "objects").glob("m[0-9]*"))) == 1


async def produce(bootstrap: str, topic: str, producer_id: int, count: int) -> list[bytes]:
    """``count`` records, each send awaited; returns the acknowledged ones."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    acknowledged: list[bytes] = []
    try:
        for n in range(count):
            value = f"{producer_id}-{n}".encode()
            await (await producer.send(topic, value, partition=0))
            acknowledged.append(value)
    finally:
        await producer.stop()
    return acknowledged


async def everything(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Every record of partition 0, read until ``expected`` or nothing more comes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        found: list[bytes] = []
        quiet_since = time.monotonic()
        while len(found) < expected and time.monotonic() - quiet_since < 5:
            batches = await consumer.getmany(timeout_ms=300)
            for messages in batches.values():
                found.extend(m.value for m in messages if m.value is not None)
                quiet_since = time.monotonic()
        return found
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


def test_concurrent_producers_of_one_partition_keep_every_record(tmp_path: Path) -> None:
    # tansu hands out offsets by a conditional write of the partition's watermark: a
    # store that ignores the condition lets concurrent batches take the same offset and
    # overwrite each other (rclone's S3 server kept 1,345 of 4,000 records here).
    with EmbeddedBroker(storage_dir=tmp_path / "objects") as broker:

        async def scenario() -> None:
            await create_topic(broker.bootstrap, "shared")
            sent = await asyncio.gather(
                *(produce(broker.bootstrap, "shared", p, 150) for p in range(4))
            )
            acknowledged = [value for values in sent for value in values]
            found = await everything(broker.bootstrap, "shared", len(acknowledged))
            assert sorted(found) == sorted(acknowledged)

        asyncio.run(scenario())


def test_acknowledged_records_survive_sigkill_of_the_broker_and_the_store(tmp_path: Path) -> None:
    storage = tmp_path / "objects"
    with ObjectStore(storage) as store:
        broker = EmbeddedBroker(object_store=store).start()
        port = broker.port
        try:
            asyncio.run(create_topic(broker.bootstrap, "kept"))
            first = asyncio.run(produce(broker.bootstrap, "kept", 0, 300))
            assert broker.process is not None
            broker.process.kill()  # the broker alone, mid-life
            broker.process.wait()
        finally:
            broker.stop()
        with EmbeddedBroker(object_store=store, port=port) as broker:
            second = asyncio.run(produce(broker.bootstrap, "kept", 1, 300))
            found = asyncio.run(everything(broker.bootstrap, "kept", 600))
            assert sorted(found) == sorted(first + second)
            # Now both at once.
            assert broker.process is not None
            assert store.process is not None
            broker.process.kill()
            store.process.kill()
            broker.process.wait()
            store.process.wait()
    with EmbeddedBroker(storage_dir=storage, port=port) as again:
        found = asyncio.run(everything(again.bootstrap, "kept", 600))
        assert sorted(found) == sorted(first + second)


CHILD = """
import sys, time
from pathlib import Path
from streams.broker import EmbeddedBroker
broker = EmbeddedBroker(storage_dir=Path(sys.argv[1])).start()
store = broker.object_store
assert broker.process is not None and store is not None and store.process is not None
print(broker.process.pid, store.process.pid, flush=True)
time.sleep(600)
"""


def test_the_broker_and_its_store_die_with_the_process_that_started_them(
    tmp_path: Path,
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "objects")],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().decode()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2, line
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
            assert time.monotonic() < deadline, f"{pids} outlived their parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_the_watchdog_reports_an_object_store_that_died(tmp_path: Path) -> None:
    reasons: list[str] = []
    reported = threading.Event()

    def on_failure(reason: str) -> None:
        reasons.append(reason)
        reported.set()

    with EmbeddedBroker(storage_dir=tmp_path / "objects", on_failure=on_failure) as broker:
        store = broker.object_store
        assert store is not None
        assert store.process is not None
        os.kill(store.process.pid, signal.SIGKILL)
        assert reported.wait(timeout=10)
    assert reasons == ["the embedded object store (SeaweedFS) exited with code -9"]
