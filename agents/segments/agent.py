"""Wiring of the segment and journey engines into a worker: per-user state in a
coalescing table, the index of current definitions, durable timers, and the output
topics (memberships; send commands, journey activity and tag updates from journeys).

Everything that decides is in ``engine.segments.logic.step`` and
``engine.journeys.logic.step``; this module loads, calls, stores and sends. A user's
segment and journey state live in one value, so one input moves both at once and a
replay skips both. One lock serialises the writers of user state (input records,
timers, definition changes, journey runs) in the worker's single event loop.

Every writer takes the same path: under the lock, load, decide, ``_store`` the new
state and ``_send`` its outputs to the producer. ``flush`` (the checkpoint's cut) seals
the state under that lock, so the sealed state is exactly the one whose outputs were
handed to the producer; it waits for their acknowledgement before the state goes to
the changelog. Work that is not driven by an input record (definition changes,
stop/resume, audience runs) leaves a marker per partition once done, in the same cut
as its effects: a crash or a rebalance before that redoes it (see docs/reliability.md).
No partition is served before the definitions are loaded and its state recovered.
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

import orjson
from aiokafka import AIOKafkaProducer

from engine.journeys import codec as journey_codec
from engine.journeys import logic as journeys
from engine.journeys.catalog import Catalog
from engine.journeys.schedule import Run, latest_due_run, user_run_instant, user_zone
from engine.segments.evaluate import compile_condition
from engine.segments.index import SegmentIndex
from engine.segments.logic import (
    Input,
    JourneyFeedback,
    StepResult,
    Tick,
    on_definitions_changed,
    step,
)
from engine.segments.state import UserState
from engine.time import from_ms, to_ms
from schemas.commands import JourneyEntryRequest, parse_command_id
from schemas.definitions import Journey, JourneyStatus
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.identity import content_id
from schemas.journey_nodes import USER_ZONE
from schemas.journeys import AudienceEntry
from schemas.segments import Condition, SegmentDefinition
from schemas.tags import TagUpdate
from streams.state import CoalescingTable
from streams.state.lease import Lease
from streams.state.timers import HeapTimers, Timers

log = logging.getLogger(__name__)

# The stored value per user: segment state, memberships (segment -> version), the
# offset of the last applied record per input topic (a replay skips what is already in
# the state), the user's next timer (ms; the queue is rebuilt from it on recovery), and
# the journey state.
STATE, MEMBERS, OFFSETS, TIMER, JOURNEYS = "s", "m", "o", "d", "j"
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

OUTPUT_RECORD_BYTES = 256 * 1024
"""The largest output record: well under the producer's request size and the records
the consumers of these topics accept (``REACH_MAX_RECORD_BYTES``)."""

OUTPUT_BATCH_BYTES = 512 * 1024
"""aiokafka's batch per output partition: several output records while one is sent."""

