"""The engine's clock: the wall clock in normal running, or simulated time that only
ticks on the clock topic (and event timestamps) move, so that days of behaviour run in
seconds and give the same result every run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, mode: Literal["wall", "simulated"]) -> None:
        self.mode = mode
        self._simulated = EPOCH

    @property
    def simulated(self) -> bool:
        return self.mode == "simulated"

    def now(self) -> datetime:
        return datetime.now(UTC) if self.mode == "wall" else self._simulated

    def advance(self, to: datetime) -> datetime:
        """Move simulated time forward (never back); the wall clock ignores this."""
        if to > self._simulated:
            self._simulated = to
        return self.now()

    def at_event(self, event_time: datetime) -> datetime:
        """The instant to evaluate an input at: in simulation, time reaches the input's
        own timestamp; on the wall clock, now."""
        return self.advance(event_time) if self.simulated else datetime.now(UTC)
