"""Wiring of the segment and journey engines into a worker: per-user state in a
coalescing table, the index of current definitions, durable timers, and the output
topics (memberships; send commands, journey activity and tag updates from journeys).

Everything that decides is in ``agents.segments.logic.step`` and
``agents.journeys.logic.step``; this module loads, calls, stores and sends. A user's
segment and journey state live in one value, so one input moves both at once and a
replay skips both. One lock serialises the writers of user state (input records,
timers, definition changes, journey runs) in the worker's single event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaProducer

from agents.journeys import logic as journeys
from agents.journeys.catalog import Catalog
from agents.journeys.schedule import Run, latest_due_run, user_run_instant, user_zone
from agents.segments.evaluate import holds
from agents.segments.index import SegmentIndex
from agents.segments.logic import (
    Input,
    JourneyFeedback,
    StepResult,
    Tick,
    on_definitions_changed,
    step,
)
from agents.segments.state import UserState, from_ms, to_ms
from schemas.commands import JourneyEntryRequest, parse_command_id
from schemas.definitions import Journey, JourneyStatus
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.journeys import USER_ZONE, AudienceEntry
from schemas.segments import Condition, SegmentDefinition
from schemas.tags import TagUpdate
from streams.state import CoalescingTable
from streams.state.timers import HeapTimers, Timers

log = logging.getLogger(__name__)

# The stored value per user: segment state, memberships (segment -> version), the
# offset of the last applied record per input topic (a replay skips what is already in
# the state), the user's next timer (ms; the queue is rebuilt from it on recovery), and
# the journey state.
STATE, MEMBERS, OFFSETS, TIMER, JOURNEYS = "s", "m", "o", "d", "j"
RUNS_KEY = "\x00journey-runs"
"""Per partition, not a user: the last audience run swept, per journey entry."""

# Timers fired (or users swept) per hold of the lock: many at once must not stall the
# inputs.
TIMERS_PER_ROUND = 500

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
        self.catalog = Catalog.build({})
        self.lock = asyncio.Lock()
        # Partition -> segment -> members: a partition that moves away takes its own.
        self.members: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.changes = 0
        self.inputs = 0
        self.commands = 0
        self.timers: Timers = timers if timers is not None else HeapTimers()
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self._last_sent: dict[tuple[str, int], asyncio.Future[Any]] = {}
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
        """Wait until every membership record sent so far is acknowledged."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def flush_partition(self, partition: int) -> None:
        """Wait until every output sent so far to ``partition`` is acknowledged, also
        those a concurrent ``flush_outputs`` is waiting for: the broker acknowledges the
        records of a topic partition in order, so the last one sent to each will do."""
        await self.flush_outputs()
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
                self._store(partition, user, stored, result, journey_input, now)
        await self._send(partition)

    async def apply_entries(
        self, partition: int, offset: int, items: Iterable[JourneyEntryRequest]
    ) -> None:
        """Fold one record of API journey entries (all of ``partition``)."""
        replayed: dict[str, bool] = {}
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

    async def fire_timers(self, partition: int, now: datetime) -> int:
        """Evaluate the users whose timer is due at ``now``; returns how many."""
        due_ms = to_ms(now)
        fired = 0
        while True:
            async with self.lock:
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
                    self._store(partition, user, stored, result, journeys.Tick(), from_ms(when))
                    fired += 1
                more = self.timers.has_due(partition, due_ms)
            await self._send(partition)
            if not more:
                return fired
            await asyncio.sleep(0)  # let input records in between rounds

    async def redefine(
        self,
        definitions: Mapping[str, SegmentDefinition],
        changed: Collection[str],
        now: datetime,
    ) -> None:
        """Take the registry's definitions; re-evaluate every user of this worker for the
        segments ``changed`` (applied or deleted)."""
        async with self.lock:
            definitions = dict(definitions)
            self.definitions = definitions
            self.index = SegmentIndex.build(definitions, self.horizon)
            by_partition: dict[int, dict[str, list[Record]]] = {}
            for partition in sorted(self.table.partitions):
                for user, stored in list(self._users(partition)):
                    result = on_definitions_changed(
                        self.index,
                        definitions,
                        UserState.from_json(stored[STATE]),
                        stored[MEMBERS],
                        changed,
                        now,
                    )
                    if result.changes or result.next_timer_ms != stored[TIMER]:
                        self._store(partition, user, stored, result, journeys.Tick(), now)
                by_partition[partition], self._out = self._out, defaultdict(list)
        for partition, outputs in by_partition.items():
            self._out = defaultdict(list, outputs)
            await self._send(partition)

    async def preview(
        self, condition: Condition, sample: int, now: datetime
    ) -> tuple[int, int, list[str]]:
        """(members, users, a sample of members) of ``condition`` over this worker's users."""
        members = users = 0
        found: list[str] = []
        zone = ZoneInfo("UTC")
        async with self.lock:
            for partition in sorted(self.table.partitions):
                for user, stored in self._users(partition):
                    users += 1
                    member_of = stored[MEMBERS]
                    if holds(
                        condition,
                        UserState.from_json(stored[STATE]),
                        to_ms(now),
                        zone,
                        member_of.__contains__,
                    ):
                        members += 1
                        if len(found) < sample:
                            found.append(user)
        return members, users, found

    # --- journeys ---------------------------------------------------------------------

    async def rejourney(
        self, registry: Mapping[str, Journey], changed: str | None, now: datetime
    ) -> None:
        """Take the registry's journeys; when journey ``changed`` stopped, everyone
        inside drops out; when it resumed, its users move on what came due meanwhile."""
        self.catalog = Catalog.build(registry)
        journey = registry.get(changed) if changed else None
        if journey is None or journey.status is None:
            return
        action = journey.status.action
        if action not in ("stop", "resume"):
            return
        input: journeys.Input = (
            journeys.Stopped(journey.status.journey_id) if action == "stop" else journeys.Tick()
        )

        def pick(stored: Mapping[str, Any]) -> journeys.Input | None:
            state = stored[JOURNEYS] or {}
            inside = changed in state.get("in", {}) or changed in state.get("pe", {})
            return input if inside else None

        for partition in sorted(self.table.partitions):
            await self._sweep(partition, now, pick)

    async def run_schedules(self, partition: int, now: datetime) -> int:
        """Start the audience runs that came due by ``now`` for this partition's users;
        returns how many runs. Only the latest due run of an entry starts: runs missed
        while no worker ran are not caught up."""
        if self.journey_topics is None or partition not in self.table.partitions:
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
                await self._sweep(partition, now, self._audience_pick(journey_id, entry, run))
                async with self.lock:
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
    ) -> None:
        """Give each user of ``partition`` the input ``pick`` chooses for them, in rounds."""
        users = [user for user in self.table.keys(partition) if user != RUNS_KEY]
        for start in range(0, len(users), TIMERS_PER_ROUND):
            async with self.lock:
                for user in users[start : start + TIMERS_PER_ROUND]:
                    stored = self._load(partition, user)
                    input = pick(stored)
                    if input is not None:
                        self._store(partition, user, stored, None, input, now)
            await self._send(partition)

    def _runs(self, partition: int) -> dict[str, list[Any]]:
        entry = self.table.get(partition, RUNS_KEY)
        return dict(entry.value) if entry is not None and entry.value else {}

    # --- recovery ---------------------------------------------------------------------

    async def on_recovered(self, partitions: set[int]) -> None:
        """Rebuild the timer queues and member counts from the recovered state."""
        for partition in partitions:
            self.timers.reset(partition)
            members = self.members[partition] = defaultdict(int)
            for user, stored in self._users(partition):
                if stored[TIMER] is not None:
                    self.timers.push(partition, stored[TIMER], user)
                for segment_id in stored[MEMBERS]:
                    members[segment_id] += 1

    def on_released(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.timers.reset(partition)
            self.members.pop(partition, None)

    # --- helpers ------------------------------------------------------------------------

    def _load(self, partition: int, user: str) -> dict[str, Any]:
        entry = self.table.get(partition, user)
        return _decode(entry.value if entry is not None else None)

    def _users(self, partition: int) -> Iterator[tuple[str, dict[str, Any]]]:
        for user, entry in self.table.items(partition):
            if user != RUNS_KEY:
                yield user, _decode(entry.value)

    def _store(
        self,
        partition: int,
        user: str,
        stored: dict[str, Any],
        result: StepResult | None,
        journey_input: journeys.Input,
        now: datetime,
    ) -> None:
        """Move the user's journeys on ``journey_input`` after the segment ``result``
        (None: the segments did not move), store both, queue the outputs."""
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
            moved = journeys.step(
                self.catalog,
                journey_state,
                journeys.Facts(user, tags, members),
                journey_input,
                to_ms(now),
                result.changes if result is not None else (),
            )
            journey_state = moved.state
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
        for topic, records in outputs.items():
            if records:
                value = orjson.dumps(records, option=orjson.OPT_UTC_Z)
                sent = await self._producer.send(topic, value, partition=partition)
                self._pending.append(sent)
                self._last_sent[topic, partition] = sent


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
