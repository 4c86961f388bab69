"""Benchmark: send commands/s through one delivery worker's path (the preset rendered
for the user, the worker's concurrency gate, the channel adapter, its provider client)
per provider, next to a raw client loop against the same local fake in the same run:
APNs over one HTTP/2 connection with multiplexed streams, FCM with a cached OAuth
token, Web Push encrypting each payload, SMS through a Twilio-shaped Messages API,
WhatsApp templates through a Cloud API-shaped one.

The raw loop sends the same requests with everything prepared once (the payload, the
JWT, the access token, the VAPID header) and the same concurrency, so the ratio is what
the worker's path costs on top of the protocol. The fakes run in a process of their
own, checking and answering as in the tests.
Not a timed test: it prints figures. ``reach bench delivery [--commands N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from agents.delivery.worker import DeliveryWorker
from benchmarks import messaging_fakes
from benchmarks.messaging_fakes import FakeTwilio, FakeWhatsApp, running_in_thread
from benchmarks.push_fakes import TOPIC, push_fakes
from delivery.apns import apns_id, http2_client
from delivery.channels import Result
from delivery.push import PushAdapter, WebPushAdapter
from delivery.push_payload import apns_payload, fcm_message, web_push_payload
from delivery.sms import IDEMPOTENCY_HEADER, SmsAdapter
from delivery.web_push import encrypt
from delivery.whatsapp import WhatsAppAdapter
from schemas.commands import SendCommand, command_id
from schemas.devices import PhoneNumber, Platform, PushDevice, WebPushSubscription
from schemas.presets import PresetDefinition, PushContent, WebPushContent
from streams.clock import Clock
from streams.settings import Settings

console = Console(width=120)
TARGET = 2.0
"""The worker's path within this factor of the raw loop."""
PUSH = PresetDefinition.model_validate(
    {
        "id": "bench-push",
        "name": "Bench push",
        "channel": "push",
        "content": {"title": "Hello {{tag.First Name|there}}", "body": "Your cart is waiting"},
    }
)
WEB = PresetDefinition.model_validate(
    {
        "id": "bench-web",
        "name": "Bench web push",
        "channel": "web_push",
        "content": {"title": "Hello {{tag.First Name|there}}", "body": "Back in stock"},
    }
)
SMS = PresetDefinition.model_validate(
    {
        "id": "bench-sms",
        "name": "Bench SMS",
        "channel": "sms",
        "content": {"text": "Hello {{tag.First Name|there}}, your cart is waiting"},
    }
)
WHATSAPP = PresetDefinition.model_validate(
    {
        "id": "bench-whatsapp",
        "name": "Bench WhatsApp",
        "channel": "whatsapp",
        "content": {
            "template": "cart_reminder",
            "language": "en_US",
            "parameters": ["{{tag.First Name|there}}"],
        },
    }
)
AT = datetime(2026, 11, 1, 9, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    channel: str
    commands: int
    worker: float
    raw: float

    @property
    def ratio(self) -> float:
        return self.raw / self.worker if self.worker else float("inf")


def commands(
    channel: str, preset: str, devices: list[Any], count: int, run: str = "r"
) -> list[SendCommand]:
    return [
        SendCommand(
            command_id=command_id("bench", 1, run, f"u{n}", "send", 0),
            user_id=f"u{n}",
            channel=channel,
            preset=preset,
            journey_id="bench",
            journey_version=1,
            run=run,
            step="send",
            visit=0,
            at=AT,
            devices=[devices[n % len(devices)]],
            tags={"First Name": "Ana"},
        )
        for n in range(count)
    ]


@dataclass(frozen=True)
class Served:
    """What the fakes' process hands over: settings pointing at it, subscriptions."""

    settings: dict[str, Any]
    subscriptions: list[WebPushSubscription]

    def make_settings(self, **more: Any) -> Settings:
        return Settings(**{**self.settings, **more})


def _serve_fakes(folder: str, connection: Connection, subscriptions: int) -> None:
    with (
        push_fakes(Path(folder)) as fakes,
        running_in_thread(FakeTwilio()) as twilio,
        running_in_thread(FakeWhatsApp()) as whatsapp,
    ):
        made = [fakes.web_push.subscribe().model_dump() for _ in range(subscriptions)]
        settings = {
            **fakes.settings,
            "twilio_account_sid": messaging_fakes.SID,
            "twilio_auth_token": messaging_fakes.TOKEN,
            "twilio_from": "+14155550100",
            "twilio_base_url": twilio,
            "whatsapp_phone_number_id": messaging_fakes.WA_PHONE_ID,
            "whatsapp_access_token": messaging_fakes.WA_TOKEN,
            "whatsapp_app_secret": messaging_fakes.WA_SECRET,
            "whatsapp_base_url": whatsapp,
        }
        connection.send((settings, made))
        connection.recv()  # until the benchmark is done


def worker(fakes: Served, adapters: dict[str, Any], concurrency: int) -> DeliveryWorker:
    settings = fakes.make_settings(delivery_concurrency=concurrency)
    presets = {preset.id: preset for preset in (PUSH, WEB, SMS, WHATSAPP)}
    return DeliveryWorker(
        cast(Any, None),  # the ledger table: not used by an attempt
        adapters,
        settings,
        Clock("wall"),
        lambda: presets,
        "",
        "",
    )


async def timed(run: Callable[[], Awaitable[int]]) -> float:
    started = time.perf_counter()
    delivered = await run()
    return delivered / (time.perf_counter() - started)


async def gated(concurrency: int, sends: list[Callable[[], Awaitable[bool]]]) -> int:
    gate = asyncio.Semaphore(concurrency)

    async def one(send: Callable[[], Awaitable[bool]]) -> bool:
        async with gate:
            return await send()

    return sum(await asyncio.gather(*(one(send) for send in sends)))


async def through_worker(delivery: DeliveryWorker, batch: list[SendCommand]) -> int:
    results = await delivery._attempt_all(batch)
    return sum(1 for r in results if isinstance(r, Result) and r.outcome.status == "delivered")


ROUNDS = 3
"""Each path is timed this many times, alternating; the best of each is shown."""


async def compared(
    worker_run: Callable[[], Awaitable[int]], raw_run: Callable[[], Awaitable[int]]
) -> tuple[float, float]:
    """(worker, raw) commands/s: the best of ``ROUNDS`` alternating runs of each."""
    worker_rate = raw_rate = 0.0
    for _ in range(ROUNDS):
        worker_rate = max(worker_rate, await timed(worker_run))
        raw_rate = max(raw_rate, await timed(raw_run))
    return worker_rate, raw_rate


async def raced(
    delivery: DeliveryWorker,
    batches: Callable[[], list[SendCommand]],
    send: Callable[[SendCommand], Callable[[], Awaitable[bool]]],
    concurrency: int,
    warm: int,
) -> tuple[float, float]:
    """``compared`` of the worker's path and the raw loop over the commands ``batches``
    gives, after warming the raw loop's connection with ``warm`` of them."""
    await gated(concurrency, [send(c) for c in batches()[:warm]])
    return await compared(
        lambda: through_worker(delivery, batches()),
        lambda: gated(concurrency, [send(c) for c in batches()]),
    )


async def bench_apns(fakes: Served, count: int, concurrency: int) -> Row:
    devices = [
        PushDevice(platform=Platform.IOS, token=f"{n:064x}", app_id=TOPIC) for n in range(100)
    ]
    batch = commands("push", PUSH.id, devices, count)
    adapter = PushAdapter(fakes.make_settings())
    delivery = worker(fakes, {"push": adapter}, concurrency)
    await adapter.start()
    await through_worker(delivery, batch[: min(100, count)])  # the connection, the token
    assert adapter.apns is not None
    token = adapter.apns.provider_token()
    content = PUSH.content
    assert isinstance(content, PushContent)
    body = orjson.dumps(apns_payload(content.model_copy(update={"title": "Hello Ana"})))
    async with http2_client(str(fakes.settings["apns_production_url"]), 10) as client:

        def send(command: SendCommand) -> Callable[[], Awaitable[bool]]:
            device = command.devices[0]
            assert isinstance(device, PushDevice)
            headers = {
                "authorization": f"bearer {token}",
                "apns-topic": TOPIC,
                "apns-push-type": "alert",
                "apns-priority": "10",
                "apns-id": apns_id(command.command_id, device.token[:16]),
            }

            async def post() -> bool:
                response = await client.post(
                    f"/3/device/{device.token}", content=body, headers=headers
                )
                return response.status_code == 200

            return post

        rates = await raced(delivery, lambda: batch, send, concurrency, 100)
    await adapter.stop()
    return Row("push: APNs (HTTP/2, one connection)", count, *rates)


async def bench_fcm(fakes: Served, count: int, concurrency: int) -> Row:
    devices = [
        PushDevice(platform=Platform.ANDROID, token=f"fcm-{n}", app_id="com.example.shop")
        for n in range(100)
    ]
    batch = commands("push", PUSH.id, devices, count)
    adapter = PushAdapter(fakes.make_settings())
    delivery = worker(fakes, {"push": adapter}, concurrency)
    await adapter.start()
    await through_worker(delivery, batch[: min(100, count)])
    assert adapter.fcm is not None
    token = await adapter.fcm.access_token()
    url = adapter.fcm.url
    content = PUSH.content
    assert isinstance(content, PushContent)
    rendered = content.model_copy(update={"title": "Hello Ana"})
    async with httpx.AsyncClient(http2=True, timeout=10) as client:
        headers = {"Authorization": f"Bearer {token}"}

        def send(command: SendCommand) -> Callable[[], Awaitable[bool]]:
            device = command.devices[0]
            assert isinstance(device, PushDevice)
            body = {"message": fcm_message(rendered, device.token)}

            async def post() -> bool:
                response = await client.post(url, json=body, headers=headers)
                return response.status_code == 200

            return post

        rates = await raced(delivery, lambda: batch, send, concurrency, 100)
    await adapter.stop()
    return Row("push: FCM HTTP v1", count, *rates)


async def bench_web_push(fakes: Served, count: int, concurrency: int) -> Row:
    batch = commands("web_push", WEB.id, fakes.subscriptions, count)
    adapter = WebPushAdapter(fakes.make_settings())
    delivery = worker(fakes, {"web_push": adapter}, concurrency)
    await adapter.start()
    await through_worker(delivery, batch[: min(50, count)])
    assert adapter.client is not None
    endpoint = fakes.subscriptions[0].endpoint
    authorization = adapter.client.authorization(endpoint[: endpoint.index("/push/")])
    content = WEB.content
    assert isinstance(content, WebPushContent)
    data = orjson.dumps(web_push_payload(content.model_copy(update={"title": "Hello Ana"})))
    headers = {
        "TTL": "86400",
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Authorization": authorization,
    }
    async with httpx.AsyncClient(http2=True, timeout=10, verify=adapter.verify) as client:

        def send(command: SendCommand) -> Callable[[], Awaitable[bool]]:
            subscription = command.devices[0]
            assert isinstance(subscription, WebPushSubscription)

            async def post() -> bool:
                body = await asyncio.to_thread(encrypt, subscription, data)
                response = await client.post(subscription.endpoint, content=body, headers=headers)
                return response.status_code == 201

            return post

        rates = await raced(delivery, lambda: batch, send, concurrency, 50)
    await adapter.stop()
    return Row("web_push: Web Push (aes128gcm, VAPID)", count, *rates)


PHONES = [PhoneNumber(number=f"+1415555{n:04d}", whatsapp=True) for n in range(100)]
"""Valid E.164 numbers (the 555 exchange), opted in to WhatsApp."""


class Fresh:
    """Batches of new command ids, one per timed run: the providers (and the SMS
    adapter) remember an idempotency key or a (command, number) pair they already took,
    and would answer a repeat without the work."""

    def __init__(self, channel: str, preset: str, count: int) -> None:
        self.channel, self.preset, self.count, self.runs = channel, preset, count, 0

    def __call__(self) -> list[SendCommand]:
        self.runs += 1
        return commands(self.channel, self.preset, PHONES, self.count, f"r{self.runs}")


async def bench_sms(fakes: Served, count: int, concurrency: int) -> Row:
    settings = fakes.make_settings()
    adapter = SmsAdapter(settings)
    delivery = worker(fakes, {"sms": adapter}, concurrency)
    await adapter.start()
    fresh = Fresh("sms", SMS.id, count)
    await through_worker(delivery, fresh()[:100])  # the connection
    url = f"{settings.twilio_base_url}/2010-04-01/Accounts/{messaging_fakes.SID}/Messages.json"
    auth = (messaging_fakes.SID, messaging_fakes.TOKEN)
    async with httpx.AsyncClient(timeout=10, auth=auth) as client:

        def send(command: SendCommand) -> Callable[[], Awaitable[bool]]:
            device = command.devices[0]
            assert isinstance(device, PhoneNumber)
            form = {"To": device.number, "From": "+14155550100", "Body": "Hello Ana"}
            headers = {IDEMPOTENCY_HEADER: command.command_id}

            async def post() -> bool:
                response = await client.post(url, data=form, headers=headers)
                return response.status_code == 201

            return post

        rates = await raced(delivery, fresh, send, concurrency, 100)
    await adapter.stop()
    return Row("sms: Twilio-shaped Messages API", count, *rates)


async def bench_whatsapp(fakes: Served, count: int, concurrency: int) -> Row:
    settings = fakes.make_settings()
    adapter = WhatsAppAdapter(settings)
    delivery = worker(fakes, {"whatsapp": adapter}, concurrency)
    await adapter.start()
    fresh = Fresh("whatsapp", WHATSAPP.id, count)
    await through_worker(delivery, fresh()[:100])
    base, version = settings.whatsapp_base_url, settings.whatsapp_api_version
    url = f"{base}/{version}/{messaging_fakes.WA_PHONE_ID}/messages"
    headers = {"Authorization": f"Bearer {messaging_fakes.WA_TOKEN}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:

        def send(command: SendCommand) -> Callable[[], Awaitable[bool]]:
            device = command.devices[0]
            assert isinstance(device, PhoneNumber)
            body = {
                "messaging_product": "whatsapp",
                "to": device.number,
                "type": "template",
                "template": {
                    "name": "cart_reminder",
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}
                    ],
                },
            }

            async def post() -> bool:
                response = await client.post(url, json=body)
                return response.status_code == 200

            return post

        rates = await raced(delivery, fresh, send, concurrency, 100)
    await adapter.stop()
    return Row("whatsapp: Cloud API-shaped templates", count, *rates)


