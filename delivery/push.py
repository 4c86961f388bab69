"""The ``push`` and ``web_push`` channels: to every device of the command, through the
provider of its platform (iOS: APNs, Android: FCM; web push: the subscription's push
service), when the provider is configured; without credentials the simulator serves
the channel, as in the demo.

A command without devices but with an address (a tag written before the device
registry) is sent as one device: for push, an FCM registration token; for web push,
the tag's ``PushSubscription`` JSON. The outcome: delivered when one device at least
was accepted, failed with each device's reason when none was; the devices a provider
said are gone are the result's ``unregistered`` (the worker drops them). Retries and
rate limits: delivery/provider.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from delivery.apns import ApnsClient, apns_config, apns_id
from delivery.channels import Message, Outcome, Result
from delivery.fcm import FcmClient, fcm_config
from delivery.provider import DeviceResult, Pacer, combined, tls_context, tried
from delivery.push_payload import apns_payload, fcm_message, web_push_payload
from delivery.simulator import SimulatedChannels
from delivery.web_push import WebPushClient, subscription_from_address, vapid_key
from engine.time import to_ms
from schemas.devices import Platform, PushDevice, WebPushSubscription, device_id
from schemas.presets import PushContent, WebPushContent
from streams.settings import Settings

log = logging.getLogger(__name__)
LEGACY_APP = "-"
"""The app id of a push token known only from a tag (FCM needs none)."""


class _Adapter:
    def __init__(self, settings: Settings) -> None:
        self.attempts = settings.push_attempts
        self.max_wait = settings.push_retry_after_max_seconds
        self.timeout = settings.push_timeout_seconds
        self.verify = tls_context(settings.push_ca_file)

    async def _each(self, sends: list[tuple[str, Callable[[], Awaitable[DeviceResult]]]]) -> Result:
        results = await asyncio.gather(
            *(tried(send, self.attempts, self.max_wait) for _, send in sends)
        )
        return combined(
            [(device, result) for (device, _), result in zip(sends, results, strict=True)]
        )


class PushAdapter(_Adapter):
    """Mobile push: APNs for iOS devices, FCM for Android ones."""

    channels = frozenset({"push"})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.settings = settings
        self.fcm_config = fcm_config(settings) if settings.fcm_configured else None
        self.apns_config = apns_config(settings) if settings.apns_configured else None
        self.fcm_pace = Pacer(settings.fcm_rate_per_second)
        self.apns_pace = Pacer(settings.apns_rate_per_second)
        self.app_rate = settings.push_app_rate_per_second
        self._app_paces: dict[str, Pacer] = {}
        self.fcm: FcmClient | None = None
        self.apns: ApnsClient | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self.fcm_config is not None and self.fcm is None:
            self._http = httpx.AsyncClient(
                http2=True, timeout=self.timeout, trust_env=False, verify=self.verify
            )
            self.fcm = FcmClient(self.fcm_config, self._http)
        if self.apns_config is not None and self.apns is None:
            self.apns = ApnsClient(self.apns_config, self.timeout, self.verify)

    async def stop(self) -> None:
        http, self._http, self.fcm = self._http, None, None
        apns, self.apns = self.apns, None
        if http is not None:
            await http.aclose()
        if apns is not None:
            await apns.close()

    async def deliver(self, message: Message) -> Result:
        command = message.command
        content = message.content.content if message.content is not None else None
        if not isinstance(content, PushContent):
            return Result(Outcome("failed", "a push needs a push preset"))
        devices = [device for device in command.devices if isinstance(device, PushDevice)]
        if not devices and command.address:
            devices = [
                PushDevice(platform=Platform.ANDROID, token=command.address, app_id=LEGACY_APP)
            ]
        if not devices:
            return Result(Outcome("failed", "no push device"))
        await self.start()
        sent_at = to_ms(command.at) / 1000
        sends: list[tuple[str, Callable[[], Awaitable[DeviceResult]]]] = []
        for device in devices:
            ident = device_id(device)
            sends.append((ident, self._sender(device, ident, content, command.command_id, sent_at)))
        return await self._each(sends)

    def _app_pace(self, app_id: str) -> Pacer:
        pace = self._app_paces.get(app_id)
        if pace is None:
            pace = self._app_paces[app_id] = Pacer(self.app_rate)
        return pace

    def _sender(
        self, device: PushDevice, ident: str, content: PushContent, command_id: str, sent_at: float
    ) -> Callable[[], Awaitable[DeviceResult]]:
        app_pace = self._app_pace(device.app_id)
        if device.platform == Platform.IOS:
            apns = self.apns
            payload = apns_payload(content)
            notification = apns_id(command_id, ident)

            async def to_apns() -> DeviceResult:
                if apns is None:
                    return DeviceResult("failed", "APNs is not configured")
                await app_pace()
                await self.apns_pace()
                return await apns.send(device, payload, content, notification, sent_at)

            return to_apns
        fcm = self.fcm
        message = fcm_message(content, device.token)

        async def to_fcm() -> DeviceResult:
            if fcm is None:
                return DeviceResult("failed", "FCM is not configured")
            await app_pace()
            await self.fcm_pace()
            return await fcm.send(message)

        return to_fcm


class WebPushAdapter(_Adapter):
    channels = frozenset({"web_push"})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.vapid = vapid_key(settings)
        self.subject = settings.vapid_subject
        self.allow = settings.webhook_allow_list
        self.pace = Pacer(settings.web_push_rate_per_second)
        self.client: WebPushClient | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self.client is None:
            self._http = httpx.AsyncClient(
                http2=True,
                timeout=self.timeout,
                trust_env=False,
                follow_redirects=False,
                verify=self.verify,
            )
            self.client = WebPushClient(self.vapid, self.subject, self._http, self.allow)

    async def stop(self) -> None:
        http, self._http, self.client = self._http, None, None
        if http is not None:
            await http.aclose()

    async def deliver(self, message: Message) -> Result:
        command = message.command
        content = message.content.content if message.content is not None else None
        if not isinstance(content, WebPushContent):
            return Result(Outcome("failed", "a web push needs a web push preset"))
        devices = [d for d in command.devices if isinstance(d, WebPushSubscription)]
        if not devices and command.address:
            legacy = subscription_from_address(command.address)
            if legacy is None:
                return Result(Outcome("failed", "the web push address is not a subscription"))
            devices = [legacy]
        if not devices:
            return Result(Outcome("failed", "no web push subscription"))
        await self.start()
        client = self.client
        assert client is not None
        payload = web_push_payload(content)

        def sender(subscription: WebPushSubscription) -> Callable[[], Awaitable[DeviceResult]]:
            async def send() -> DeviceResult:
                await self.pace()
                return await client.send(subscription, content, payload)

            return send

        return await self._each([(device_id(device), sender(device)) for device in devices])


def push_channel(settings: Settings) -> PushAdapter | SimulatedChannels:
    """The ``push`` entry point: the providers when FCM or APNs is configured."""
    if settings.fcm_configured or settings.apns_configured:
        return PushAdapter(settings)
    return SimulatedChannels(settings)


def web_push_channel(settings: Settings) -> WebPushAdapter | SimulatedChannels:
    """The ``web_push`` entry point: Web Push when a VAPID key is configured."""
    if settings.web_push_configured:
        return WebPushAdapter(settings)
    return SimulatedChannels(settings)
