"""Local servers shaped like the SMS and WhatsApp providers, for the tests and the
delivery benchmark.

Each checks what the real one checks (authentication, the request's schema), keeps
what it was sent, and answers from a script per phone number, so a test can ask for
every error case. ``FakeTwilio`` also keeps the idempotency tokens it saw: a repeated
token answers the first message again and delivers nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientSession, web

from api.messaging import hub_signature, twilio_signature

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token-for-tests"
WA_TOKEN = "whatsapp-access-token-for-tests"
WA_PHONE_ID = "106540352242922"
WA_SECRET = "whatsapp-app-secret-for-tests"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def twilio_error(status: int, code: int, message: str, **headers: str) -> Answer:
    return Answer(status, {"code": code, "message": message, "status": status}, headers)


def graph_error(status: int, code: int, message: str, **headers: str) -> Answer:
    body = {"error": {"message": message, "type": "OAuthException", "code": code}}
    return Answer(status, body, headers)


@dataclass
class FakeTwilio:
    url: str = ""
    delivered: list[dict[str, str]] = field(default_factory=list)
    """Messages the fake would deliver: each once."""
    calls: int = 0
    script: dict[str, list[Answer]] = field(default_factory=dict)
    """Per ``To`` number, answers to give first (then 201)."""
    refused: list[str] = field(default_factory=list)
    """Why requests were refused for their shape or auth (a test expects none)."""
    _tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def messages(self, request: web.Request) -> web.Response:
        self.calls += 1
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if request.match_info["sid"] != SID or request.headers.get("Authorization") != expected:
            self.refused.append("authentication")
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.content_type != "application/x-www-form-urlencoded":
            self.refused.append(f"content type {request.content_type}")
            return web.json_response({"code": 20001, "message": "form"}, status=400)
        form = {name: str(value) for name, value in (await request.post()).items()}
        unknown = set(form) - {"To", "From", "MessagingServiceSid", "Body", "StatusCallback"}
        if unknown or not form.get("To") or not form.get("Body"):
            self.refused.append(f"fields {sorted(form)}")
            return web.json_response({"code": 21602, "message": "Body required"}, status=400)
        if ("From" in form) == ("MessagingServiceSid" in form):
            self.refused.append("From or MessagingServiceSid")
            return web.json_response({"code": 21603, "message": "From required"}, status=400)
        token = request.headers.get("I-Twilio-Idempotency-Token")
        if not token:
            self.refused.append("no idempotency token")
            return web.json_response({"code": 20001, "message": "token"}, status=400)
        if token in self._tokens:
            return web.json_response(self._tokens[token], status=201)  # not delivered again
        scripted = self.script.get(form["To"])
        if scripted:
            answer = scripted.pop(0)
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        message = {"sid": f"SM{next(self._sids):032x}", "status": "queued", **form}
        self._tokens[token] = message
        self.delivered.append(form)
        return web.json_response(message, status=201)

    async def report(self, message: dict[str, str], status: str, error: str = "") -> int:
        """Post a status callback for ``message`` as the provider does, signed."""
        url = message["StatusCallback"]
        params = {"MessageSid": "SM1", "MessageStatus": status, "To": message["To"]}
        if error:
            params["ErrorCode"] = error
        signature = twilio_signature(TOKEN, url, params)
        async with (
            ClientSession() as session,
            session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as answer,
        ):
            return answer.status


@dataclass
class FakeWhatsApp:
    url: str = ""
    delivered: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    script: dict[str, list[Answer]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def messages(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.headers.get("Authorization") != f"Bearer {WA_TOKEN}":
            self.refused.append("authentication")
            return web.json_response(
                {"error": {"message": "Invalid OAuth access token", "code": 190}}, status=401
            )
        if request.match_info["phone"] != WA_PHONE_ID:
            self.refused.append("phone number id")
            return web.json_response({"error": {"message": "Unknown", "code": 100}}, status=400)
        body = orjson.loads(await request.read())
        problem = _whatsapp_problem(body)
        if problem is not None:
            self.refused.append(problem)
            return web.json_response({"error": {"message": problem, "code": 100}}, status=400)
        scripted = self.script.get(body["to"])
        if scripted:
            answer = scripted.pop(0)
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        self.delivered.append(body)
        wamid = f"wamid.{next(self._ids):020d}"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"].lstrip("+")}],
                "messages": [{"id": wamid}],
            }
        )


def _whatsapp_problem(body: Any) -> str | None:
    """What is wrong with a message object, as the Cloud API checks it."""
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not isinstance(body.get("to"), str) or not body["to"]:
        return "to is required"
    kind = body.get("type")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str):
            return "text.body is required"
    elif kind == "template":
        template = body.get("template")
        if not isinstance(template, dict) or not template.get("name"):
            return "template.name is required"
        language = template.get("language")
        if not isinstance(language, dict) or not language.get("code"):
            return "template.language.code is required"
        for component in template.get("components", []):
            for parameter in component.get("parameters", []):
                if parameter.get("type") != "text" or not isinstance(parameter.get("text"), str):
                    return "a body parameter is {type: text, text}"
    else:
        return f"unsupported type {kind!r}"
    data = body.get("biz_opaque_callback_data")
    if data is not None and (not isinstance(data, str) or len(data) > 512):
        return "biz_opaque_callback_data is a string of at most 512 characters"
    return None


def whatsapp_status(message: dict[str, Any], status: str, code: int | None = None) -> bytes:
    """A status webhook body about ``message``, as the Cloud API posts it."""
    item: dict[str, Any] = {
        "id": "wamid.1",
        "status": status,
        "timestamp": "1764900000",
        "recipient_id": message["to"].lstrip("+"),
    }
    if "biz_opaque_callback_data" in message:
        item["biz_opaque_callback_data"] = message["biz_opaque_callback_data"]
    if code is not None:
        item["errors"] = [{"code": code, "title": "Message undeliverable"}]
    value = {"messaging_product": "whatsapp", "metadata": {}, "statuses": [item]}
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return orjson.dumps(document)


def signed(body: bytes, secret: str = WA_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": hub_signature(secret, body), "Content-Type": "application/json"}


@asynccontextmanager
async def running(fake: FakeTwilio | FakeWhatsApp) -> AsyncIterator[str]:
    """Serve ``fake`` on a free loopback port; yields its base URL."""
    app = web.Application()
    if isinstance(fake, FakeTwilio):
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", fake.messages)
    else:
        app.router.add_post("/{version}/{phone}/messages", fake.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake.url
    finally:
        await runner.cleanup()


@contextmanager
def running_in_thread(fake: FakeTwilio | FakeWhatsApp) -> Iterator[str]:
    """Serve ``fake`` from a thread of its own (for a system in another process);
    yields its base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with running(fake):
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake provider did not start")
    try:
        yield fake.url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
