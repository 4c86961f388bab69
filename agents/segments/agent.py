"""The segment runtime: the Faust worker's adapter around the user processor
(``engine.processor``). Per-user records in a coalescing table, the current definitions,
durable timers, and the output topics (memberships; send commands, journey activity and
tag updates from journeys).

Everything that decides is in ``engine.processor.process``; this module loads a user's
record, calls it, stores the new record, queues its timer and sends its outputs. One
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
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer

from engine import codec
from engine import processor as core
from engine.journeys.schedule import Run, latest_due_run
from engine.processor import Input, Model, Outcome, Pick
from engine.record import UserRecord
from engine.segments.evaluate import compile_condition
from engine.segments.state import from_ms, to_ms
from schemas.commands import JourneyEntryRequest
from schemas.definitions import Journey, JourneyStatus
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.journeys import AudienceEntry
from schemas.segments import Condition, SegmentDefinition
from schemas.tags import TagUpdate
from streams.state import CoalescingTable
from streams.state.lease import Lease
from streams.state.timers import HeapTimers, Timers

from .outputs import Outputs

log = logging.getLogger(__name__)

RUNS_KEY = "\x00journey-runs"
"""Per partition, not a user: the last audience run swept, per journey entry."""
SEGMENTS_KEY = "\x00segment-versions"
"""Per partition: the version of each segment its users were evaluated for."""
JOURNEYS_KEY = "\x00journey-statuses"
"""Per partition: ``[launch, status]`` of each journey whose stop or resume was swept."""
MARKERS = frozenset({RUNS_KEY, SEGMENTS_KEY, JOURNEYS_KEY})

# Timers fired (or users swept) per hold of the lock: many at once must not stall the
# inputs.
TIMERS_PER_ROUND = 500

PREVIEW_SLICE_SECONDS = 0.02
"""How long a preview evaluates users under the lock before it lets others run."""


@dataclass(frozen=True)
class JourneyTopics:
    commands: str
    activity: str
    tags: str


class SegmentRuntime:
    def __init__(
        self,
        table: CoalescingTable,
        bootstrap: str,
        topic: str,
        horizon: timedelta,
        journey_topics: JourneyTopics | None = None,
        timers: Timers | None = None,
    ):
        self.table = table
        self.bootstrap = bootstrap
        self.topic = topic
        self.model = Model.build({}, None, horizon, journeys=journey_topics is not None)
        topics = journey_topics or JourneyTopics("", "", "")
        self.outputs = Outputs(topic, topics.commands, topics.activity, topics.tags)
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
        items: Iterable[Event | TagUpdate | Feedback],
        now_of: Callable[[Event | TagUpdate | Feedback], datetime],
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
                input = core.Received(item, source, offset, not_before_seen)
                self._process(partition, user, record, input, now_of(item))
            await self._send(partition)

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
                for at, user in self.timers.pop_due(partition, due_ms, TIMERS_PER_ROUND):
                    record = self._load(partition, user)
                    if self._process(partition, user, record, core.TimerDue(at), now):
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

    async def redefine(
        self,
        definitions: Mapping[str, SegmentDefinition],
        changed: Collection[str],
        now: datetime,
    ) -> None:
        """Take the registry's definitions; re-evaluate every user of this worker for the
        segments ``changed`` (applied or deleted), and for those whose version differs
        from the one a partition's users were last evaluated for."""
        self.model = self.model.with_segments(definitions)
        for partition in sorted(self._held):
            await self._catch_up_segments(partition, changed, now)

    async def _catch_up_segments(
        self, partition: int, changed: Collection[str], now: datetime
    ) -> None:
        async with self.lock:
            if partition not in self._held:
                return
            model = self.model
            applied = self._marker(partition, SEGMENTS_KEY)
            todo = core.segments_to_redo(model, changed, applied, self.members[partition])
            if todo:
                redefined = core.Redefined(todo)
                for user, record in list(self._users(partition)):
                    self._process(partition, user, record, redefined, now, model)
            versions = core.segment_versions(model)
            if applied != versions:
                # In the same cut as the users' new state: both are durable, or neither.
                self.table.put(partition, SEGMENTS_KEY, versions, applied_offset=0)
            await self._send(partition)

    async def preview(
        self, condition: Condition, sample: int, now: datetime
    ) -> tuple[int, int, list[str]]:
        """(members, users, a sample of members) of ``condition`` over this worker's users.

        The users of each partition are listed first, then evaluated in slices of
        ``PREVIEW_SLICE_SECONDS`` under the lock, letting the event loop (inputs, other
        requests) run between slices: a large preview delays nothing for long. Users who
        arrive meanwhile may be left out; a partition that moves away is skipped."""
        members = users = 0
        found: list[str] = []
        zone = ZoneInfo("UTC")
        at = to_ms(now)
        test = compile_condition(condition)
        for partition in sorted(self.table.partitions):
            keys = [user for user in self.table.keys(partition) if user not in MARKERS]
            position = 0
            while position < len(keys):
                async with self.lock:
                    if partition not in self.table.partitions:
                        break
                    until = time.monotonic() + PREVIEW_SLICE_SECONDS
                    while position < len(keys) and time.monotonic() < until:
                        user = keys[position]
                        position += 1
                        entry = self.table.get(partition, user)
                        if entry is None:
                            continue  # gone since the listing
                        record = codec.decode(entry.value)
                        users += 1
                        if test(record.state, at, zone, record.members.__contains__):
                            members += 1
                            if len(found) < sample:
                                found.append(user)
                await asyncio.sleep(0)
        return members, users, found

    # --- journeys ---------------------------------------------------------------------

    async def rejourney(
        self, registry: Mapping[str, Journey], changed: str | None, now: datetime
    ) -> None:
        """Take the registry's journeys; for each journey that stopped since a
        partition last looked, everyone inside drops out; for each that resumed, its
        users move on what came due meanwhile. ``changed`` is the journey whose status
        changed, if any (every journey is compared, so it is only informative)."""
        self.model = self.model.with_journeys(registry)
        for partition in sorted(self._held):
            await self._catch_up_journeys(partition, now)

    async def _catch_up_journeys(self, partition: int, now: datetime) -> None:
        statuses = core.journey_statuses(self.model.catalog)
        async with self.lock:
            if partition not in self._held:
                return
            applied = self._marker(partition, JOURNEYS_KEY)
        for journey_id, input in core.journey_sweeps(statuses, applied):
            if not await self._sweep(partition, now, core.inside(journey_id, input)):
                return  # released meanwhile: the new owner sweeps again
        async with self.lock:
            if partition in self._held and applied != statuses:
                self.table.put(partition, JOURNEYS_KEY, statuses, applied_offset=0)

    async def run_schedules(self, partition: int, now: datetime) -> int:
        """Start the audience runs that came due by ``now`` for this partition's users;
        returns how many runs. Only the latest due run of an entry starts: runs missed
        while no worker ran are not caught up."""
        if not self.model.journeys:
            return 0
        await self._until_ready(partition)
        if partition not in self._ready:
            return 0
        started = 0
        catalog = self.model.catalog
        for journey_id, journey in sorted(catalog.journeys.items()):
            status = journey.status
            if (
                journey.state is not JourneyStatus.LAUNCHED
                or status is None
                or status.launched_at is None
            ):
                continue
            for number, entry in enumerate(journey.latest.entries):
                if not isinstance(entry, AudienceEntry):
                    continue
                marker = f"{journey_id}/{number}"
                last = self._runs(partition).get(marker)
                after = _run_of(last[1:]) if last and last[0] == status.launch else None
                run = latest_due_run(entry.schedule, status.launched_at, after, now)
                if run is None:
                    continue
                pick = core.audience(catalog, journey_id, entry, run)
                if not await self._sweep(partition, now, pick):
                    return started  # released meanwhile: the new owner sweeps again
                # Marked once every user was swept, in the same cut as the last of them:
                # a crash before redoes the sweep, and the journey logic lets nobody
                # enter the same run twice.
                async with self.lock:
                    if partition not in self._held:
                        return started
                    runs = {**self._runs(partition), marker: [status.launch, *_run_fields(run)]}
                    self.table.put(partition, RUNS_KEY, runs, applied_offset=0)
                started += 1
        return started

    async def _sweep(self, partition: int, now: datetime, pick: Pick) -> bool:
        """Give each user of ``partition`` the input ``pick`` chooses for them, in rounds;
        False when the partition left this worker before the end."""
        if partition not in self._held:
            return False
        users = [user for user in self.table.keys(partition) if user not in MARKERS]
        for start in range(0, len(users), TIMERS_PER_ROUND):
            async with self.lock:
                if partition not in self._held:
                    return False
                for user in users[start : start + TIMERS_PER_ROUND]:
                    record = self._load(partition, user)
                    input = pick(record)
                    if input is not None:
                        self._process(partition, user, record, input, now)
                await self._send(partition)
        return True

    def _runs(self, partition: int) -> dict[str, list[Any]]:
        return self._marker(partition, RUNS_KEY) or {}

    def _marker(self, partition: int, key: str) -> dict[str, Any] | None:
        entry = self.table.get(partition, key)
        return dict(entry.value) if entry is not None and entry.value is not None else None

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
        """The user processor on one input; then store the new record, move the user's
        timer, count the membership changes and queue the outputs."""
        outcome = core.process(model or self.model, user, record, input, now)
        if outcome is None:
            return None
        new = outcome.record
        self.table.put(partition, user, codec.encode(new), applied_offset=0)
        timer = new.timer
        if timer != record.timer:
            if timer is not None:
                self.timers.push(partition, timer, user, replaces=record.timer)
            elif record.timer is not None:
                self.timers.cancel(partition, record.timer, user)
        if outcome.changes:
            counts = self.members[partition]
            for change in outcome.changes:
                counts[change["segment_id"]] += 1 if change["change"] == "entered" else -1
            self.changes += len(outcome.changes)
        self.commands += len(outcome.commands)
        self.outputs.queue(outcome)
        return outcome

    async def _send(self, partition: int) -> None:
        # Released, or another worker may own it now: its state here is dropped with
        # these outputs, and whoever holds the partition replays the inputs.
        await self.outputs.send(partition, partition in self._held and self.lease.valid())


def _run_fields(run: Run) -> list[Any]:
    local = run.local.isoformat() if run.local is not None else None
    return [run.id, local, to_ms(run.earliest), to_ms(run.latest)]


def _run_of(fields: list[Any]) -> Run:
    run_id, local, earliest, latest = fields
    return Run(
        run_id,
        datetime.fromisoformat(local) if local is not None else None,
        from_ms(earliest),
        from_ms(latest),
    )
