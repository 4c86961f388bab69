"""The delivery ledger's decisions and the per-channel rate limits."""

from __future__ import annotations

import pytest

from delivery.ledger import (
    LedgerEntry,
    Pending,
    RateLimits,
    RetryPolicy,
    State,
    TokenBucket,
    after_fault,
    after_outcome,
    expired,
    release,
    retry_due,
    should_deliver,
)
from schemas.feedback import FeedbackStatus

NOW = 1_000_000
POLICY = RetryPolicy(max_attempts=3, first_delay_ms=30_000)
COMMAND = {"command_id": "c1", "user_id": "u1", "channel": "webhook"}


def delivered() -> LedgerEntry:
    return after_outcome(1, "delivered", None, None, [], "u1", "email", NOW)


def test_a_new_command_is_delivered_a_known_one_never_again() -> None:
    assert should_deliver(None)
    assert not should_deliver(delivered())
    failed = after_outcome(1, "failed", "no preset 'x'", None, [], "u1", "email", NOW)
    assert not should_deliver(failed)
    retrying = after_fault(1, "down", COMMAND, "u1", "webhook", NOW, POLICY)
    # Its retry is already queued: a duplicate of the command does not start another.
    assert not should_deliver(retrying)


def test_a_fault_is_retried_with_doubling_waits_then_fails_for_good() -> None:
    first = after_fault(1, "ConnectionError: refused", COMMAND, "u1", "webhook", NOW, POLICY)
    assert first.state is State.RETRYING
    assert first.retry_at == NOW + 30_000
    assert first.command == COMMAND
    assert first.pending == ()
    assert not retry_due(first, NOW + 29_999)
    assert retry_due(first, NOW + 30_000)
    second = after_fault(2, "ConnectionError: refused", COMMAND, "u1", "webhook", NOW, POLICY)
    assert second.retry_at == NOW + 60_000
    last = after_fault(3, "webhook answered 503", COMMAND, "u1", "webhook", NOW, POLICY)
    assert last.state is State.FAILED
    assert last.command is None
    assert last.retry_at is None
    assert last.pending == (
        Pending(FeedbackStatus.FAILED, NOW, "gave up after 3 attempts: webhook answered 503"),
    )


def test_a_retry_waits_what_the_provider_asked_if_longer_than_the_back_off() -> None:
    asked = after_fault(1, "busy", COMMAND, "u1", "sms", NOW, POLICY, retry_after_ms=600_000)
    assert asked.retry_at == NOW + 600_000
    assert not retry_due(asked, NOW + 30_000)
    assert retry_due(asked, NOW + 600_000)
    # A shorter wait than the back-off's: the back-off's.
    short = after_fault(1, "busy", COMMAND, "u1", "sms", NOW, POLICY, retry_after_ms=1_000)
    assert short.retry_at == NOW + 30_000
    # Never longer than the policy's longest wait, whatever the provider says.
    days = after_fault(1, "busy", COMMAND, "u1", "sms", NOW, POLICY, retry_after_ms=864_000_000)
    assert days.retry_at == NOW + POLICY.max_delay_ms
    # The stored line keeps the instant.
    assert LedgerEntry.from_json(asked.to_json()).retry_at == NOW + 600_000


def test_retry_waits_are_capped() -> None:
    policy = RetryPolicy(max_attempts=50, first_delay_ms=30_000, max_delay_ms=3_600_000)
    assert [policy.delay(n) for n in (1, 2, 3)] == [30_000, 60_000, 120_000]
    assert policy.delay(20) == 3_600_000


def test_an_outcome_with_later_feedback_waits_for_each_instant() -> None:
    entry = after_outcome(
        1,
        "delivered",
        None,
        NOW + 5_000,
        [("clicked", NOW + 9_000), ("opened", NOW + 7_000)],
        "u1",
        "push",
        NOW,
    )
    assert entry.state is State.DELIVERED
    assert [(p.status, p.at) for p in entry.pending] == [
        ("delivered", NOW + 5_000),
        ("opened", NOW + 7_000),
        ("clicked", NOW + 9_000),
    ]
    assert entry.next_due == NOW + 5_000
    assert release(entry, NOW + 4_999) == ([], entry)
    due, rest = release(entry, NOW + 7_000)
    assert [p.status for p in due] == ["delivered", "opened"]
    assert rest.next_due == NOW + 9_000
    due, rest = release(rest, NOW + 100_000)
    assert [p.status for p in due] == ["clicked"]
    assert rest.next_due is None
    assert rest.state is State.DELIVERED


def test_an_outcome_without_its_own_instant_happens_now() -> None:
    entry = after_outcome(1, "bounced", "mailbox full", None, [], "u1", "email", NOW)
    assert entry.pending == (Pending(FeedbackStatus.BOUNCED, NOW, "mailbox full"),)


def test_entries_round_trip_through_json() -> None:
    entries = [
        after_outcome(1, "delivered", None, NOW + 1, [("opened", NOW + 2)], "u1", "sms", NOW),
        after_fault(2, "down", COMMAND, "u1", "webhook", NOW, POLICY),
        after_fault(3, "down", COMMAND, "u1", "webhook", NOW, POLICY),
    ]
    for entry in entries:
        assert LedgerEntry.from_json(entry.to_json()) == entry


def test_final_lines_are_forgotten_after_the_retention_not_before() -> None:
    day = 86_400_000
    entry = after_outcome(1, "delivered", None, None, [], "u1", "email", NOW)
    _, settled = release(entry, NOW)
    assert not expired(settled, NOW + 30 * day, 30 * day)
    assert expired(settled, NOW + 30 * day + 1, 30 * day)
    # Something still to emit, or a retry to make: kept.
    assert not expired(entry, NOW + 365 * day, 30 * day)
    retrying = after_fault(1, "down", COMMAND, "u1", "webhook", NOW, POLICY)
    assert not expired(retrying, NOW + 365 * day, 30 * day)


def test_a_token_bucket_allows_a_burst_then_spaces_sends_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=2)
    assert [bucket.take(10.0) for _ in range(2)] == [0.0, 0.0]
    # Each further send reserves the next slot: half a second apart.
    assert bucket.take(10.0) == pytest.approx(0.5)
    assert bucket.take(10.0) == pytest.approx(1.0)
    # Time refills the bucket (the two reserved slots consumed first).
    assert bucket.take(12.0) == pytest.approx(0.0)
    assert bucket.take(20.0) == 0.0


def test_a_token_bucket_keeps_its_rate_over_many_sends() -> None:
    bucket = TokenBucket(rate=50)
    waits = [bucket.take(0.0) for _ in range(550)]
    # 50 at once (the burst), then 500 more over 10 seconds.
    assert waits[49] == 0.0
    assert waits[-1] == pytest.approx(10.0)


def test_a_clock_going_back_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(50.0) == pytest.approx(1.0)


def test_rate_limits_per_channel_and_none_for_the_others() -> None:
    limits = RateLimits({"sms": 1})
    assert limits.take("sms", 0.0) == 0.0
    assert limits.take("sms", 0.0) == pytest.approx(1.0)
    assert all(limits.take("email", 0.0) == 0.0 for _ in range(1000))
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate=0)
