"""Connects a CoalescingTable to a Faust app's partition assignment.

Verified in faust-streaming 0.15.3 (``faust/app/base.py``, ``faust/tables/recovery.py``):

- ``App._on_partitions_revoked`` pauses the assigned partitions, clears the stream
  buffers, waits for the agents to finish the event in hand (``stream_wait_empty``) and
  flushes the producer; only then does it send ``on_partitions_revoked``. Releasing there
  cannot pull state from under a running agent. aiokafka rebalances eagerly, so every
  member revokes before any member gets its new assignment: a RocksDB partition is closed
  by its old owner before a new owner on the same host opens it.
- ``App._on_partitions_assigned`` pauses all assigned partitions and leaves resuming
  them to the recovery service. That service resumes the stream partitions either in
  ``Recovery._resume_streams`` (app without Faust tables) or in
  ``Recovery.on_recovery_completed`` (after Faust's own tables recovered), and both
  ``await app.on_rebalance_complete.send()`` *before* ``consumer.resume_partitions``.
  The ``on_partitions_assigned`` signal gives no such guarantee: the recovery service
  runs in its own task and may resume the partitions while a receiver of that signal
  is still waiting on I/O (measured: with recovery moved there, the agents of
  tests/integration/test_state_recovery.py read partitions not yet recovered). So
  recovery runs in ``on_rebalance_complete``, reading the assignment from the consumer.
- ``on_recovery_completed`` runs under ``Recovery._wait``, which cancels it if another
  rebalance starts; a cancelled ``recover`` leaves its partitions not ready, and the
  next rebalance recovers them.
- Signal receivers are held strongly by default (``weak=False`` in mode's ``connect``).

The memory store re-reads its partitions' changelog on every rebalance, since the eager
protocol revokes everything; the rocksdb store only reads what it has not persisted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from streams.state.lease import Lease
from streams.state.table import CoalescingTable


def _partitions_of(tps: Iterable[Any], topic: str) -> set[int]:
    return {tp.partition for tp in tps if tp.topic == topic}


def attach_to_faust(
    app: Any,
    table: CoalescingTable,
    topic: str,
    on_recovered: Callable[[set[int]], Awaitable[None]] | None = None,
    on_released: Callable[[set[int]], None] | None = None,
    lease: Lease | None = None,
) -> None:
    """Serve ``table`` for the partitions of ``topic`` (its input) assigned to ``app``;
    ``on_recovered`` runs once they are readable, before their streams resume. A new
    assignment renews ``lease``."""

    async def on_partitions_revoked(sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        released = _partitions_of(revoked, topic)
        # The owner of the table first: its work on these partitions stops (and sends
        # nothing more) before their state leaves.
        if on_released is not None:
            on_released(released)
        await table.release(released)

    async def on_rebalance_complete(sender: Any, **_: Any) -> None:
        assigned = _partitions_of(app.consumer.assignment(), topic)
        released = table.partitions - assigned
        if on_released is not None:
            on_released(set(released))
        await table.release(released)
        if lease is not None:
            lease.renew()
        await table.start()  # the first assignment may come before any service starts
        await table.recover(assigned)
        if on_recovered is not None:
            await on_recovered(assigned)

    app.on_partitions_revoked.connect(on_partitions_revoked)
    app.on_rebalance_complete.connect(on_rebalance_complete)