Record = dict[str, Any]
"""One output item (a membership change, a send command, ...) as sent on its topic."""


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
        self.horizon = horizon
        self.journey_topics = journey_topics
        self.definitions: dict[str, SegmentDefinition] = {}
        self.index = SegmentIndex.build({}, horizon)
        self.catalog = Catalog.unloaded()
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
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self._last_sent: dict[tuple[str, int], asyncio.Future[Any]] = {}
        # The largest output record (0: OUTPUT_RECORD_BYTES); the worker lowers it to
        # REACH_MAX_RECORD_BYTES when that is smaller, which the topics' readers refuse.
        self.record_limit = 0
        # Outputs of the current call, by topic; sent as one record per topic.
        self._out: dict[str, list[Record]] = defaultdict(list)

    async def start(self) -> None:
        # Output records are large (a round of users' commands or activity rows): with
        # aiokafka's 16 KiB batches each took a batch of its own, and the next record for
        # the same partition waited for the broker's answer to the one before.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, max_batch_size=OUTPUT_BATCH_BYTES
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self.flush_outputs()
            await self._producer.stop()

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
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

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
            pending, self._pending = self._pending, []
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
            last = [sent for (_, p), sent in self._last_sent.items() if p == partition]
        if last:
            await asyncio.gather(*(asyncio.shield(sent) for sent in last))

    async def sent_offset(self, topic: str, partition: int) -> int | None:
        """The offset of the last record sent to ``topic`` in ``partition``, once the
        broker has it (None: none sent by this process)."""
        sent = self._last_sent.get((topic, partition))
        if sent is None:
            return None
        offset = getattr(await asyncio.shield(sent), "offset", None)
        return offset if isinstance(offset, int) else None

    # --- inputs -------------------------------------------------------------------------

    async def apply(
        self,
        partition: int,
        offset: int,
        source: str,
        items: Iterable[Input],
        now_of: Callable[[Input], datetime],
        not_before_seen: bool = False,
    ) -> None:
        """Fold one input record's items (all of ``partition``) into their users, each at
        the instant ``now_of`` gives it; with ``not_before_seen`` (simulated time), never
        before the user's newest event, so a user's own time never goes back."""
        replayed: dict[str, bool] = {}  # decided once per user and record
        await self._until_ready(partition)
        async with self.lock:
            for item in items:
                assert isinstance(item, Event | TagUpdate | Feedback)
                user = item.user_id
                stored = self._load(partition, user)
                if user not in replayed:
                    replayed[user] = stored[OFFSETS].get(source, -1) >= offset
                if replayed[user]:
                    continue  # this record is already in the user's state
                self.inputs += 1
                state = UserState.from_json(stored[STATE])
                now = now_of(item)
                if not_before_seen and state.seen is not None and to_ms(now) < state.seen:
                    now = from_ms(state.seen)
                segment_input: Input = item
                if isinstance(item, Feedback):
                    # A journey's command id names its journey and step, for message
                    # conditions by journey or step.
                    ref = parse_command_id(item.command_id)
                    if ref is not None:
                        segment_input = JourneyFeedback(item, ref.journey, ref.node)
                result = step(
                    self.index,
                    self.definitions,
                    state,
                    stored[MEMBERS],
                    segment_input,
                    now,
                )
                stored[OFFSETS] = {**stored[OFFSETS], source: offset}
                journey_input = item if isinstance(item, Event | Feedback) else journeys.Tick()
                self._store(partition, user, stored, result, journey_input, now, _cause(item))
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
                stored = self._load(partition, user)
                if user not in replayed:
                    replayed[user] = stored[OFFSETS].get("a", -1) >= offset
                if replayed[user]:
                    continue
                stored[OFFSETS] = {**stored[OFFSETS], "a": offset}
                self._store(partition, user, stored, None, item, item.at)
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
                stored = self._load(partition, user)
                counts = self.members[partition]
                for segment_id in stored[MEMBERS]:
                    counts[segment_id] -= 1
                if stored[TIMER] is not None:
                    self.timers.cancel(partition, stored[TIMER], user)
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
                    stored = self._load(partition, user)
                    if stored[TIMER] != at:
                        continue  # superseded by a later or earlier timer for this user
                    state = UserState.from_json(stored[STATE])
                    # Evaluate at the instant the timer was set for, so a change carries
                    # the moment it happened whatever the tick granularity; never before
                    # the user's newest input, already evaluated at its own time, nor
                    # after now (an event stamped in the future is counted, not awaited).
                    when = max(at, min(state.seen or at, due_ms))
                    result = step(
                        self.index,
                        self.definitions,
                        state,
                        stored[MEMBERS],
                        Tick(),
                        from_ms(when),
                    )
                    self._store(
                        partition,
                        user,
                        stored,
                        result,
                        journeys.Tick(),
                        from_ms(when),
                        f"timer:{at}",
                    )
                    fired += 1
                more = self.timers.has_due(partition, due_ms)
                await self._send(partition)
            if not more:
                return fired
            await asyncio.sleep(0)  # let input records in between rounds

    async def load(
        self,
        definitions: Mapping[str, SegmentDefinition],
        registry: Mapping[str, Journey],
        now: datetime,
    ) -> None:
        """The registry is read whole: take its segments and journeys, catch the
        partitions held up with them, and serve them (the streams waiting for them go
        on)."""
        self.catalog = Catalog.build(registry)
        self.definitions = dict(definitions)
        self.index = SegmentIndex.build(self.definitions, self.horizon)
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
        self.definitions = dict(definitions)
        self.index = SegmentIndex.build(self.definitions, self.horizon)
        for partition in sorted(self._held):
            await self._catch_up_segments(partition, changed, now)

    async def _catch_up_segments(
        self, partition: int, changed: Collection[str], now: datetime
    ) -> None:
        async with self.lock:
            if partition not in self._held:
                return
            definitions, index = self.definitions, self.index
            versions = {segment_id: d.version for segment_id, d in definitions.items()}
            applied = self._marker(partition, SEGMENTS_KEY)
            todo = set(changed)
            if applied is None:  # never recorded: everything, as after any change
                todo |= set(versions) | set(self.members[partition])
            else:
                todo |= {
                    s for s in versions.keys() | applied.keys() if applied.get(s) != versions.get(s)
                }
            if todo:
                for user, stored in list(self._users(partition)):
                    result = on_definitions_changed(
                        index,
                        definitions,
                        UserState.from_json(stored[STATE]),
                        stored[MEMBERS],
                        todo,
                        now,
                    )
                    if result.changes or result.next_timer_ms != stored[TIMER]:
                        cause = _definitions_cause(definitions, todo, stored)
                        self._store(partition, user, stored, result, journeys.Tick(), now, cause)
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
                        stored = _decode(entry.value)
                        users += 1
                        state = UserState.from_json(stored[STATE])
                        if test(state, at, zone, stored[MEMBERS].__contains__):
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
        self.catalog = Catalog.build(registry)
        for partition in sorted(self._held):
            await self._catch_up_journeys(partition, now)

    async def _catch_up_journeys(self, partition: int, now: datetime) -> None:
        catalog = self.catalog
        statuses = {
            journey_id: [journey.status.launch, journey.status.status.value]
            for journey_id, journey in catalog.journeys.items()
            if journey.status is not None
        }
        async with self.lock:
            if partition not in self._held:
                return
            applied = self._marker(partition, JOURNEYS_KEY)
        if applied is not None:  # never recorded: stale visits end lazily (drop_stale)
            for journey_id, (launch, status) in sorted(statuses.items()):
                before = applied.get(journey_id)
                if before == [launch, status]:
                    continue
                input: journeys.Input
                if status == JourneyStatus.STOPPED:
                    input = journeys.Stopped(journey_id)
                elif status == JourneyStatus.LAUNCHED and before == [launch, "paused"]:
                    input = journeys.Tick()
                else:
                    continue
                if not await self._sweep(partition, now, _inside(journey_id, input)):
                    return  # released meanwhile: the new owner sweeps again
        async with self.lock:
            if partition in self._held and applied != statuses:
                self.table.put(partition, JOURNEYS_KEY, statuses, applied_offset=0)

    async def run_schedules(self, partition: int, now: datetime) -> int:
        """Start the audience runs that came due by ``now`` for this partition's users;
        returns how many runs. Only the latest due run of an entry starts: runs missed
        while no worker ran are not caught up."""
        if self.journey_topics is None:
            return 0
        await self._until_ready(partition)
        if partition not in self._ready:
            return 0
        started = 0
        for journey_id, journey in sorted(self.catalog.journeys.items()):
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
                runs = self._runs(partition)
                last = runs.get(marker)
                after = _run_of(last[1:]) if last and last[0] == status.launch else None
                run = latest_due_run(entry.schedule, status.launched_at, after, now)
                if run is None:
                    continue
                pick = self._audience_pick(journey_id, entry, run)
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

    def _audience_pick(
        self, journey_id: str, entry: AudienceEntry, run: Run
    ) -> Callable[[Mapping[str, Any]], journeys.Input | None]:
        journey = self.catalog.journeys[journey_id]
        default_zone = journey.latest.settings.timezone
        in_user_zone = entry.schedule.timezone == USER_ZONE and run.local is not None

        def pick(stored: Mapping[str, Any]) -> journeys.Input | None:
            if entry.segment not in stored[MEMBERS]:
                return None
            due = None
            if in_user_zone:
                tags = UserState.from_json(stored[STATE]).tags
                due = to_ms(user_run_instant(run, user_zone(tags, default_zone)))
            return journeys.AudienceRun(journey_id, run.id, due)

        return pick

    async def _sweep(
        self,
        partition: int,
        now: datetime,
        pick: Callable[[Mapping[str, Any]], journeys.Input | None],
    ) -> bool:
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
                    stored = self._load(partition, user)
                    input = pick(stored)
                    if input is not None:
                        self._store(partition, user, stored, None, input, now)
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
            for user, stored in self._users(partition):
                if stored[TIMER] is not None:
                    self.timers.push(partition, stored[TIMER], user)
                for segment_id in stored[MEMBERS]:
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

    def _load(self, partition: int, user: str) -> dict[str, Any]:
        entry = self.table.get(partition, user)
        return _decode(entry.value if entry is not None else None)

    def _users(self, partition: int) -> Iterator[tuple[str, dict[str, Any]]]:
        for user, entry in self.table.items(partition):
            if user not in MARKERS:
                yield user, _decode(entry.value)

    def _store(
        self,
        partition: int,
        user: str,
        stored: dict[str, Any],
        result: StepResult | None,
        journey_input: journeys.Input,
        now: datetime,
        cause: str = "",
    ) -> None:
        """Move the user's journeys on ``journey_input`` after the segment ``result``
        (None: the segments did not move), store both, queue the outputs. ``cause``
        names what made the membership changes (their identity: never an instant)."""
        state_json = result.state.to_json() if result is not None else stored[STATE]
        members = dict(result.memberships) if result is not None else stored[MEMBERS]
        timer: int | None
        tags: Mapping[str, Any]
        if result is not None:
            timer = result.next_timer_ms
            tags = result.state.tags
        else:
            # The stored parts as they are: a sweep touches every user of a partition.
            timers = UserState.stored_timers(state_json)
            timer = min(timers.values()) if timers else None
            tags = UserState.stored_tags(state_json)
        journey_state = stored[JOURNEYS]
        # Most inputs concern no journey of a user who is in none: not even asked.
        if self.journey_topics is not None and (
            journey_state is not None or journeys.may_start(self.catalog, journey_input)
        ):
            decoded = journey_codec.decode(journey_state)
            moved = journeys.step(
                self.catalog,
                decoded,
                journeys.Facts(user, tags, members),
                journey_input,
                to_ms(now),
                result.changes if result is not None else (),
            )
            if moved.state is not decoded:  # else stored as it was
                journey_state = journey_codec.encode(moved.state)
            if moved.next_due is not None:
                timer = moved.next_due if timer is None else min(timer, moved.next_due)
            self._queue_journey_outputs(moved)
        value = {
            STATE: state_json,
            MEMBERS: members,
            OFFSETS: stored[OFFSETS],
            TIMER: timer,
        }
        if journey_state is not None:
            value[JOURNEYS] = journey_state
        self.table.put(partition, user, value, applied_offset=0)
        if timer != stored[TIMER]:
            if timer is not None:
                self.timers.push(partition, timer, user, replaces=stored[TIMER])
            else:
                self.timers.cancel(partition, stored[TIMER], user)
        if result is None:
            return
        changes = self._out[self.topic]
        counts = self.members[partition]
        for change in result.changes:
            counts[change.segment_id] += 1 if change.kind == "entered" else -1
            # The fields of schemas.memberships.MembershipChanged, built from values the
            # logic produced (a model per change cost more than the change itself).
            changes.append(
                {
                    "segment_id": change.segment_id,
                    "user_id": user,
                    "change": change.kind,
                    "at": change.at,
                    "version": change.version,
                    "cause": cause,
                }
            )
        self.changes += len(result.changes)

    def _queue_journey_outputs(self, moved: journeys.JourneyResult) -> None:
        topics = self.journey_topics
        assert topics is not None
        if moved.commands:
            self._out[topics.commands].extend(moved.commands)
            self.commands += len(moved.commands)
        if moved.activity:
            self._out[topics.activity].extend(moved.activity)
        if moved.tag_updates:
            self._out[topics.tags].extend(moved.tag_updates)

    async def _send(self, partition: int) -> None:
        """Send the queued outputs: one record per topic (a JSON array), in ``partition``,
        the users' partition on every topic."""
        outputs, self._out = self._out, defaultdict(list)
        if self._producer is None:
            return
        if partition not in self._held or not self.lease.valid():
            # Released, or another worker may own it now: its state here is dropped
            # with these outputs, and whoever holds the partition replays the inputs.
            return
        for topic, records in outputs.items():
            for value in _records(records, self.record_limit or OUTPUT_RECORD_BYTES):
                sent = await self._producer.send(topic, value, partition=partition)
                self._pending.append(sent)
                self._last_sent[topic, partition] = sent


