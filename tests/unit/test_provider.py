"""What the provider adapters share (delivery/provider.py): Retry-After and the fault
the worker retries."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from delivery.provider import ProviderUnavailable, retry_after

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW.replace(minute=2), usegmt=True), 120.0),
        ("Tue, 01 Dec 2026 09:00:00 GMT", 0.0),  # past: now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_or_a_date(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, NOW.timestamp()) == seconds


def test_a_fault_adds_the_devices_found_gone_once() -> None:
    fault = ProviderUnavailable("busy", 30, ["d1"])
    more = fault.with_unregistered(["d2", "d1"])
    assert (str(more), more.retry_after, more.unregistered) == ("busy", 30, ("d1", "d2"))
