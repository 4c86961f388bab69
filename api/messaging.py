"""The HTTP side of the SMS, WhatsApp and in-app channels.

Providers' callbacks (no API key: each is checked by the provider's signature, and
carries the signed reference the adapter sent with the message):

- ``POST /t/sms/status``: a Twilio status callback, its ``X-Twilio-Signature``
  (HMAC-SHA1 with the auth token over the URL and the sorted form parameters)
  checked; ``undelivered`` -> ``bounced``, ``failed`` -> ``failed`` feedback (error
  21610 -> ``unsubscribed``); ``delivered`` confirms what the send already reported.
  An error saying the number cannot get SMS (``delivery.sms.DEAD_NUMBER``) also
  unregisters the number: a device update on the devices topic, as
  ``POST /v1/devices`` sends.
- ``GET /t/whatsapp``: the webhook's verification challenge (``hub.verify_token``).
- ``POST /t/whatsapp``: status webhooks, their ``X-Hub-Signature-256`` (HMAC-SHA256 of
  the body with the app secret) checked; ``read`` -> ``opened``, ``failed`` ->
  ``failed`` feedback.

Apps (an API key with scope ``inapp``, or the user's own token from
``POST /v1/users/{id}/inapp/token``):

- ``GET /v1/users/{id}/inapp``: the user's in-app messages, newest first.
- ``POST /v1/users/{id}/inapp/{command}/impression|click|dismiss``: ``opened``,
  ``clicked``, ``dismissed`` feedback (each once per message); a dismissed message is
  not served again.

A forged or missing signature answers 403, and a feedback record the broker did not
take answers 503 so that the provider calls again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import presented_key
from delivery.inapp import InAppStore, Mark, UserTokens
from delivery.provider import Reference, References, secret
from delivery.sms import DEAD_NUMBER
from delivery.tracking_config import tracking_base, tracking_key
from schemas.devices import DeviceOp, DeviceUpdate
from schemas.feedback import Feedback, FeedbackStatus
from streams.engine import Engine
from streams.ingest import IngestProducer

log = logging.getLogger(__name__)

Json = Callable[..., web.Response]
INAPP_ACTIONS: dict[str, tuple[Mark, FeedbackStatus]] = {
    "impression": ("opened", FeedbackStatus.OPENED),
    "click": ("clicked", FeedbackStatus.CLICKED),
    "dismiss": ("dismissed", FeedbackStatus.DISMISSED),
}
SMS_STATUSES = {"undelivered": FeedbackStatus.BOUNCED, "failed": FeedbackStatus.FAILED}
WHATSAPP_STATUSES = {"read": FeedbackStatus.OPENED, "failed": FeedbackStatus.FAILED}
SMS_UNSUBSCRIBED = "21610"


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(default=24 * 30, gt=0, le=24 * 366)


class TokenAnswer(BaseModel):
    token: str
    expires_at: str


def twilio_signature(token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL followed by each
    POST parameter's name and value, sorted by name."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def hub_signature(app_secret: str, body: bytes) -> str:
    """Meta's ``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class MessagingRoutes:
    def __init__(
        self,
        engine: Engine,
        producer: Callable[[], IngestProducer],
        json: Json,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._json = json
        self._references: References | None = None
        self._tokens: UserTokens | None = None
        self._store: InAppStore | None = None
        self._opening = asyncio.Lock()

    # --- shared -----------------------------------------------------------------------

    def _reference(self, token: str) -> Reference | None:
        if self._references is None:
            self._references = References(tracking_key(self._engine.settings))
        return self._references.read(token)

    async def _feedback(self, feedbacks: list[Feedback]) -> bool:
        if not feedbacks:
            return True
        topic = self._engine.topics.feedback
        records = [(item.user_id, item.model_dump_json().encode()) for item in feedbacks]
        try:
            await self._producer().send_encoded(topic, records)
        except Exception:
            self._engine.counters["messaging_feedback_lost"] += len(records)
            log.exception("could not produce %d channel feedback records", len(records))
            return False
        self._engine.counters["messaging_feedback"] += len(records)
        return True

    async def _devices(self, updates: list[DeviceUpdate]) -> bool:
        """Device updates on the devices topic, keyed by user as ``POST /v1/devices``
        sends them; False if the broker did not take them."""
        topic = self._engine.topics.devices
        records = [
            (item.user_id, item.model_dump_json(exclude_defaults=True).encode()) for item in updates
        ]
        try:
            await self._producer().send_encoded(topic, records)
        except Exception:
            self._engine.counters["messaging_devices_lost"] += len(records)
            log.exception("could not produce %d device updates", len(records))
            return False
        self._engine.counters["messaging_unregistered"] += len(records)
        return True

    def _gone(self, reference: Reference, reason: str) -> DeviceUpdate | None:
        """The update unregistering the reference's device."""
        try:
            return DeviceUpdate(
                user_id=reference.user_id,
                op=DeviceOp.UNREGISTER,
                device_id=reference.device_id,
                reason=reason,
                timestamp=self._engine.clock.now(),
            )
        except ValidationError:
            return None

    def _made(
        self, reference: Reference, status: FeedbackStatus, reason: str | None = None
    ) -> Feedback | None:
        try:
            return Feedback(
                command_id=reference.command_id,
                user_id=reference.user_id,
                status=status,
                timestamp=self._engine.clock.now(),
                channel=reference.channel,
                reason=reason[:1000] if reason else None,
            )
        except ValidationError:
            return None

    # --- SMS status callbacks ---------------------------------------------------------

    async def sms_status(self, request: web.Request) -> web.StreamResponse:
        settings = self._engine.settings
        token = secret(settings.twilio_auth_token, settings.twilio_auth_token_file)
        if not token:
            raise web.HTTPNotFound(text="not found")
        form = {name: str(value) for name, value in (await request.post()).items()}
        presented = request.headers.get("X-Twilio-Signature", "")
        base = tracking_base(settings)
        urls = {str(request.url)}
        if base is not None:
            urls.add(base + request.rel_url.path_qs)
        if not any(
            hmac.compare_digest(presented.encode(), twilio_signature(token, url, form).encode())
            for url in urls
        ):
            raise web.HTTPForbidden(text="bad signature")
        reference = self._reference(request.query.get("ref", ""))
        if reference is None:
            raise web.HTTPForbidden(text="bad reference")
        status = form.get("MessageStatus", "")
        code = form.get("ErrorCode", "")
        found: list[Feedback | None] = []
        if status in SMS_STATUSES:
            reason = f"{status}: error {code}" if code else status
            found.append(self._made(reference, SMS_STATUSES[status], reason))
        if code == SMS_UNSUBSCRIBED:
            found.append(self._made(reference, FeedbackStatus.UNSUBSCRIBED, "STOP"))
        if status in SMS_STATUSES and code.isdigit() and int(code) in DEAD_NUMBER:
            gone = self._gone(reference, f"provider: SMS error {code}")
            if gone is not None and not await self._devices([gone]):
                raise web.HTTPServiceUnavailable(text="please try again later")
        if not await self._feedback([item for item in found if item is not None]):
            raise web.HTTPServiceUnavailable(text="please try again later")
        return web.Response(text="ok")

    # --- WhatsApp webhooks ------------------------------------------------------------

    async def whatsapp_verify(self, request: web.Request) -> web.StreamResponse:
        settings = self._engine.settings
        expected = secret(settings.whatsapp_verify_token, None)
        presented = request.query.get("hub.verify_token", "")
        if not expected:
            raise web.HTTPNotFound(text="not found")
        if request.query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            presented.encode(), expected.encode()
        ):
            raise web.HTTPForbidden(text="verification refused")
        return web.Response(text=request.query.get("hub.challenge", ""))

    async def whatsapp_webhook(self, request: web.Request) -> web.StreamResponse:
        settings = self._engine.settings
        app_secret = secret(settings.whatsapp_app_secret, settings.whatsapp_app_secret_file)
        if not app_secret:
            raise web.HTTPNotFound(text="not found")
        body = await request.read()
        presented = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(presented.encode(), hub_signature(app_secret, body).encode()):
            raise web.HTTPForbidden(text="bad signature")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text="not JSON") from None
        found = [item for item in self._statuses(document) if item is not None]
        if not await self._feedback(found):
            raise web.HTTPServiceUnavailable(text="please try again later")
        return web.Response(status=200, text="ok")

    def _statuses(self, document: Any) -> list[Feedback | None]:
        """Feedback for each status the document reports on a message this system sent."""
        made: list[Feedback | None] = []
        for entry in _list(document, "entry"):
            for change in _list(entry, "changes"):
                value = change.get("value") if isinstance(change, dict) else None
                for status in _list(value, "statuses"):
                    kind = WHATSAPP_STATUSES.get(str(status.get("status")))
                    reference = self._reference(str(status.get("biz_opaque_callback_data", "")))
                    if kind is None or reference is None:
                        continue
                    reason = None
                    errors = _list(status, "errors")
                    if errors:
                        first = errors[0]
                        reason = f"{first.get('code', '')} {first.get('title', '')}".strip()
                    made.append(self._made(reference, kind, reason))
        return made

    # --- in-app -----------------------------------------------------------------------

    async def _inapp_store(self) -> InAppStore:
        async with self._opening:
            if self._store is None:
                self._store = await asyncio.to_thread(InAppStore.of, self._engine.settings)
        return self._store

    def _user_tokens(self) -> UserTokens:
        if self._tokens is None:
            self._tokens = UserTokens(tracking_key(self._engine.settings))
        return self._tokens

    def user_token_allows(self, request: web.Request) -> bool:
        """Whether the request presents the in-app token of the user in its path."""
        presented = presented_key(
            request.headers.get("Authorization"), request.headers.get("X-Api-Key")
        )
        if presented is None:
            return False
        user = self._user_tokens().user(presented, self._engine.clock.now())
        return user is not None and user == request.match_info.get("user_id")

    async def inapp_list(self, request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["user_id"]
        store = await self._inapp_store()
        stored = await asyncio.to_thread(store.messages, user_id, self._engine.clock.now())
        return self._json({"user_id": user_id, "messages": [item.as_json() for item in stored]})

    async def inapp_report(self, request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["user_id"]
        command_id = request.match_info["command_id"]
        action = request.match_info["action"]
        if action not in INAPP_ACTIONS:
            return self._json({"error": "report an impression, a click or a dismiss"}, 404)
        mark, status = INAPP_ACTIONS[action]
        store = await self._inapp_store()
        now = self._engine.clock.now()
        first = await asyncio.to_thread(store.mark, user_id, command_id, mark, now)
        if first is None:
            return self._json({"error": f"no in-app message {command_id} for this user"}, 404)
        if first:
            feedback = self._made(Reference(command_id, user_id, "in_app", ""), status)
            if feedback is not None and not await self._feedback([feedback]):
                return self._json({"error": "the feedback was not recorded: try again"}, 503)
        return self._json({"command_id": command_id, "reported": status.value, "first": first})

    async def inapp_token(self, request: web.Request) -> web.StreamResponse:
        """A token for one user's app (needs a key with scope ``inapp``)."""
        user_id = request.match_info["user_id"]
        raw = await request.read()
        try:
            asked = TokenRequest.model_validate_json(raw or b"{}")
        except ValidationError as error:
            return self._json({"error": str(error).splitlines()[0]}, 400)
        expires = self._engine.clock.now() + timedelta(hours=asked.hours)
        token = self._user_tokens().make(user_id, expires)
        return self._json({"token": token, "expires_at": expires.isoformat()})

    async def forget(self, user_id: str) -> None:
        """Delete the user's in-app messages (``DELETE /v1/users/{id}``)."""
        store = await self._inapp_store()
        await asyncio.to_thread(store.forget, user_id)

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)


def _list(value: Any, key: str) -> list[dict[str, Any]]:
    found = value.get(key) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