def _records(items: list[Record], limit: int) -> Iterator[bytes]:
    """``items`` as JSON arrays of at most ``limit`` bytes each (an item larger alone
    goes alone), in order. One array is the common case; a definition change over a
    partition's users, or a large launch round, is split in halves until each fits."""
    if not items:
        return
    value = orjson.dumps(items, option=orjson.OPT_UTC_Z)
    if len(value) <= limit or len(items) == 1:
        yield value
        return
    middle = len(items) // 2
    yield from _records(items[:middle], limit)
    yield from _records(items[middle:], limit)


def _cause(item: Event | TagUpdate | Feedback) -> str:
    """An input's identity, the cause of the membership changes it makes."""
    if isinstance(item, Event):
        return f"e:{item.event_id}"
    if isinstance(item, TagUpdate):
        return f"t:{item.update_id}"
    return f"f:{item.feedback_id}"


def _definitions_cause(
    definitions: Mapping[str, SegmentDefinition],
    changed: Collection[str],
    stored: Mapping[str, Any],
) -> str:
    """The cause of changes a definition change makes to a user: the definitions
    changed, at their versions, and the user's state they met (its applied inputs and
    timer), so the same change met again (a replay, a restart's catch-up) is the same
    change, and a later one is another."""
    versions = sorted(
        (segment_id, definitions[segment_id].version if segment_id in definitions else None)
        for segment_id in changed
    )
    return "d:" + content_id(versions, stored[OFFSETS], stored[TIMER])


def _inside(
    journey_id: str, input: journeys.Input
) -> Callable[[Mapping[str, Any]], journeys.Input | None]:
    """A sweep's pick: ``input`` for the users inside ``journey_id`` (or waiting to enter)."""

    def pick(stored: Mapping[str, Any]) -> journeys.Input | None:
        state = journey_codec.decode(stored[JOURNEYS])
        inside = state is not None and (journey_id in state.visits or journey_id in state.pending)
        return input if inside else None

    return pick


def _decode(value: Any) -> dict[str, Any]:
    stored: Mapping[str, Any] = value or {}
    return {
        STATE: stored.get(STATE),
        MEMBERS: stored.get(MEMBERS, {}),
        OFFSETS: stored.get(OFFSETS, {}),
        TIMER: stored.get(TIMER),
        JOURNEYS: stored.get(JOURNEYS),
    }


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
