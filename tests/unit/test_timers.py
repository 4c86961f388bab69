"""Timer queues: both kinds pop due timers in order, replaced timers never fire at their
old instant, and the RocksDB queue holds one entry per key."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.state.timers import HeapTimers, RocksDBTimers, Timers


@pytest.fixture(params=["heap", "rocksdb"])
def timers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Timers]:
    queue: Timers = HeapTimers() if request.param == "heap" else RocksDBTimers(tmp_path, "t")
    yield queue
    queue.close()


def live(queue: Timers, popped: list[tuple[int, str]], current: dict[str, int]) -> list[str]:
    """The popped timers that are still current (the caller's staleness check)."""
    return [key for due, key in popped if current.get(key) == due]


def test_due_timers_pop_in_order_up_to_the_limit(timers: Timers) -> None:
    for due, key in [(30, "c"), (-5, "before-1970"), (10, "a"), (20, "b"), (99, "later")]:
        timers.push(0, due, key)
    timers.push(1, 1, "other-partition")
    assert timers.has_due(0, 20)
    assert timers.pop_due(0, 30, limit=2) == [(-5, "before-1970"), (10, "a")]
    assert timers.pop_due(0, 30, limit=10) == [(20, "b"), (30, "c")]
    assert not timers.has_due(0, 98)
    assert timers.pop_due(0, 98, limit=10) == []
    assert timers.pop_due(1, 98, limit=10) == [(1, "other-partition")]
    timers.push(0, 5, "early")  # below everything popped so far
    assert timers.pop_due(0, 100, limit=10) == [(5, "early"), (99, "later")]


def test_replaced_and_cancelled_timers_do_not_fire(timers: Timers) -> None:
    current = {"u1": 50, "u2": 10}
    timers.push(0, 10, "u1")
    timers.push(0, 50, "u1", replaces=10)
    timers.push(0, 10, "u2")
    timers.cancel(0, 10, "u2")
    del current["u2"]
    assert live(timers, timers.pop_due(0, 100, limit=10), current) == ["u1"]


def test_rocksdb_queue_keeps_one_entry_per_key_and_resets(tmp_path: Path) -> None:
    timers = RocksDBTimers(tmp_path, "t")
    for due in range(1000):
        timers.push(0, due + 1, "u1", replaces=due if due else None)
    assert timers.count() == 1
    timers.reset(0)
    assert timers.count() == 0
    assert timers.pop_due(0, 10_000, limit=10) == []
    timers.close()


@pytest.mark.parametrize("batch", [1, 3, 10_000])
def test_rocksdb_queue_agrees_with_a_model_whatever_is_still_unwritten(
    tmp_path: Path, batch: int
) -> None:
    """Changes gathered before a write (a key moved back and forth, cancelled, set
    again) leave the queue as if each had been written at once."""
    rng = random.Random(batch)
    timers = RocksDBTimers(tmp_path, "t", batch=batch)
    current: dict[str, int] = {}  # the model: key -> due
    for number in range(3000):
        key = f"u{rng.randrange(12)}"
        action = rng.random()
        if action < 0.6:
            due = rng.randrange(8) * 25  # few instants: a key often returns to one
            timers.push(0, due, key, replaces=current.get(key))
            current[key] = due
        elif action < 0.8 and key in current:
            timers.cancel(0, current.pop(key), key)
        elif action < 0.9:
            assert timers.count() == len(current)
        else:
            now = rng.randrange(200)
            popped = timers.pop_due(0, now, limit=5)
            expected = sorted((due, key) for key, due in current.items() if due <= now)[:5]
            assert popped == expected, number
            for _, key in popped:
                del current[key]
    assert timers.count() == len(current)
    assert timers.pop_due(0, 10_000, limit=100) == sorted(
        (due, key) for key, due in current.items()
    )
    timers.close()
