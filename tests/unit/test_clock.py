"""The engine's clock (streams/clock.py): per-partition simulated time, inputs at their
own timestamp, and how far each input partition is handled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from streams.clock import EPOCH, Clock, InputProgress

T0 = datetime(2026, 12, 10, 8, tzinfo=UTC)


def test_simulated_time_moves_by_partition_and_never_back() -> None:
    clock = Clock("simulated")
    assert not clock.started
    assert clock.now() == EPOCH
    assert clock.apply(0, T0) == T0
    assert clock.apply(0, T0 - timedelta(hours=1)) == T0  # an older tick moves nothing
    assert clock.at(0) == T0
    assert clock.at(1) == EPOCH  # no tick applied there
    assert clock.now() == T0
    assert clock.started
    assert clock.status()["partitions"] == {"0": T0.isoformat()}


def test_an_input_is_evaluated_at_its_own_timestamp_and_moves_no_clock() -> None:
    clock = Clock("simulated")
    clock.apply(0, T0)
    later = T0 + timedelta(days=3)
    assert clock.at_input(later) == later
    assert clock.at_input(T0 - timedelta(days=1)) == T0 - timedelta(days=1)
    assert clock.at(0) == T0
    assert clock.now() == T0


def test_a_restart_recovers_the_newest_tick_and_each_partitions_applied_one() -> None:
    clock = Clock("simulated")
    clock.recover(T0 + timedelta(hours=2), {0: T0, 1: T0 + timedelta(hours=1)})
    assert clock.now() == T0 + timedelta(hours=2)
    assert clock.at(1) == T0 + timedelta(hours=1)
    # A tick replayed after the restart is applied as it comes, not pushed ahead.
    assert clock.apply(0, T0 - timedelta(hours=1)) == T0 - timedelta(hours=1)
    assert clock.status()["partitions"] == {
        "0": (T0 - timedelta(hours=1)).isoformat(),
        "1": (T0 + timedelta(hours=1)).isoformat(),
    }


def test_the_wall_clock_ignores_ticks() -> None:
    clock = Clock("wall")
    before = datetime.now(UTC)
    assert clock.started
    assert clock.at_input(T0) >= before
    assert clock.at(3) >= before


async def test_progress_counts_handled_records_and_committed_offsets() -> None:
    progress = InputProgress()
    assert progress.reached(0, {}, {})
    assert not progress.reached(0, {"events": 2}, {})
    progress.passed("events", 0, 0)
    assert not progress.reached(0, {"events": 2}, {})
    assert progress.reached(0, {"events": 2}, {"events": 5})  # handled before this process
    waiting = asyncio.ensure_future(progress.changed(["events"], 0, timeout=5))
    await asyncio.sleep(0)
    progress.passed("events", 0, 1)
    await asyncio.wait_for(waiting, 1)
    assert progress.reached(0, {"events": 2}, {})
    assert not progress.reached(1, {"events": 2}, {})  # another partition
