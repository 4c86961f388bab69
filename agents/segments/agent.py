"""The segment runtime: the Faust worker's adapter around the user processor
(``engine.processor``). Per-user records in a coalescing table, the current definitions,
durable timers, and the output topics (memberships; send commands, journey activity and
tag updates from journeys).

Everything that decides is in ``engine.processor.process``; this module loads a user's
record, calls it, stores the new record, queues its timer and sends its outputs
(``agents.segments.outputs``); the work over all of a partition's users (definition
changes, journey sweeps, audience runs, previews) is in ``agents.segments.sweeps``. One
lock serialises the writers of user state (input records, timers, definition changes,
journey sweeps) in the worker's single event loop.

``flush`` (the checkpoint's cut) seals the state under that lock, so the sealed state is
exactly the one whose outputs were handed to the producer; it waits for their
acknowledgement before the state goes to the changelog. Work that is not driven by an
input record (definition changes, stop/resume, audience runs) leaves a marker per
partition once done, in the same cut as its effects: a crash or a rebalance before that
redoes it (see docs/reliability.md). No partition is served before the definitions are
loaded and its state recovered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from agents.segments import sweeps
from agents.segments.outputs import Outputs
from agents.segments.sweeps import JOURNEYS_KEY, MARKERS, RUNS_KEY, SEGMENTS_KEY, Sweeps
from engine import codec
from engine import processor as core
from engine.journeys.holdout import Holdout
from engine.processor import Input, Model, Outcome
from engine.record import UserRecord
from engine.time import to_ms
from schemas.commands import JourneyEntryRequest
from schemas.dead_letters import MAX_KEY_BYTES, DeadLetter, DeadLetterReason
from schemas.definitions import Journey
from schemas.devices import DeviceUpdate
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from streams.state import CoalescingTable
from streams.state.lease import Lease
from streams.state.timers import HeapTimers, Timers

__all__ = ["JOURNEYS_KEY", "MARKERS", "RUNS_KEY", "SEGMENTS_KEY", "JourneyTopics", "SegmentRuntime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JourneyTopics:
    commands: str
    activity: str
    tags: str
    devices: str = ""
    """Where device updates come from, named by the dead letters of those refused."""
    dead_letters: str = ""


class SegmentRuntime(Sweeps):
    def __init__(
        self,
        table: CoalescingTable,
        bootstrap: str,
        topic: str,
        horizon: timedelta,
        journey_topics: JourneyTopics | None = None,
        timers: Timers | None = None,
        holdout: Holdout | None = None,
    ):
        self.table = table
        self.bootstrap = bootstrap
        self.topic = topic
        self.model = Model.build(
            {}, None, horizon, journeys=journey_topics is not None, holdout=holdout
        )
        topics = journey_topics or JourneyTopics("", "", "")
        self.outputs = Outputs(topic, topics.commands, topics.activity, topics.tags)
        self.outputs.dead_letters = topics.dead_letters
        self._devices_topic = topics.devices
        self.lock = asyncio.Lock()
        # Partition -> segment -> members: a partition that moves away takes its own.
        self.members: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.changes = 0
        self.inputs = 0
        self.commands = 0
        self.timers: Timers = timers if timers is not None else HeapTimers()
        # Readiness: the definitions are loaded, and the partitions served (recovered,
        # caught up with the definitions).
        self.loaded = asyncio.Event()
        self._held: set[int] = set()  # recovered here, not released
        self._ready: set[int] = set()  # held and caught up: streams may go on
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        """The engine's clock, for work done on recovery."""
        self._readiness = asyncio.Event()  # set (and replaced) when either changes
        # Whether outputs and flushes are still this worker's to make (fencing).
        self.lease: Lease = Lease.unlimited()
        self._failed: BaseException | None = None

    @property
    def definitions(self) -> Mapping[str, SegmentDefinition]:
        return self.model.definitions

    @property
    def _producer(self) -> AIOKafkaProducer | None:
        return self.outputs.producer

    @_producer.setter
    def _producer(self, producer: AIOKafkaProducer | None) -> None:
        self.outputs.producer = producer

    async def start(self) -> None:
        await self.outputs.start(self.bootstrap)

    async def stop(self) -> None:
        await self.outputs.stop()

    def status(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "changes": self.changes,
            "commands": self.commands,
            "timers": self.timers.count(),
            "members": self.member_counts(),
        }

    def member_counts(self) -> dict[str, int]:
        """Segment -> members among this worker's users."""
        totals: dict[str, int] = defaultdict(int)
        for counts in self.members.values():
            for segment_id, count in counts.items():
                totals[segment_id] += count
        return {segment_id: totals[segment_id] for segment_id in sorted(totals)}

    async def flush_outputs(self) -> None:
        """Wait until every output record sent so far is acknowledged."""
        await self.outputs.flush()

    async def flush(self) -> None:
        """The checkpoint's cut: the state written so far (sealed under the writers'
        lock, so exactly the state whose outputs are handed to the producer), once
        those outputs are acknowledged, goes to the changelog; the caller then commits
        the input offsets. Later writes wait for the next cut.

        A lost output stops every later flush (the worker must restart and replay);
        so does a lost lease (another worker may own the partitions now)."""
        if self._failed is not None:
            raise RuntimeError("an output was lost; state is no longer flushed") from self._failed
        async with self.lock:
            pending = self.outputs.take_pending()
            self.table.seal()
        try:
            if pending:
                await asyncio.gather(*pending)
        except BaseException as error:
            self._failed = error
            raise
        self.lease.check()
        await self.table.flush_sealed()

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions served: recovered, and caught up with the definitions."""
        return frozenset(self._ready)

    async def _until_ready(self, partition: int) -> None:
        """Wait while ``partition`` is recovered here but not served yet (definitions
        not loaded, interrupted work being redone). A partition not held here is not
        waited for: the table refuses it, and its outputs are not sent."""
        if partition in self._ready or partition not in self._held:
            return
        while partition not in self._ready and partition in self._held:
            await self._readiness.wait()

    async def flush_partition(self, partition: int) -> None:
        """Wait until every output sent so far to ``partition`` is acknowledged: the
        broker acknowledges the records of a topic partition in order, so the last one
        sent to each will do. The checkpoint's own list of outputs is left to ``flush``
        (taking it here would let the cut flush state before its outputs are
        acknowledged)."""
        async with self.lock:
            last = self.outputs.last_of(partition)
        if last:
            await asyncio.gather(*(asyncio.shield(sent) for sent in last))

    async def sent_offset(self, topic: str, partition: int) -> int | None:
        """The offset of the last record sent to ``topic`` in ``partition``, once the
        broker has it (None: none sent by this process)."""
        return await self.outputs.sent_offset(topic, partition)

    # --- inputs -------------------------------------------------------------------------

    async def apply(
        self,
        partition: int,
        offset: int,
        source: str,
        items: Iterable[Event | TagUpdate | Feedback | DeviceUpdate],
        now_of: Callable[[Event | TagUpdate | Feedback | DeviceUpdate], datetime],
        not_before_seen: bool = False,
    ) -> None:
        """Fold one input record's items (all of ``partition``) into their users, each at
        the instant ``now_of`` gives it; with ``not_before_seen`` (simulated time), never
        before the user's newest event, so a user's own time never goes back."""
        replayed: dict[str, bool] = {}  # decided once per user and record
        await self._until_ready(partition)
        async with self.lock:
            for item in items:
                user = item.user_id
                record = self._load(partition, user)
                if user not in replayed:
                    replayed[user] = core.applied(record, source, offset)
                if replayed[user]:
                    continue  # this record is already in the user's state
                self.inputs += 1
                outcome = core.received(
                    self.model, user, record, item, source, offset, now_of(item), not_before_seen
                )
                self._store(partition, user, record, outcome)
                for refused, reason in outcome.refused:
                    self.outputs.dead(self._refusal(refused, reason, partition, offset))
            await self._send(partition)

    def _refusal(self, item: Any, reason: str, partition: int, offset: int) -> DeadLetter:
        """The dead letter of an input item the engine refused (a device too many)."""
        return DeadLetter(
            raw=orjson.dumps(item.model_dump(mode="json")),
            key=str(item.user_id).encode()[:MAX_KEY_BYTES],
            source_topic=self._devices_topic,
            source_partition=partition,
            source_offset=offset,
            source_index=None,
            reason=DeadLetterReason.TOO_MANY_DEVICES,
            detail=reason,
            at=self.now(),
        )

    async def apply_entries(
        self, partition: int, offset: int, items: Iterable[JourneyEntryRequest]
    ) -> None:
        """Fold one record of API journey entries (all of ``partition``)."""
        replayed: dict[str, bool] = {}
        await self._until_ready(partition)
        async with self.lock:
            for item in items:
                user = item.user_id
                record = self._load(partition, user)
                if user not in replayed:
                    replayed[user] = core.applied(record, "a", offset)
                if replayed[user]:
                    continue
                self._process(partition, user, record, core.Entered(item, offset), item.at)
            await self._send(partition)

    async def forget(self, partition: int, users: Iterable[str]) -> int:
        """Delete the users' state (tags, counts, memberships, journeys) and timers; no
        output is sent for them (their rows leave ClickHouse). Returns how many had
        state. A later input for one of them starts them afresh."""
        forgotten = 0
        await self._until_ready(partition)
        async with self.lock:
            for user in users:
                if user in MARKERS or self.table.get(partition, user) is None:
                    continue
                record = self._load(partition, user)
                counts = self.members[partition]
                for segment_id in record.members:
                    counts[segment_id] -= 1
                if record.timer is not None:
                    self.timers.cancel(partition, record.timer, user)
                self.table.delete(partition, user, applied_offset=0)
                forgotten += 1
        return forgotten

    async def fire_timers(self, partition: int, now: datetime) -> int:
        """Evaluate the users whose timer is due at ``now``; returns how many."""
        due_ms = to_ms(now)
        fired = 0
        await self._until_ready(partition)
        while True:
            async with self.lock:
                if partition not in self._ready:
                    return fired  # released meanwhile: the new owner fires them
                for at, user in self.timers.pop_due(partition, due_ms, sweeps.TIMERS_PER_ROUND):
                    record = self._load(partition, user)
                    outcome = core.timer_due(self.model, user, record, at, due_ms)
                    if outcome is not None:
                        self._store(partition, user, record, outcome)
                        fired += 1
                more = self.timers.has_due(partition, due_ms)
                await self._send(partition)
            if not more:
                return fired
            await asyncio.sleep(0)  # let input records in between rounds

    # --- definitions --------------------------------------------------------------------

    async def load(
        self,
        definitions: Mapping[str, SegmentDefinition],
        registry: Mapping[str, Journey],
        now: datetime,
    ) -> None:
        """The registry is read whole: take its segments and journeys, catch the
        partitions held up with them, and serve them (the streams waiting for them go
        on)."""
        self.model = self.model.with_segments(definitions).with_journeys(registry)
        self.loaded.set()
        await self._serve(set(self._held), now)

    # --- recovery ---------------------------------------------------------------------

    async def on_recovered(self, partitions: set[int]) -> None:
        """Rebuild the timer queues and member counts from the recovered state; once
        the definitions are loaded (now, or when ``load`` comes), redo the work a crash
        or a rebalance interrupted, then serve the partitions. Runs before their
        streams resume; it cannot wait for the definitions itself, since the worker
        starts its services (the definitions' reader among them) only after the first
        assignment was handled."""
        for partition in partitions:
            self.timers.reset(partition)
            members = self.members[partition] = defaultdict(int)
            for user, record in self._users(partition):
                if record.timer is not None:
                    self.timers.push(partition, record.timer, user)
                for segment_id in record.members:
                    members[segment_id] += 1
            self._held.add(partition)
        if self.loaded.is_set():
            await self._serve(partitions, self.now())

    async def _serve(self, partitions: Collection[int], now: datetime) -> None:
        for partition in sorted(partitions):
            await self._catch_up_journeys(partition, now)
            await self._catch_up_segments(partition, (), now)
            if partition in self._held:
                self._ready.add(partition)
        self._wake()

    def on_released(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._held.discard(partition)
            self._ready.discard(partition)
        self._wake()
        for partition in partitions:
            self.timers.reset(partition)
            self.members.pop(partition, None)

    # --- helpers ------------------------------------------------------------------------

    def _wake(self) -> None:
        """Let the waiters of ``_until_ready`` look again."""
        woken, self._readiness = self._readiness, asyncio.Event()
        woken.set()

    def _load(self, partition: int, user: str) -> UserRecord:
        entry = self.table.get(partition, user)
        return codec.decode(entry.value if entry is not None else None)

    def _users(self, partition: int) -> Iterator[tuple[str, UserRecord]]:
        for user, entry in self.table.items(partition):
            if user not in MARKERS:
                yield user, codec.decode(entry.value)

    def _process(
        self,
        partition: int,
        user: str,
        record: UserRecord,
        input: Input,
        now: datetime,
        model: Model | None = None,
    ) -> Outcome | None:
        """The user processor on one input; then ``_store`` what it decided."""
        outcome = core.process(model or self.model, user, record, input, now)
        if outcome is not None:
            self._store(partition, user, record, outcome)
        return outcome

    def _store(self, partition: int, user: str, record: UserRecord, outcome: Outcome) -> None:
        """Store the new record, move the user's timer, count the membership changes and
        queue the outputs."""
        new = outcome.record
        self.table.put(partition, user, codec.encode(new), applied_offset=0)
        timer = new.timer
        if timer != record.timer:
            if timer is not None:
                self.timers.push(partition, timer, user, replaces=record.timer)
            elif record.timer is not None:
                self.timers.cancel(partition, record.timer, user)
        _, changes, commands, activity, tag_updates, profiles, _ = outcome
        if changes:
            counts = self.members[partition]
            for change in changes:
                counts[change["segment_id"]] += 1 if change["change"] == "entered" else -1
            self.changes += len(changes)
        if commands:
            self.commands += len(commands)
        if changes or commands or activity or tag_updates or profiles:
            self.outputs.queue(outcome)

    async def _send(self, partition: int) -> None:
        # Released, or another worker may own it now: its state here is dropped with
        # these outputs, and whoever holds the partition replays the inputs.
        await self.outputs.send(partition, partition in self._held and self.lease.valid())
