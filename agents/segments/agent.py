"""Wiring of the segment engine into a worker: per-user state in a coalescing table,
the index of current definitions, durable timers, and the memberships topic.

Everything that decides is in ``logic.step``; this module loads, calls, stores and
sends. One lock serialises the writers of user state (input records, timers,
definition changes) in the worker's single event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaProducer

from agents.segments.evaluate import holds
from agents.segments.index import SegmentIndex
from agents.segments.logic import Input, StepResult, Tick, on_definitions_changed, step
from agents.segments.state import UserState, from_ms, to_ms
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segments import Condition, SegmentDefinition
from schemas.tags import TagUpdate
from streams.state import CoalescingTable

log = logging.getLogger(__name__)

# The stored value per user: state, memberships (segment -> version), the offset of the
# last applied record per input topic (a replay skips what is already in the state),
# and the user's next timer (ms), from which the timer queue is rebuilt on recovery.
STATE, MEMBERS, OFFSETS, TIMER = "s", "m", "o", "d"

# Timers fired per hold of the lock: many due at once must not stall the inputs.
TIMERS_PER_ROUND = 500

Record = dict[str, Any]
"""One membership change as sent on the memberships topic."""


class SegmentRuntime:
    def __init__(self, table: CoalescingTable, bootstrap: str, topic: str, horizon: timedelta):
        self.table = table
        self.bootstrap = bootstrap
        self.topic = topic
        self.horizon = horizon
        self.definitions: dict[str, SegmentDefinition] = {}
        self.index = SegmentIndex.build({}, horizon)
        self.lock = asyncio.Lock()
        self.members: dict[str, int] = defaultdict(int)  # segment -> members here
        self.changes = 0
        self.inputs = 0
        self._timers: dict[int, list[tuple[int, str]]] = defaultdict(list)
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self.flush_outputs()
            await self._producer.stop()

    def status(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "changes": self.changes,
            "timers": sum(len(queue) for queue in self._timers.values()),
            "members": dict(sorted(self.members.items())),
        }

    async def flush_outputs(self) -> None:
        """Wait until every membership record sent so far is acknowledged."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    # --- inputs -------------------------------------------------------------------------

    async def apply(
        self,
        partition: int,
        offset: int,
        source: str,
        items: Iterable[Input],
        now_of: Callable[[Input], datetime],
    ) -> None:
        """Fold one input record's items (all of ``partition``) into their users, each at
        the instant ``now_of`` gives it."""
        changes: list[Record] = []
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
                result = step(
                    self.index,
                    self.definitions,
                    UserState.from_json(stored[STATE]),
                    stored[MEMBERS],
                    item,
                    now_of(item),
                )
                stored[OFFSETS] = {**stored[OFFSETS], source: offset}
                changes.extend(self._store(partition, user, stored, result))
        await self._send(partition, changes)

    async def fire_timers(self, partition: int, now: datetime) -> int:
        """Evaluate the users whose timer is due at ``now``; returns how many."""
        queue = self._timers.get(partition)
        if not queue:
            return 0
        due_ms = to_ms(now)
        fired = 0
        while True:
            changes: list[Record] = []
            async with self.lock:
                for _ in range(TIMERS_PER_ROUND):
                    if not queue or queue[0][0] > due_ms:
                        break
                    at, user = heapq.heappop(queue)
                    stored = self._load(partition, user)
                    if stored[TIMER] != at:
                        continue  # superseded by a later or earlier timer for this user
                    state = UserState.from_json(stored[STATE])
                    # Evaluate at the instant the timer was set for, so a change carries
                    # the moment it happened whatever the tick granularity; never before
                    # the user's newest input, already evaluated at its own time.
                    when = max(at, state.seen or at)
                    result = step(
                        self.index,
                        self.definitions,
                        state,
                        stored[MEMBERS],
                        Tick(),
                        from_ms(when),
                    )
                    changes.extend(self._store(partition, user, stored, result))
                    fired += 1
                more = bool(queue) and queue[0][0] <= due_ms
            await self._send(partition, changes)
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
            by_partition: dict[int, list[Record]] = {}
            for partition in sorted(self.table.partitions):
                changes = by_partition.setdefault(partition, [])
                for user, entry in list(self.table.items(partition)):
                    stored = _decode(entry.value)
                    result = on_definitions_changed(
                        self.index,
                        definitions,
                        UserState.from_json(stored[STATE]),
                        stored[MEMBERS],
                        changed,
                        now,
                    )
                    if result.changes or result.next_timer != _timer_of(stored):
                        changes.extend(self._store(partition, user, stored, result))
        for partition, changes in by_partition.items():
            await self._send(partition, changes)

    async def preview(
        self, condition: Condition, sample: int, now: datetime
    ) -> tuple[int, int, list[str]]:
        """(members, users, a sample of members) of ``condition`` over this worker's users."""
        members = users = 0
        found: list[str] = []
        zone = ZoneInfo("UTC")
        async with self.lock:
            for partition in sorted(self.table.partitions):
                for user, entry in self.table.items(partition):
                    stored = _decode(entry.value)
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

    # --- recovery ---------------------------------------------------------------------

    async def on_recovered(self, partitions: set[int]) -> None:
        """Rebuild the timer queues and member counts from the recovered state."""
        for partition in partitions:
            queue: list[tuple[int, str]] = []
            for user, entry in self.table.items(partition):
                stored = _decode(entry.value)
                if stored[TIMER] is not None:
                    queue.append((stored[TIMER], user))
                for segment_id in stored[MEMBERS]:
                    self.members[segment_id] += 1
            heapq.heapify(queue)
            self._timers[partition] = queue

    def on_released(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._timers.pop(partition, None)

    # --- helpers ------------------------------------------------------------------------

    def _load(self, partition: int, user: str) -> dict[str, Any]:
        entry = self.table.get(partition, user)
        return _decode(entry.value if entry is not None else None)

    def _store(
        self, partition: int, user: str, stored: dict[str, Any], result: StepResult
    ) -> list[Record]:
        timer = to_ms(result.next_timer) if result.next_timer is not None else None
        value = {
            STATE: result.state.to_json(),
            MEMBERS: dict(result.memberships),
            OFFSETS: stored[OFFSETS],
            TIMER: timer,
        }
        self.table.put(partition, user, value, applied_offset=0)
        if timer is not None and timer != stored[TIMER]:
            heapq.heappush(self._timers[partition], (timer, user))
        changes: list[Record] = []
        for change in result.changes:
            self.members[change.segment_id] += 1 if change.kind == "entered" else -1
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
        self.changes += len(changes)
        return changes

    async def _send(self, partition: int, changes: list[Record]) -> None:
        if not changes or self._producer is None:
            return
        value = orjson.dumps(changes, option=orjson.OPT_UTC_Z)
        self._pending.append(await self._producer.send(self.topic, value, partition=partition))


def _decode(value: Any) -> dict[str, Any]:
    stored: Mapping[str, Any] = value or {}
    return {
        STATE: stored.get(STATE),
        MEMBERS: stored.get(MEMBERS, {}),
        OFFSETS: stored.get(OFFSETS, {}),
        TIMER: stored.get(TIMER),
    }


def _timer_of(stored: Mapping[str, Any]) -> datetime | None:
    timer = stored[TIMER]
    return from_ms(timer) if timer is not None else None
