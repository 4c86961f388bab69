"""The delivery ledger and rate limits: what a worker decided for each send command,
so that a command seen twice is sent once, a provider's fault is retried with
back-off, and feedback a channel learns of later waits for its instant.

Pure: instants are given (epoch milliseconds for the ledger, seconds of any monotonic
clock for the rate limits), nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from schemas.feedback import FeedbackStatus


class State(StrEnum):
    RETRYING = "retrying"
    """The adapter failed with a fault of its own; tried again at ``retry_at``."""
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"


FINAL = frozenset({State.DELIVERED, State.FAILED, State.BOUNCED})


@dataclass(frozen=True, slots=True)
class Pending:
    """Feedback decided already, to be emitted once the clock reaches ``at``."""

    status: FeedbackStatus
    at: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One command's line in the ledger (the table's value, keyed by command id)."""

    state: State
    attempts: int
    decided_at: int
    """When the state was last decided (ms): retention counts from it."""
    user_id: str
    channel: str
    pending: tuple[Pending, ...] = ()
    """Sorted by instant."""
    retry_at: int | None = None
    command: Mapping[str, Any] | None = None
    """The command itself while retrying: the retry has no input record to read."""
    fault: str | None = None
    """The last fault, while retrying."""

    @property
    def next_due(self) -> int | None:
        """The earliest instant something is to happen for this command."""
        dues = [self.pending[0].at] if self.pending else []
        if self.retry_at is not None:
            dues.append(self.retry_at)
        return min(dues) if dues else None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "s": self.state.value,
            "n": self.attempts,
            "t": self.decided_at,
            "u": self.user_id,
            "ch": self.channel,
        }
        if self.pending:
            value["q"] = [[p.status.value, p.at, p.reason] for p in self.pending]
        if self.retry_at is not None:
            value["r"] = self.retry_at
        if self.command is not None:
            value["c"] = dict(self.command)
        if self.fault is not None:
            value["f"] = self.fault
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> LedgerEntry:
        return cls(
            state=State(value["s"]),
            attempts=value["n"],
            decided_at=value["t"],
            user_id=value["u"],
            channel=value["ch"],
            pending=tuple(
                Pending(FeedbackStatus(status), at, reason)
                for status, at, reason in value.get("q", ())
            ),
            retry_at=value.get("r"),
            command=value.get("c"),
            fault=value.get("f"),
        )


# --- decisions ------------------------------------------------------------------------


def should_deliver(entry: LedgerEntry | None) -> bool:
    """A command seen for the first time is delivered. One already in the ledger is
    not, whatever its state: final, or retrying (its retry is already scheduled)."""
    return entry is None


def retry_due(entry: LedgerEntry, now: int) -> bool:
    return entry.state is State.RETRYING and entry.retry_at is not None and entry.retry_at <= now


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    first_delay_ms: int
    max_delay_ms: int = 3_600_000

    def delay(self, attempts: int) -> int:
        """Wait after the ``attempts``-th failed attempt: doubling, capped."""
        return int(min(self.first_delay_ms * 2 ** (attempts - 1), self.max_delay_ms))


def after_fault(
    attempts: int,
    fault: str,
    command: Mapping[str, Any],
    user_id: str,
    channel: str,
    now: int,
    policy: RetryPolicy,
    retry_after_ms: int | None = None,
) -> LedgerEntry:
    """The ledger after the ``attempts``-th attempt raised ``fault``: retrying later, or
    failed for good (its ``failed`` feedback due now) once out of attempts.

    The retry waits the policy's back-off, or what the provider asked for
    (``retry_after_ms``, its ``Retry-After``) when that is longer, never longer than
    the policy's longest wait."""
    if attempts < policy.max_attempts:
        wait = policy.delay(attempts)
        if retry_after_ms is not None:
            wait = max(wait, min(retry_after_ms, policy.max_delay_ms))
        return LedgerEntry(
            State.RETRYING,
            attempts,
            now,
            user_id,
            channel,
            retry_at=now + wait,
            command=command,
            fault=fault,
        )
    reason = f"gave up after {attempts} attempts: {fault}"
    failed = Pending(FeedbackStatus.FAILED, now, reason)
    return LedgerEntry(State.FAILED, attempts, now, user_id, channel, pending=(failed,))


def after_outcome(
    attempts: int,
    status: str,
    reason: str | None,
    outcome_at: int | None,
    later: Iterable[tuple[str, int]],
    user_id: str,
    channel: str,
    now: int,
) -> LedgerEntry:
    """The ledger once the adapter answered: final, with every feedback it implies
    pending at its instant (the outcome's own, else now; later ones at theirs)."""
    outcome = Pending(FeedbackStatus(status), outcome_at if outcome_at is not None else now, reason)
    following = [Pending(FeedbackStatus(later_status), at) for later_status, at in later]
    pending = tuple(sorted([outcome, *following], key=lambda p: p.at))
    return LedgerEntry(State(status), attempts, now, user_id, channel, pending=pending)


def release(entry: LedgerEntry, now: int) -> tuple[list[Pending], LedgerEntry]:
    """The pending feedback due by ``now`` (never earlier), and the entry without it."""
    due = [p for p in entry.pending if p.at <= now]
    if not due:
        return [], entry
    return due, replace(entry, pending=tuple(p for p in entry.pending if p.at > now))


def expired(entry: LedgerEntry, now: int, retention_ms: int) -> bool:
    """A final entry with nothing pending, decided longer ago than the retention: a
    duplicate of its command can no longer arrive (the topic keeps less)."""
    return entry.state in FINAL and not entry.pending and now - entry.decided_at > retention_ms


# --- rate limits ----------------------------------------------------------------------


class TokenBucket:
    """``rate`` sends per second on average, bursts of up to ``burst``.

    ``take`` reserves the next slot and says how long to wait for it, so concurrent
    senders queue up in order instead of all waking at once."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("a rate is positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._updated: float | None = None

    def take(self, now: float) -> float:
        """Seconds to wait before sending (0: now)."""
        if self._updated is not None:
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            now = max(now, self._updated)
        self._updated = now
        self._tokens -= 1
        # A negative balance is the queue of reserved slots ahead of this one.
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateLimits:
    """A token bucket per channel; channels without a rate are not limited."""

    def __init__(self, rates: Mapping[str, float]) -> None:
        self._buckets = {channel: TokenBucket(rate) for channel, rate in rates.items()}

    def take(self, channel: str, now: float) -> float:
        bucket = self._buckets.get(channel)
        return bucket.take(now) if bucket is not None else 0.0
