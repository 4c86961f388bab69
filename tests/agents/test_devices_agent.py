"""The device registry's wiring in Faust's test context: device updates through the
intake agent into the segment runtime (dead letters for the invalid and the refused),
and the delivery worker unregistering the devices a provider said are gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.delivery.worker import UNREGISTERED_REASON
from delivery.channels import Outcome, Result
from delivery.provider import ProviderUnavailable
from engine import codec
from schemas import DeadLetter, DeadLetterReason
from schemas.devices import MAX_DEVICES, DeviceUpdate, PushDevice, device_id
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from tests.agents.conftest import Worker
from tests.agents.test_delivery_agent import Recording, command, feedback, record
from tests.agents.test_delivery_agent import ready as delivery_ready
from tests.agents.test_segment_agent import Outputs

NOW = datetime(2026, 11, 1, 10, tzinfo=UTC)
IPHONE = {"kind": "push", "platform": "ios", "token": "a" * 64, "app_id": "com.example.app"}


class DeadLetterOutputs(Outputs):
    """The runtime's producer, keeping dead letters (key and headers) as well."""

    def __init__(self) -> None:
        super().__init__()
        self.letters: list[DeadLetter] = []

    async def send(  # type: ignore[override]
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        if headers is not None:
            self.letters.append(DeadLetter.from_record(value, key, headers))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return await super().send(topic, value, partition)


async def runtime_of(worker: Worker) -> tuple[Any, DeadLetterOutputs]:
    runtime = worker.system.segments
    outputs = DeadLetterOutputs()
    runtime._producer = outputs
    await runtime.table.start()
    partitions = set(range(worker.engine.settings.partitions))
    await runtime.table.recover(partitions)
    push = SegmentDefinition(id="push", name="push", condition=parse('R("push")'), version=1)
    await runtime.load({"push": push}, {}, NOW)
    await runtime.on_recovered(partitions)
    await runtime.flush()
    return runtime, outputs


def register(user: str, device: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return {"user_id": user, "op": "register", "device": device, "timestamp": NOW.isoformat()}


async def test_device_updates_move_reachability_and_bad_ones_are_dead_letters(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await runtime_of(worker)
    gone = device_id(PushDevice.model_validate(IPHONE))
    unregister = {"user_id": "u1", "op": "unregister", "device_id": gone, "timestamp": 1}
    async with drive(worker, "intake-device_updates") as driver:
        await driver.put(orjson.dumps([register("u1", IPHONE)]), partition=1)
        stored = runtime.table.get(1, "u1")
        assert stored is not None
        assert list(codec.decode(stored.value).devices.devices) == [gone]
        assert codec.decode(stored.value).members == {"push": 1}
        await driver.put(orjson.dumps(unregister), partition=1)
        await driver.put(b'{"user_id": "u1", "op": "register", "timestamp": 1}', partition=1)
    stored = runtime.table.get(1, "u1")
    assert stored is not None
    assert codec.decode(stored.value).members == {}
    changes = [
        c for topic, _, items in outputs.sent for c in items if topic.endswith("memberships")
    ]
    assert [(c["user_id"], c["change"]) for c in changes] == [("u1", "entered"), ("u1", "exited")]
    [letter] = [DeadLetter.from_record(s.value, s.key, s.headers) for s in worker.dead_letters()]
    assert letter.reason is DeadLetterReason.INVALID_VALUE
    assert "needs a device" in letter.detail
    assert letter.source_topic == worker.engine.topics.devices


async def test_a_device_beyond_the_limit_is_a_dead_letter_with_the_reason(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await runtime_of(worker)
    addresses = [
        register("u1", {"kind": "email", "address": f"u{n}@example.com"})
        for n in range(MAX_DEVICES)
    ]
    async with drive(worker, "intake-device_updates") as driver:
        await driver.put(orjson.dumps(addresses), partition=0)
        await driver.put(orjson.dumps(register("u1", IPHONE)), partition=0)
    [letter] = outputs.letters
    assert letter.reason is DeadLetterReason.TOO_MANY_DEVICES
    assert "unregister one first" in letter.detail
    assert letter.source_topic == worker.engine.topics.devices
    assert letter.key == b"u1"
    assert DeviceUpdate.model_validate_json(letter.raw).device == PushDevice.model_validate(IPHONE)
    stored = runtime.table.get(0, "u1")
    assert stored is not None
    assert len(codec.decode(stored.value).devices.devices) == MAX_DEVICES


async def test_devices_a_provider_says_are_gone_are_unregistered(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    gone = device_id(PushDevice.model_validate(IPHONE))
    adapter = Recording(answers=[Result(Outcome("delivered"), unregistered=(gone, gone))])
    delivery, outputs = await delivery_ready(worker, adapter)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(command(1, devices=[IPHONE])), partition=2)
    assert [m.command.devices[0].token for m in adapter.messages] == [IPHONE["token"]]
    [(_topic, partition, items)] = [s for s in outputs.sent if s[0] == worker.engine.topics.devices]
    assert partition == 2
    [update] = [DeviceUpdate.model_validate(item) for item in items]
    assert (update.user_id, update.op, update.device_id) == ("u1", "unregister", gone)
    # Named by the device too, so the projected row keeps its kind and platform.
    assert update.device == PushDevice.model_validate(IPHONE)
    assert update.reason == UNREGISTERED_REASON == "provider: Unregistered"
    assert [f["status"] for f in feedback(outputs, worker)] == ["delivered"]
    assert delivery.counts["unregistered"] == 1


async def test_devices_gone_in_an_attempt_the_worker_retries_are_unregistered(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker()
    gone = device_id(PushDevice.model_validate(IPHONE))
    later = ProviderUnavailable("APNs 503", retry_after=30, unregistered=(gone,))
    adapter = Recording(answers=[later])
    delivery, outputs = await delivery_ready(worker, adapter)
    async with drive(worker, "delivery-commands") as driver:
        await driver.put(record(command(1, devices=[IPHONE])), partition=2)
    [(_topic, partition, items)] = [s for s in outputs.sent if s[0] == worker.engine.topics.devices]
    assert partition == 2
    [update] = [DeviceUpdate.model_validate(item) for item in items]
    assert (update.user_id, update.op, update.device_id) == ("u1", "unregister", gone)
    # The command itself waits for its retry: no feedback yet.
    assert feedback(outputs, worker) == []
    assert delivery.counts["unregistered"] == 1
