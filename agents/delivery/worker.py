"""The delivery worker: send commands in, messages out through the channel adapters,
feedback back on the feedback topic.

A send-commands record (a JSON array, one partition's users) is decoded like an input
record (``engine.intake``): a record that is not JSON, and each item that is not a
valid command, goes to the dead-letter topic with the reason; the other commands are
delivered. For each command, the ledger (a table keyed by command id, co-partitioned
with the commands) says whether it is new; a new one has its preset rendered, waits for
its channel's rate limit, goes to its channel's adapter, and the outcome is written in
the ledger with the feedback it implies. Feedback is emitted when the engine's clock
reaches its instant, never before: a simulated channel's opens wait in the ledger (and
in a timer queue rebuilt from it) until the clock topic's ticks (simulated time) or the
wall clock reach them. A provider fault is retried from the same queue with back-off.
The commands of a record are delivered concurrently, at most
``REACH_DELIVERY_CONCURRENCY`` provider calls at once per worker (retries included), and
the record is held for acknowledgement only once every one of them is settled in the
ledger.

Decisions are in ``delivery.ledger``; this module loads, calls, stores, sends.
Outputs (feedback records) are acknowledged before the ledger is flushed, and the
ledger before the input is committed (``streams.checkpoint``), so a replayed command
finds its ledger line and is not sent again; only a crash between a provider's call
and that flush sends again (with the same ``Idempotency-Key`` for webhooks).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from math import ceil
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from delivery.channels import ChannelAdapter, Message, Outcome, Result
from delivery.ledger import (
    LedgerEntry,
    RateLimits,
    RetryPolicy,
    after_fault,
    after_outcome,
    expired,
    release,
    retry_due,
    should_deliver,
)
from delivery.provider import ProviderUnavailable
from delivery.render import RenderFailure, render
from engine.codecs import InputCodec
from engine.intake import Intake, Source, intake
from engine.time import from_ms, to_ms
from schemas.commands import WEBHOOK, SendCommand
from schemas.devices import DeviceOp, DeviceUpdate, device_id
from schemas.feedback import Feedback
from schemas.presets import PresetDefinition
from streams.clock import Clock
from streams.settings import Settings
from streams.state import CoalescingTable, PartitionNotReady
from streams.state.timers import HeapTimers, Timers

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
MAX_RETRY_AFTER = 86_400.0
"""The longest ``Retry-After`` read (seconds); the retry policy caps the wait further."""
MAX_REASON, MAX_CHANNEL = 1024, 64
"""Feedback's ``reason`` and ``channel`` are at most this long."""
UNREGISTERED_REASON = "provider: Unregistered"
"""The reason of the device updates unregistering a device a provider said is gone."""
DUE_PER_ROUND = 500
"""Ledger lines released per hold of the lock: many at once must not stall commands."""


@dataclass(frozen=True, slots=True)
class Fault:
    """An attempt an adapter ended with an exception: retried later."""

    reason: str
    retry_after_ms: int | None = None
    """The wait the provider asked for (``Retry-After``), if it did."""
    unregistered: tuple[str, ...] = ()
    """The devices the provider said are gone in this attempt: unregistered at once."""


Attempt = Result | Fault


