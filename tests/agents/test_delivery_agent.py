"""The delivery worker in Faust's test context: the real agents read send-commands and
clock records, the ledger lives in a coalescing table, adapters are stand-ins (or the
real simulator), and feedback records are kept instead of sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from agents.delivery.worker import DeliveryWorker
from delivery.channels import Message, Outcome, Result
from delivery.provider import ProviderUnavailable
from delivery.simulator import SimulatedChannels
from schemas import DeadLetter, DeadLetterReason
from schemas.commands import SendCommand
from schemas.definitions import PresetApplied
from schemas.presets import PresetDefinition
from streams.settings import Settings, SimulatedChannel
from streams.state import CoalescingTable, MemoryChangelog, MemoryStore
from tests.agents.conftest import Worker
from tests.agents.test_segment_agent import Outputs
from worker.app import create_app

NOW = datetime(2026, 12, 10, 8, tzinfo=UTC)

HELLO = PresetDefinition.model_validate(
    {
        "id": "hello",
        "name": "Hello",
        "channel": "email",
        "content": {
            "sender": "Reach <hello@reach.example>",
            "subject": "Hi {{tag.First Name}}",
            "text": "Your plan: {{property.plan|free}}",
        },
        "version": 3,
    }
)


@dataclass
class Recording:
    """An adapter that keeps what it is given and answers ``answers`` in turn (the last
    one from then on); an exception in there is raised."""

    channels: frozenset[str] = frozenset({"email", "webhook"})
    answers: list[Result | Exception] = field(
        default_factory=lambda: [Result(Outcome("delivered"))]
    )
    messages: list[Message] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, message: Message) -> Result:
        self.messages.append(message)
        answer = self.answers[min(len(self.messages), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class Slow(Recording):
    """A recording adapter whose calls take ``delay`` seconds; counts how many are in
    flight at once."""

    delay: float = 0.05
    active: int = 0
    most: int = 0

    async def deliver(self, message: Message) -> Result:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(self.delay)
            return await super().deliver(message)
        finally:
            self.active -= 1


def command(n: int, channel: str = "email", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "command_id": f"welcome:1:1-now:{channel}:1:{n:016d}",
        "user_id": f"u{n}",
        "channel": channel,
        "preset": "hello",
        "journey_id": "welcome",
        "journey_version": 1,
        "run": "1-now",
        "step": channel,
        "visit": 1,
        "at": NOW.isoformat(),
        "address": f"u{n}@example.com",
        "tags": {"First Name": f"Ana {n}"},
        "properties": {"plan": "gold"},
    }
    return values | fields


def record(*commands: dict[str, Any]) -> bytes:
    return orjson.dumps(list(commands))


async def ready(
    worker: Worker, adapter: Any = None, changelog: MemoryChangelog | None = None
) -> tuple[DeliveryWorker, Outputs]:
    """The worker's delivery side, with its ledger in an in-process changelog (the test
    context has no rebalance to recover it), the presets folded and read."""
    delivery: DeliveryWorker = worker.system.delivery
    partitions = worker.engine.settings.partitions
    delivery.table = CoalescingTable(changelog or MemoryChangelog(partitions), MemoryStore())
    outputs = Outputs()
    delivery._producer = outputs
    if adapter is not None:
        delivery.adapters = {"email": adapter, "webhook": adapter}
    await delivery.table.start()
    await delivery.table.recover(range(partitions))
    await delivery.on_recovered(set(range(partitions)))
    definitions = worker.engine.definitions
    definitions.registry.fold(PresetApplied(definition=HELLO, at=NOW))
    definitions.ready.set()
    return delivery, outputs


def feedback(outputs: Outputs, worker: Worker) -> list[dict[str, Any]]:
    topic = worker.engine.topics.feedback
    return [item for name, _, items in outputs.sent if name == topic for item in items]


def letters(worker: Worker) -> list[DeadLetter]:
    return [DeadLetter.from_record(s.value, s.key, s.headers) for s in worker.dead_letters()]


def tick(at: datetime) -> bytes:
    return orjson.dumps({"now": at.isoformat()})


async def test_a_command_delivered_twice_is_sent_once(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    adapter = Recording()
    delivery, outputs = await ready(worker, adapter)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(command(1)), partition=1)
        await driver.put(record(command(1)), partition=1)  # redelivered
        await driver.put(record(command(1), command(2), command(2)), partition=1)

    assert [m.command.command_id for m in adapter.messages] == [
        command(1)["command_id"],
        command(2)["command_id"],
    ]
    sent = feedback(outputs, worker)
    assert [(f["command_id"], f["status"]) for f in sent] == [
        (command(1)["command_id"], "delivered"),
        (command(2)["command_id"], "delivered"),
    ]
    assert {partition for _, partition, _ in outputs.sent} == {1}
    assert sent[0]["user_id"] == "u1"
    assert sent[0]["channel"] == "email"
    assert delivery.counts["duplicates"] == 2
    # The content was rendered for the user from the command's tags and properties.
    content = adapter.messages[0].content
    assert content is not None
    assert content.content.subject == "Hi Ana 1"  # type: ignore[union-attr]
    assert content.content.text == "Your plan: gold"  # type: ignore[union-attr]
    assert content.version == 3


async def test_the_ledger_survives_a_restart(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    adapter = Recording()
    changelog = MemoryChangelog(worker.engine.settings.partitions)
    delivery, _ = await ready(worker, adapter, changelog)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(command(1)), partition=0)
    await worker.engine.checkpoint.commit()  # feedback acknowledged, then the ledger
    assert delivery.table.dirty_count == 0

    # Another worker takes the partition over and is given the command again.
    again = make_worker()
    other = Recording()
    _, outputs = await ready(again, other, changelog)
    async with drive(again, "delivery-commands") as driver:
        await driver.put(record(command(1), command(2)), partition=0)
    assert [m.command.user_id for m in other.messages] == ["u2"]
    assert [f["user_id"] for f in feedback(outputs, again)] == ["u2"]


async def test_what_cannot_be_rendered_or_sent_gives_failed_feedback(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    adapter = Recording()
    _, outputs = await ready(worker, adapter)
    nameless = command(1, tags={})
    ghost = command(2, preset="ghost")
    elsewhere = command(3, channel="fax", preset=None)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(nameless, ghost, elsewhere), partition=0)

    assert adapter.messages == []
    sent = {f["user_id"]: f for f in feedback(outputs, worker)}
    assert {f["status"] for f in sent.values()} == {"failed"}
    assert sent["u1"]["reason"] == (
        "preset 'hello' v3: subject: no value for {{tag.First Name}} and no default"
    )
    assert sent["u2"]["reason"] == "no preset 'ghost'"
    assert sent["u3"]["reason"] == "the command names no preset"
    fax = command(4, channel="fax", preset="hello")
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(fax), partition=0)
    assert feedback(outputs, worker)[-1]["reason"] == (
        "preset 'hello' is for email, the command for fax"
    )


async def test_a_webhook_needs_no_preset(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    adapter = Recording()
    _, outputs = await ready(worker, adapter)
    hook = command(1, channel="webhook", preset=None, url="https://hooks.example/x")
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(hook), partition=0)
    [message] = adapter.messages
    assert message.content is None
    assert message.command.url == "https://hooks.example/x"
    assert [f["status"] for f in feedback(outputs, worker)] == ["delivered"]


async def test_a_channel_without_an_adapter_fails(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    delivery, outputs = await ready(worker, Recording())
    del delivery.adapters["email"]
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(command(1)), partition=0)
    [sent] = feedback(outputs, worker)
    assert (sent["status"], sent["reason"]) == ("failed", "no adapter for channel email")


async def test_simulated_opens_wait_for_the_clock(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    # A delivery worker of its own: in role all the segment clock releases feedback.
    worker = make_worker(
        role="delivery",
        clock="simulated",
        simulator={"email": SimulatedChannel(delivered=1, opened=1, clicked=0, open_hours=2)},
    )
    simulator = SimulatedChannels(worker.engine.settings)
    delivery, outputs = await ready(worker, simulator)
    async with drive(worker, "delivery-commands") as commands:
        await commands.put(record(command(1), command(2)), partition=1)
    # Delivered a few simulated seconds after the command: not before a tick says so
    # (a command moves no clock).
    assert worker.engine.clock.at(1) < NOW
    assert feedback(outputs, worker) == []
    assert delivery.status()["waiting"] == 2

    async with drive(worker, "delivery-clock") as clock:
        await clock.put(tick(NOW + timedelta(minutes=1)), key=None, partition=1)
        delivered = feedback(outputs, worker)
        assert [f["status"] for f in delivered] == ["delivered", "delivered"]
        await clock.put(tick(NOW + timedelta(days=5)), key=None, partition=1)
    sent = feedback(outputs, worker)
    assert [f["status"] for f in sent] == ["delivered", "delivered", "opened", "opened"]
    decided = set()
    for n in (1, 2):
        fate = await simulator.deliver(Message(SendCommand.model_validate(command(n)), None))
        decided |= {(later.status, later.at.isoformat()) for later in fate.later}
    assert {(f["status"], f["timestamp"].replace("Z", "+00:00")) for f in sent[2:]} == decided
    # Each at the instant the simulator decided, between the ticks that released it.
    for item in sent[2:]:
        at = datetime.fromisoformat(item["timestamp"])
        assert NOW + timedelta(minutes=1) < at <= NOW + timedelta(days=5)
    assert delivery.status()["waiting"] == 0


async def test_a_provider_fault_is_retried_later_then_given_up(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(
        role="delivery", clock="simulated", delivery_max_attempts=3, delivery_retry_seconds=60
    )
    flaky = Recording(answers=[ConnectionError("down"), Result(Outcome("delivered"))])
    delivery, outputs = await ready(worker, flaky)
    broken = Recording(answers=[ConnectionError("still down")])
    async with drive(worker, "delivery-commands") as commands:
        await commands.put(record(command(1)), partition=0)
        assert feedback(outputs, worker) == []
        # Sent again meanwhile: the retry is already planned, no second call now.
        await commands.put(record(command(1)), partition=0)
    assert len(flaky.messages) == 1

    async with drive(worker, "delivery-clock") as clock:
        await clock.put(tick(NOW + timedelta(seconds=59)), key=None, partition=0)
        assert len(flaky.messages) == 1
        await clock.put(tick(NOW + timedelta(seconds=60)), key=None, partition=0)
    assert len(flaky.messages) == 2
    [sent] = feedback(outputs, worker)
    assert sent["status"] == "delivered"
    assert sent["timestamp"] == "2026-12-10T08:01:00Z"

    delivery.adapters["email"] = broken
    async with drive(worker, "delivery-commands") as commands:
        await commands.put(record(command(2)), partition=0)
    for seconds in (120, 240, 600):  # waits of 60 s, then 120 s
        await delivery.release(0, NOW + timedelta(seconds=seconds))
    assert len(broken.messages) == 3
    failed = feedback(outputs, worker)[-1]
    assert failed["status"] == "failed"
    assert failed["reason"] == "gave up after 3 attempts: ConnectionError: still down"


async def test_a_retry_waits_for_the_providers_retry_after(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(
        role="delivery", clock="simulated", delivery_max_attempts=3, delivery_retry_seconds=60
    )
    busy = Recording(
        answers=[ProviderUnavailable("slow down", retry_after=600), Result(Outcome("delivered"))]
    )
    delivery, outputs = await ready(worker, busy)
    async with drive(worker, "delivery-commands") as commands:
        await commands.put(record(command(1)), partition=0)
    assert len(busy.messages) == 1
    # Not at the worker's own back-off (60 s): the provider asked for 10 minutes.
    await delivery.release(0, NOW + timedelta(seconds=60))
    await delivery.release(0, NOW + timedelta(seconds=599))
    assert len(busy.messages) == 1
    await delivery.release(0, NOW + timedelta(seconds=600))
    assert len(busy.messages) == 2
    [sent] = feedback(outputs, worker)
    assert (sent["status"], sent["timestamp"]) == ("delivered", "2026-12-10T08:10:00Z")


async def test_sends_on_a_limited_channel_are_spaced(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(delivery_rate_per_second={"email": 20})
    adapter = Recording()
    await ready(worker, adapter)
    started = time.monotonic()
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(*(command(n) for n in range(30))), partition=0)
    # 20 at once (a second's worth), the other 10 at 20 a second.
    assert time.monotonic() - started >= 0.45
    assert len(adapter.messages) == 30


async def test_invalid_send_commands_go_to_the_dead_letter_topic(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    adapter = Recording()
    delivery, outputs = await ready(worker, adapter)
    not_json = b'[{"command_id": "welcome:1'
    nameless = {key: value for key, value in command(2).items() if key != "user_id"}
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(not_json, key=b"u0", partition=2)
        await driver.put(record(command(1), nameless, command(3, visit="twice")), partition=2)
        await driver.put(record(command(4)), partition=2)  # the stream flows on

    # The valid commands of the mixed record, and the next record, are delivered.
    assert [m.command.user_id for m in adapter.messages] == ["u1", "u4"]
    assert [f["user_id"] for f in feedback(outputs, worker)] == ["u1", "u4"]
    assert delivery.counts["invalid"] == 3
    whole, *items = worker.dead_letters()
    # A record that is not JSON: its bytes and key as they came, in its partition.
    assert (whole.value, whole.key, whole.partition) == (not_json, b"u0", 2)
    assert [(item.key, item.partition) for item in items] == [(b"user-1", 2)] * 2
    topic = worker.engine.topics.send_commands
    found = [
        (d.reason, d.source_topic, d.source_partition, d.source_offset, d.source_index)
        for d in letters(worker)
    ]
    assert found == [
        (DeadLetterReason.NOT_JSON, topic, 2, 0, None),
        (DeadLetterReason.MISSING_FIELD, topic, 2, 1, 1),
        (DeadLetterReason.WRONG_TYPE, topic, 2, 1, 2),
    ]
    # A bad item of a batch: the item's JSON, as intake dead-letters one.
    assert orjson.loads(items[0].value) == nameless
    assert orjson.loads(items[1].value)["visit"] == "twice"
    assert letters(worker)[1].detail == "user_id: Field required"


async def test_a_large_record_of_commands_is_delivered_not_dead_lettered(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    """The input size limit is for producers outside: the engine wrote these."""
    worker = make_worker(max_record_bytes=1024)
    adapter = Recording()
    await ready(worker, adapter)
    raw = record(*(command(n) for n in range(10)))
    assert len(raw) > 1024
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(raw, partition=0)
    assert worker.dead_letters() == []
    assert len(adapter.messages) == 10


async def test_the_commands_of_a_record_are_delivered_concurrently(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(delivery_concurrency=4)
    slow = Slow(answers=[Result(Outcome("delivered"))])
    delivery, outputs = await ready(worker, slow)
    commands = [command(n) for n in range(10)]
    async with drive(worker, "delivery-commands") as driver:
        # Held for acknowledgement only once every command is settled in the ledger.
        event = await driver.put(record(*commands, commands[0]), partition=3)
        assert driver.held[-1] is event
        for item in commands:
            assert delivery._entry(3, item["command_id"]) is not None
        await driver.put(record(*commands[:3]), partition=3)  # redelivered

    # Four calls at a time, never more: the slow adapter's delay is paid three times.
    assert slow.most == 4
    assert slow.active == 0
    assert sorted(m.command.user_id for m in slow.messages) == sorted(
        c["user_id"] for c in commands
    )
    assert delivery.counts["duplicates"] == 3  # the ones redelivered
    # The feedback of the record comes as one record, in the commands' order.
    [(_, partition, sent)] = outputs.sent
    assert partition == 3
    assert [f["user_id"] for f in sent] == [c["user_id"] for c in commands]


async def test_faults_among_concurrent_commands_are_retried_alone(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(clock="simulated", delivery_concurrency=8, delivery_retry_seconds=60)

    @dataclass
    class Flaky(Slow):
        """Fails the first call for user u3."""

        failed: bool = False

        async def deliver(self, message: Message) -> Result:
            if message.command.user_id == "u3" and not self.failed:
                self.failed = True
                await asyncio.sleep(self.delay)
                raise ConnectionError("down")
            return await super().deliver(message)

    flaky = Flaky()
    delivery, outputs = await ready(worker, flaky)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(*(command(n) for n in range(6))), partition=0)
    assert flaky.most == 5  # u3's first call failed apart, in parallel with them
    assert [f["user_id"] for f in feedback(outputs, worker)] == ["u0", "u1", "u2", "u4", "u5"]
    assert delivery.counts["faults"] == 1
    await delivery.release(0, NOW + timedelta(seconds=60))
    assert feedback(outputs, worker)[-1]["user_id"] == "u3"
    assert feedback(outputs, worker)[-1]["status"] == "delivered"
    assert [m.command.user_id for m in flaky.messages].count("u3") == 1


def test_roles_that_deliver(tmp_path: Any) -> None:
    def agents(**overrides: Any) -> set[str]:
        settings = Settings(data_dir=tmp_path, table_store="memory", **overrides)
        return set(create_app(settings, "localhost:9").app.agents)

    delivering = {"delivery-commands", "delivery-clock"}
    # In role all the segment clock releases the feedback, before firing timers.
    assert {"delivery-commands", "segment-clock"} <= agents()
    assert "delivery-clock" not in agents()
    only = agents(role="delivery")
    assert only == delivering  # no intake: the input topics are the other roles' business
    assert Settings(role="delivery").group_id == "reachstream-delivery"
    assert not delivering & agents(role="segments")
    assert not delivering & agents(role="projections")
    assert not delivering & agents(deliver=False)
    with pytest.raises(ValueError, match="role delivery needs deliver=true"):
        Settings(role="delivery", deliver=False)


async def test_a_partition_released_while_sending_does_not_stop_the_worker(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker()
    slow = Slow(answers=[Result(Outcome("delivered"))])
    delivery, outputs = await ready(worker, slow)
    commands = [SendCommand.model_validate(command(n)) for n in range(3)]
    sending = asyncio.create_task(delivery.deliver(2, 7, commands))
    await asyncio.sleep(0)  # the sends are under way
    await delivery.table.release({2})  # a rebalance takes the partition away
    await sending  # no ledger lines to write: nothing raised
    assert len(slow.messages) == 3
    assert outputs.sent == []
    await delivery.deliver(1, 7, [SendCommand.model_validate(command(9))])
    assert delivery._entry(1, command(9)["command_id"]) is not None


async def test_a_tombstone_on_the_commands_topic_is_dead_lettered_not_a_crash(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    adapter = Recording()
    delivery, _ = await ready(worker, adapter)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(None, key=b"u0", partition=1)
        await driver.put(record(command(1)), partition=1)  # the stream flows on

    assert [m.command.user_id for m in adapter.messages] == ["u1"]
    assert delivery.counts["invalid"] == 1
    [letter] = letters(worker)
    assert (letter.reason, letter.source_offset, letter.source_index) == (
        DeadLetterReason.TOMBSTONE,
        0,
        None,
    )
