"""Work over all of a partition's users, in the segment runtime: re-evaluating them for
changed definitions, sweeping them into an audience run or out of a stopped journey,
previewing a condition. Each decision is the user processor's (``engine.processor``);
this part chooses the users, in rounds under the runtime's lock, and leaves a marker per
partition once a sweep is done, in the same cut as its last users (a crash before it
redoes the sweep; see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine import codec
from engine import processor as core
from engine import sweeps as sweeping
from engine.journeys.schedule import Run
from engine.processor import Input, Model, Outcome
from engine.record import UserRecord
from engine.segments.evaluate import compile_condition
from engine.sweeps import Pick
from engine.time import from_ms, to_ms
from schemas.definitions import Journey
from schemas.segments import Condition, SegmentDefinition
from streams.state import CoalescingTable

RUNS_KEY = "\x00journey-runs"
"""Per partition, not a user: the last audience run swept, per journey entry."""
SEGMENTS_KEY = "\x00segment-versions"
"""Per partition: the version of each segment its users were evaluated for."""
JOURNEYS_KEY = "\x00journey-statuses"
"""Per partition: ``[launch, status]`` of each journey whose stop or resume was swept."""
MARKERS = frozenset({RUNS_KEY, SEGMENTS_KEY, JOURNEYS_KEY})

# Users swept (or timers fired) per hold of the lock: many at once must not stall the
# inputs.
TIMERS_PER_ROUND = 500

PREVIEW_SLICE_SECONDS = 0.02
"""How long a preview evaluates users under the lock before it lets others run."""


class Sweeps:
    """The sweeps of ``agents.segments.agent.SegmentRuntime``, its base class: what they
    use of the runtime is declared here for the type checker, and defined there."""

    table: CoalescingTable
    model: Model
    lock: asyncio.Lock
    members: dict[int, dict[str, int]]
    _held: set[int]
    _ready: set[int]

    if TYPE_CHECKING:

        async def _until_ready(self, partition: int) -> None: ...

        def _users(self, partition: int) -> Iterator[tuple[str, UserRecord]]: ...

        def _load(self, partition: int, user: str) -> UserRecord: ...

        def _process(
            self,
            partition: int,
            user: str,
            record: UserRecord,
            input: Input,
            now: datetime,
            model: Model | None = None,
        ) -> Outcome | None: ...

        async def _send(self, partition: int) -> None: ...

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
            todo = sweeping.segments_to_redo(model, changed, applied, self.members[partition])
            if todo:
                redefined = core.Redefined(todo)
                for user, record in list(self._users(partition)):
                    self._process(partition, user, record, redefined, now, model)
            versions = sweeping.segment_versions(model)
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
        statuses = sweeping.journey_statuses(self.model.catalog)
        async with self.lock:
            if partition not in self._held:
                return
            applied = self._marker(partition, JOURNEYS_KEY)
        for journey_id, input in sweeping.journey_sweeps(statuses, applied):
            if not await self._sweep(partition, now, sweeping.inside(journey_id, input)):
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

        def last_run(marker: str, launch: int) -> Run | None:
            last = self._runs(partition).get(marker)
            return _run_of(last[1:]) if last and last[0] == launch else None

        for due in sweeping.due_runs(catalog, last_run, now):
            pick = sweeping.audience(catalog, due.journey_id, due.entry, due.run)
            if not await self._sweep(partition, now, pick):
                return started  # released meanwhile: the new owner sweeps again
            # Marked once every user was swept, in the same cut as the last of them:
            # a crash before redoes the sweep, and the journey logic lets nobody
            # enter the same run twice.
            async with self.lock:
                if partition not in self._held:
                    return started
                runs = {**self._runs(partition), due.marker: [due.launch, *_run_fields(due.run)]}
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
