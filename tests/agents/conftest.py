"""Fixtures for driving the real Faust agents in Faust's in-memory test context.

Nothing here connects to a broker: the agents are fed through
``agent.test_context()``, the app's producer is replaced (through its public
setter) by one that records what would have been sent, and the projection sink is
given a fake ClickHouse client so that flushes can be observed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types.tuples import TP, RecordMetadata

from streams.engine import Engine
from streams.settings import Settings
from streams.state import CoalescingTable, MemoryChangelog, MemoryStore
from worker.app import System, create_app


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    headers: list[tuple[str, bytes]]


@dataclass
class RecordingProducer:
    """Stands in for the app's Kafka producer: keeps every record it is given."""

    sent: list[Sent] = field(default_factory=list)

    async def maybe_start(self) -> None:
        return None

    def _record(
        self, topic: str, key: Any, value: Any, partition: int | None, headers: Any
    ) -> RecordMetadata:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        self.sent.append(Sent(topic, key, value, partition, pairs))
        tp = TP(topic, partition or 0)
        return RecordMetadata(topic, tp.partition, tp, len(self.sent) - 1)

    async def send(
        self,
        topic: str,
        key: Any,
        value: Any,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        **_: Any,
    ) -> asyncio.Future[RecordMetadata]:
        done: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        done.set_result(self._record(topic, key, value, partition, headers))
        return done

    async def send_and_wait(
        self,
        topic: str,
        key: Any,
        value: Any,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        **_: Any,
    ) -> RecordMetadata:
        return self._record(topic, key, value, partition, headers)


@dataclass
class FakeClickHouse:
    """The one method of clickhouse-connect's client the sink uses; keeps rows."""

    inserts: list[tuple[str, list[tuple[Any, ...]], list[str]]] = field(default_factory=list)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    on_insert: Callable[[], None] = lambda: None

    def command(self, sql: str, parameters: dict[str, Any] | None = None, **_: Any) -> None:
        self.commands.append((sql, dict(parameters or {})))

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: Sequence[str] = (),
        column_oriented: bool = False,
        **_: Any,
    ) -> None:
        rows = list(zip(*data, strict=True)) if column_oriented else [tuple(r) for r in data]
        self.on_insert()
        self.inserts.append((table, rows, list(column_names)))

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [
            dict(zip(columns, row, strict=True))
            for name, rows, columns in self.inserts
            if name == table
            for row in rows
        ]


@dataclass
class Worker:
    system: System
    producer: RecordingProducer
    clickhouse: FakeClickHouse

    @property
    def app(self) -> faust.App:
        return self.system.app

    @property
    def engine(self) -> Engine:
        return self.system.engine

    def dead_letters(self) -> list[Sent]:
        return [s for s in self.producer.sent if s.topic == self.engine.topics.dead_letters]

    async def flush(self) -> None:
        """Write the sink's pending rows to the fake ClickHouse (the sink retries a
        failing insert forever, hence the timeout)."""
        await asyncio.wait_for(self.system.projections.sink.flush(), 5)


def build_worker(data_dir: Path, segments: bool = False, **overrides: Any) -> Worker:
    """A worker of ``create_app`` with a recording producer and a fake ClickHouse."""
    settings = Settings(data_dir=data_dir, table_store="memory", **overrides)
    system = create_app(settings, "localhost:9")
    engine = system.engine
    if segments:
        # The state table recovers on a broker rebalance, which the test context
        # never has: serve it from an in-process changelog the test recovers.
        runtime = system.segments
        assert runtime is not None
        runtime.table = CoalescingTable(MemoryChangelog(settings.partitions), MemoryStore())
        engine.checkpoint.before_ack[:] = [runtime.flush]
    else:
        system.intake.segments = None  # intake alone
    producer = RecordingProducer()
    system.app.producer = producer  # type: ignore[assignment]
    clickhouse = FakeClickHouse()
    system.projections.sink.attach(clickhouse)  # type: ignore[arg-type]
    return Worker(system, producer, clickhouse)


@pytest.fixture
def make_worker(tmp_path: Path) -> Callable[..., Worker]:
    def make(segments: bool = False, **overrides: Any) -> Worker:
        return build_worker(tmp_path, segments, **overrides)

    return make


@pytest.fixture
def worker(make_worker: Callable[..., Worker]) -> Worker:
    return make_worker()


class Driver:
    """Feeds raw records to one agent and waits until the agent is done with each.

    The test wrapper's own ``put(wait=True)`` returns when the record enters the
    agent's stream, before the agent body has run. The agent's last step for every
    record is ``checkpoint.hold(event)``, so the driver waits for that call.
    """

    def __init__(self, wrapper: Any, worker: Worker) -> None:
        self.wrapper = wrapper
        self.worker = worker
        self.held: list[Any] = []
        self.errors: list[BaseException] = []
        self._held_changed = asyncio.Event()

    def on_hold(self, event: Any) -> None:
        self.held.append(event)
        self._held_changed.set()

    def on_crash(self, error: BaseException) -> None:
        self.errors.append(error)
        self._held_changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait for what the agent does after ``hold`` (a due commit, say)."""
        async with asyncio.timeout(5):
            while not condition():
                if self.errors:
                    raise self.errors[0]
                await asyncio.sleep(0.005)

    async def put(
        self,
        raw: bytes | None,
        key: bytes | None = b"user-1",
        partition: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        expected = len(self.held) + 1
        event = await self.wrapper.put(raw, key=key, partition=partition, headers=headers)
        async with asyncio.timeout(5):
            while len(self.held) < expected:
                if self.errors:
                    raise self.errors[0]
                self._held_changed.clear()
                await self._held_changed.wait()
        return event


@contextlib.asynccontextmanager
async def driving(worker: Worker, agent_name: str) -> AsyncIterator[Driver]:
    """``async with driving(worker, "intake-events") as driver: ...``"""
    agent = worker.app.agents[agent_name]
    checkpoint = worker.engine.checkpoint
    original_hold = checkpoint.hold
    driver: Driver

    def hold(event: Any) -> None:
        original_hold(event)
        driver.on_hold(event)

    async def on_error(_agent: Any, exc: BaseException) -> None:
        driver.on_crash(exc)

    checkpoint.hold = hold  # type: ignore[method-assign]
    try:
        async with agent.test_context(on_error=on_error) as wrapper:
            driver = Driver(wrapper, worker)
            yield driver
    finally:
        checkpoint.hold = original_hold  # type: ignore[method-assign]


@pytest.fixture
def drive() -> Callable[[Worker, str], contextlib.AbstractAsyncContextManager[Driver]]:
    """``async with drive(worker, "intake-events") as driver: ...``"""
    return driving
