"""The engine's clock: the wall clock in normal running, or simulated time that only
ticks on the clock topic move, so that days of behaviour run in seconds and give the
same result every run.

In simulated time each partition has its own clock, the last tick applied to it: a
tick is applied to a partition once every input written to that partition before the
tick has been applied (see ``streams/ticks.py``). An input is evaluated at its own
timestamp, never before its user's newest event: one user's input moves nobody else's
time, nor any partition's clock. ``now()``, the worker's answer to "what time is it"
(lifecycle stamps, status), is the newest tick known: recovered from the clock topic
at start, then each tick applied here.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, mode: Literal["wall", "simulated"]) -> None:
        self.mode = mode
        self._latest: datetime | None = None
        self.applied: dict[int, datetime] = {}
        """Partition -> the last tick applied to it here (simulated time)."""
        self.recovered: dict[int, datetime] = {}
        """Partition -> the last tick applied to it before this process started, as the
        clock-applied topic says: what ``at`` answers until a tick is applied here. A
        tick replayed after a restart still waits for its own barrier."""

    @property
    def simulated(self) -> bool:
        return self.mode == "simulated"

    @property
    def started(self) -> bool:
        """Whether a tick is known (always, on the wall clock)."""
        return not self.simulated or self._latest is not None

    def now(self) -> datetime:
        """The wall clock, or the newest tick known (the epoch before any)."""
        if not self.simulated:
            return datetime.now(UTC)
        return self._latest if self._latest is not None else EPOCH

    def learn(self, tick: datetime) -> datetime:
        """A tick was written (read back from the clock topic): ``now()`` reaches it."""
        if self._latest is None or tick > self._latest:
            self._latest = tick
        return self.now()

    def apply(self, partition: int, tick: datetime) -> datetime:
        """A tick was applied to ``partition``: its clock moves forward (never back);
        returns that partition's now."""
        current = self.applied.get(partition)
        if current is None or tick > current:
            self.applied[partition] = current = tick
        self.learn(current)
        return current

    def at(self, partition: int) -> datetime:
        """Now in ``partition``: the wall clock, or the last tick applied to it."""
        if not self.simulated:
            return datetime.now(UTC)
        return self.applied.get(partition) or self.recovered.get(partition, EPOCH)

    def recover(self, latest: datetime | None, applied: dict[int, datetime]) -> None:
        """At start, before anything is processed: the newest tick written and the last
        tick applied to each partition."""
        if latest is not None:
            self.learn(latest)
        self.recovered = dict(applied)

    def at_input(self, timestamp: datetime) -> datetime:
        """The instant to evaluate an input at: in simulation its own timestamp (the
        caller keeps it from going before the user's newest event); on the wall clock,
        now. Moves no clock."""
        return timestamp if self.simulated else datetime.now(UTC)

    # Kept for callers of the single-clock API: moves ``now()`` only.
    def advance(self, to: datetime) -> datetime:
        return self.learn(to) if self.simulated else self.now()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"mode": self.mode, "now": self.now().isoformat()}
        if self.simulated:
            status["started"] = self.started
            status["partitions"] = {
                str(partition): moment.isoformat()
                for partition, moment in sorted({**self.recovered, **self.applied}.items())
            }
        return status


class InputProgress:
    """How far this worker has processed each input topic partition: the offset after
    the last record handled (valid, invalid or already applied alike). A tick waits
    here until its barrier is passed; inputs never wait."""

    def __init__(self) -> None:
        self._passed: dict[tuple[str, int], int] = {}
        self._changed: dict[tuple[str, int], asyncio.Event] = defaultdict(asyncio.Event)

    def passed(self, topic: str, partition: int, offset: int) -> None:
        """The record at ``offset`` is handled."""
        key = (topic, partition)
        if offset + 1 > self._passed.get(key, 0):
            self._passed[key] = offset + 1
            event = self._changed.pop(key, None)
            if event is not None:
                event.set()

    def position(self, topic: str, partition: int) -> int:
        return self._passed.get((topic, partition), 0)

    def reached(self, partition: int, ends: Mapping[str, int], floor: Mapping[str, int]) -> bool:
        """Whether every topic of ``ends`` is handled up to its offset in ``partition``
        (``floor``: offsets known handled before this process, e.g. committed)."""
        return all(
            max(self.position(topic, partition), floor.get(topic, 0)) >= end
            for topic, end in ends.items()
        )

    async def changed(self, topics: list[str], partition: int, timeout: float) -> None:
        """Until one of ``topics`` moves in ``partition``, or ``timeout`` seconds."""
        waits = [asyncio.ensure_future(self._changed[(t, partition)].wait()) for t in topics]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