async def measure(count: int, web_count: int, concurrency: int) -> list[Row]:
    fakes_side, bench_side = multiprocessing.get_context("spawn").Pipe()
    with tempfile.TemporaryDirectory(prefix="reach-bench-delivery-") as folder:
        process = multiprocessing.get_context("spawn").Process(
            target=_serve_fakes, args=(folder, fakes_side, 50), daemon=True
        )
        process.start()
        try:
            settings, subscriptions = bench_side.recv()
            fakes = Served(settings, [WebPushSubscription.model_validate(s) for s in subscriptions])
            return [
                await bench_apns(fakes, count, concurrency),
                await bench_fcm(fakes, count, concurrency),
                await bench_web_push(fakes, web_count, concurrency),
                await bench_sms(fakes, count, concurrency),
                await bench_whatsapp(fakes, count, concurrency),
            ]
        finally:
            bench_side.send("done")
            process.join(15)


def run(count: int = 1000, web_count: int = 300, concurrency: int = 16) -> list[Row]:
    console.print(
        f"{count} commands per provider, {web_count} web push, concurrency {concurrency} "
        "(REACH_DELIVERY_CONCURRENCY), against local fakes in a process of their own…"
    )
    rows = asyncio.run(measure(count, web_count, concurrency))
    table = Table(title="Delivery: commands/s, one worker vs a raw client loop (same run)")
    for column in ("channel: provider", "commands", "worker cmd/s", "raw loop cmd/s", "raw/worker"):
        table.add_column(column, justify="left" if column.startswith("channel") else "right")
    for row in rows:
        table.add_row(
            row.channel,
            f"{row.commands:,}",
            f"{row.worker:,.0f}",
            f"{row.raw:,.0f}",
            f"{row.ratio:.2f}x",
        )
    console.print(table)
    worst = max(row.ratio for row in rows)
    verdict = "within" if worst <= TARGET else "NOT within"
    console.print(
        f"target: the worker within {TARGET:g}x of the raw loop — {verdict} (worst {worst:.2f}x)"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--web-commands", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    arguments = parser.parse_args()
    run(arguments.commands, arguments.web_commands, arguments.concurrency)


if __name__ == "__main__":
    main()