class DeliveryWorker:
    def __init__(
        self,
        table: CoalescingTable,
        adapters: Mapping[str, ChannelAdapter],
        settings: Settings,
        clock: Clock,
        presets: Callable[[], Mapping[str, PresetDefinition]],
        bootstrap: str,
        feedback_topic: str,
        timers: Timers | None = None,
        devices_topic: str = "",
    ) -> None:
        self.table = table
        self.devices_topic = devices_topic
        """Where the devices a provider said are gone are unregistered ("": nowhere)."""
        self.adapters = dict(adapters)
        self.clock = clock
        self.presets = presets
        self.bootstrap = bootstrap
        self.feedback_topic = feedback_topic
        self.timers: Timers = timers if timers is not None else HeapTimers()
        self.limits = RateLimits(settings.delivery_rate_per_second)
        self.policy = RetryPolicy(
            settings.delivery_max_attempts, round(settings.delivery_retry_seconds * 1000)
        )
        self.retention_ms = settings.delivery_ledger_days * DAY_MS
        # One gate for the worker: commands and retries share its provider calls.
        self.gate = asyncio.Semaphore(settings.delivery_concurrency)
        # The engine wrote these records: no size limit, a large record is still valid.
        self.codec = InputCodec(SendCommand, sys.maxsize)
        self.counts: Counter[str] = Counter()
        # Ledger writes and their feedback are queued under the lock, and flushed under
        # it: the ledger never reaches the changelog before its feedback is sent.
        self.lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self._last_sent: dict[int, asyncio.Future[Any]] = {}
        self._out: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._gone: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._adapters_started = False
        self._starting = asyncio.Lock()
        self._swept: dict[int, int] = {}

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            await self._producer.start()
        await self._start_adapters()

    async def _start_adapters(self) -> None:
        if self._adapters_started:
            return
        async with self._starting:
            if self._adapters_started:
                return
            for adapter in _distinct(self.adapters):
                try:
                    await adapter.start()
                except Exception:
                    # Its sends then fail as faults, retried: no reason to stop the others.
                    log.exception("channel adapter %r did not start", adapter)
            self._adapters_started = True

    async def stop(self) -> None:
        if self._adapters_started:
            for adapter in _distinct(self.adapters):
                await adapter.stop()
            self._adapters_started = False
        if self._producer is not None:
            await self.flush_outputs()
            await self._producer.stop()
            self._producer = None

    def status(self) -> dict[str, Any]:
        return {**dict(sorted(self.counts.items())), "waiting": self.timers.count()}

    async def flush_outputs(self) -> None:
        """Wait until every feedback record sent so far is acknowledged."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def flush(self) -> None:
        """Feedback acknowledged, then the ledger that counts it written (the order
        ``CoalescingTable`` needs); for ``checkpoint.before_ack``."""
        async with self.lock:
            await self.flush_outputs()
            await self.table.flush()

    # --- commands ---------------------------------------------------------------------

    def decode(self, raw: bytes, source: Source) -> Intake[SendCommand]:
        """The valid commands of a send-commands record, and the dead letters of the
        rest: the whole record when it is not JSON (its bytes as they came), or each
        invalid item of an array (the item's JSON, with its index)."""
        decoded = intake(self.codec, raw, source, datetime.now(UTC))
        for letter in decoded.dead:
            index = "" if letter.source_index is None else f"[{letter.source_index}]"
            log.warning(
                "send commands at %d/%d%s dead-lettered: %s: %s",
                source.partition,
                source.offset,
                index,
                letter.reason.value,
                letter.detail,
            )
        self.counts["invalid"] += len(decoded.dead)
        return decoded

    async def deliver(self, partition: int, offset: int, commands: list[SendCommand]) -> None:
        """Deliver the new ones of a record's commands (all of ``partition``), at once
        up to the concurrency; returns when each is settled in the ledger."""
        # In simulated time, the ledger's now is the partition's clock or the newest
        # command's own instant, whichever is later; no clock moves.
        at = self.clock.at(partition)
        if self.clock.simulated and commands:
            at = max(at, *(command.at for command in commands))
        fresh: dict[str, SendCommand] = {}
        for command in commands:
            if command.command_id in fresh:
                continue  # twice in one record
            if should_deliver(self._entry(partition, command.command_id)):
                fresh[command.command_id] = command
            else:
                self.counts["duplicates"] += 1
        if not fresh:
            return
        attempts = await self._attempt_all(list(fresh.values()))
        async with self.lock:
            if partition not in self.table.partitions:
                # Released while sending: its new owner reads the record again and,
                # without these ledger lines, sends again; the adapters' idempotency
                # keys (webhook) and message ids (email) let providers drop the repeat.
                log.warning(
                    "partition %d moved during delivery: %d commands may be sent again",
                    partition,
                    len(fresh),
                )
                return
            now = to_ms(at)
            for command, attempt in zip(fresh.values(), attempts, strict=True):
                entry = self._decided(command, 1, attempt, now)
                self._settle(partition, command.command_id, entry, None, offset, now)
                self._unregister(partition, command, attempt, now)
            await self._send(partition)

    async def _attempt_all(self, commands: list[SendCommand]) -> list[Attempt]:
        """Each command's attempt, concurrently through the worker's gate, in order."""

        async def one(command: SendCommand) -> Attempt:
            async with self.gate:
                return await self._attempt(command)

        return list(await asyncio.gather(*(one(command) for command in commands)))

    async def _attempt(self, command: SendCommand) -> Attempt:
        """The adapter's result, or the fault that stopped it."""
        message = self._message(command)
        if isinstance(message, Outcome):
            return Result(message)
        adapter = self.adapters.get(command.channel)
        if adapter is None:
            return Result(Outcome("failed", f"no adapter for channel {command.channel}"))
        wait = self.limits.take(command.channel, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        await self._start_adapters()
        try:
            return await adapter.deliver(message)
        except Exception as error:
            log.warning("%s: %s adapter failed: %r", command.command_id, command.channel, error)
            self.counts["faults"] += 1
            reason = f"{type(error).__name__}: {error}"
            if isinstance(error, ProviderUnavailable):
                asked = error.retry_after
                return Fault(
                    reason,
                    None if asked is None else ceil(min(asked, MAX_RETRY_AFTER) * 1000),
                    error.unregistered,
                )
            return Fault(reason)

    def _message(self, command: SendCommand) -> Message | Outcome:
        """The command with its content rendered, or why it cannot be sent."""
        if command.preset is None:
            if command.channel == WEBHOOK:
                return Message(command, None)
            return Outcome("failed", "the command names no preset")
        preset = self.presets().get(command.preset)
        if preset is None:
            return Outcome("failed", f"no preset '{command.preset}'")
        if command.channel != WEBHOOK and preset.channel != command.channel:
            return Outcome(
                "failed",
                f"preset '{preset.id}' is for {preset.channel}, the command for {command.channel}",
            )
        try:
            rendered = render(preset, command.tags, command.properties, command.user_id)
        except Exception as error:  # a bug must fail the message, not stop the worker
            log.exception("%s: rendering preset '%s' failed", command.command_id, preset.id)
            return Outcome("failed", f"preset '{preset.id}' v{preset.version}: {error!r}")
        if isinstance(rendered, RenderFailure):
            return Outcome("failed", f"preset '{preset.id}' v{preset.version}: {rendered.message}")
        return Message(command, rendered)

    def _decided(
        self, command: SendCommand, attempts: int, attempt: Attempt, now: int
    ) -> LedgerEntry:
        if isinstance(attempt, Fault):
            return after_fault(
                attempts,
                attempt.reason,
                command.model_dump(mode="json"),
                command.user_id,
                command.channel,
                now,
                self.policy,
                attempt.retry_after_ms,
            )
        outcome = attempt.outcome
        self.counts[outcome.status] += 1
        return after_outcome(
            attempts,
            outcome.status,
            outcome.reason,
            to_ms(outcome.at) if outcome.at is not None else None,
            [(later.status, to_ms(later.at)) for later in attempt.later],
            command.user_id,
            command.channel,
            now,
        )

    # --- the clock --------------------------------------------------------------------

    async def release(self, partition: int, now: datetime) -> int:
        """Emit the feedback due by ``now`` and retry the faults due by then, for the
        ledger lines of ``partition``; returns how many lines moved."""
        now_ms = to_ms(now)
        moved = 0
        while True:
            retries: list[tuple[str, LedgerEntry, int]] = []
            async with self.lock:
                if partition not in self.table.partitions:
                    return moved  # released meanwhile
                for at, key in self.timers.pop_due(partition, now_ms, DUE_PER_ROUND):
                    found = self._stored(partition, key)
                    if found is None or found[0].next_due != at:
                        continue  # stale: the line moved on since
                    entry, offset = found
                    if retry_due(entry, now_ms):
                        retries.append((key, entry, offset))
                    else:
                        self._settle(partition, key, entry, at, offset, now_ms)
                    moved += 1
                await self._send(partition)
                more = self.timers.has_due(partition, now_ms)
            if retries:
                await self._retry(partition, retries, now_ms)
            if not more:
                break
            await asyncio.sleep(0)  # let commands in between rounds
        await self._sweep(partition, now_ms)
        return moved

    async def _retry(
        self, partition: int, retries: list[tuple[str, LedgerEntry, int]], now: int
    ) -> None:
        commands = [SendCommand.model_validate(entry.command) for _, entry, _ in retries]
        attempts = await self._attempt_all(commands)
        async with self.lock:
            if partition not in self.table.partitions:
                return  # released meanwhile: its new owner retries again
            for (key, entry, offset), command, attempt in zip(
                retries, commands, attempts, strict=True
            ):
                decided = self._decided(command, entry.attempts + 1, attempt, now)
                self._settle(partition, key, decided, entry.next_due, offset, now)
                self._unregister(partition, command, attempt, now)
            await self._send(partition)

    async def _sweep(self, partition: int, now: int) -> None:
        """Once a day per partition: forget final lines older than the retention."""
        last = self._swept.setdefault(partition, now)
        if now - last < DAY_MS:
            return
        self._swept[partition] = now
        async with self.lock:
            try:
                lines = list(self.table.items(partition))
            except PartitionNotReady:
                return
            for key, stored in lines:
                if expired(LedgerEntry.from_json(stored.value), now, self.retention_ms):
                    self.table.delete(partition, key, stored.applied_offset)
                    self.counts["forgotten"] += 1

    # --- recovery ---------------------------------------------------------------------

    async def on_recovered(self, partitions: set[int]) -> None:
        """Rebuild the timer queues from the recovered ledger."""
        await self.start()
        for partition in partitions:
            self.timers.reset(partition)
            self._swept.pop(partition, None)
            for key, stored in self.table.items(partition):
                due = LedgerEntry.from_json(stored.value).next_due
                if due is not None:
                    self.timers.push(partition, due, key)

    def on_released(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.timers.reset(partition)
            self._out.pop(partition, None)
            self._gone.pop(partition, None)

    # --- helpers ----------------------------------------------------------------------

    def _stored(self, partition: int, key: str) -> tuple[LedgerEntry, int] | None:
        stored = self.table.get(partition, key)
        if stored is None:
            return None
        return LedgerEntry.from_json(stored.value), stored.applied_offset

    def _entry(self, partition: int, key: str) -> LedgerEntry | None:
        found = self._stored(partition, key)
        return found[0] if found is not None else None

    def _settle(
        self,
        partition: int,
        key: str,
        entry: LedgerEntry,
        previous_due: int | None,
        offset: int,
        now: int,
    ) -> None:
        """Store the line with what is due by ``now`` taken out and queued as feedback,
        and queue the line's next instant."""
        due, entry = release(entry, now)
        self.table.put(partition, key, entry.to_json(), applied_offset=offset)
        records = self._out[partition]
        for pending in due:
            feedback = Feedback(
                command_id=key,
                user_id=entry.user_id,
                status=pending.status,
                timestamp=from_ms(pending.at),
                channel=entry.channel[:MAX_CHANNEL],
                reason=pending.reason[:MAX_REASON] if pending.reason else None,
            )
            records.append(feedback.model_dump(mode="json"))
            self.counts["feedback"] += 1
        following = entry.next_due
        if following is not None:
            self.timers.push(partition, following, key, replaces=previous_due)
        elif previous_due is not None:
            self.timers.cancel(partition, previous_due, key)

    def _unregister(self, partition: int, command: SendCommand, attempt: Attempt, now: int) -> None:
        """Queue the unregistering of the command's devices the provider said are gone
        (whether the attempt ended or is to be retried): device updates for the user's
        partition of the devices topic."""
        if not attempt.unregistered or not self.devices_topic:
            return
        at = from_ms(now)
        # Named by the device itself where the command has it, so the projected row
        # keeps its kind and platform; by id otherwise.
        known = {device_id(device): device for device in command.devices}
        for gone in dict.fromkeys(attempt.unregistered):
            device = known.get(gone)
            update = DeviceUpdate(
                user_id=command.user_id,
                op=DeviceOp.UNREGISTER,
                device=device,
                device_id=gone,
                reason=UNREGISTERED_REASON,
                timestamp=at,
            )
            # Not exclude_defaults: a device's ``kind`` is its default, and names it.
            self._gone[partition].append(update.model_dump(mode="json", exclude_none=True))
            self.counts["unregistered"] += 1

    async def _send(self, partition: int) -> None:
        """The queued feedback of ``partition`` as one record (a JSON array), in that
        partition: the users' partition on every topic; and so the devices to
        unregister, on the devices topic."""
        gone = self._gone.pop(partition, None)
        if gone and self._producer is not None:
            sent = await self._producer.send(
                self.devices_topic, orjson.dumps(gone), partition=partition
            )
            self._pending.append(sent)
        records = self._out.pop(partition, None)
        if not records or self._producer is None:
            return
        value = orjson.dumps(records)
        sent = await self._producer.send(self.feedback_topic, value, partition=partition)
        self._pending.append(sent)
        self._last_sent[partition] = sent

    async def feedback_offset(self, partition: int) -> int | None:
        """The offset of the last feedback record sent to ``partition``, once the broker
        has it (None: none sent by this process)."""
        sent = self._last_sent.get(partition)
        if sent is None:
            return None
        try:
            metadata = await asyncio.shield(sent)
        except Exception as error:  # the checkpoint's flush reports it too
            log.warning("feedback to partition %d was not sent: %r", partition, error)
            return None
        offset = getattr(metadata, "offset", None)
        return offset if isinstance(offset, int) else None


def _distinct(adapters: Mapping[str, ChannelAdapter]) -> list[ChannelAdapter]:
    """Each adapter once, though it may serve several channels."""
    return list({id(adapter): adapter for adapter in adapters.values()}.values())
