"""Local servers that speak the push providers' protocols, for tests and benchmarks.

- ``FakeApns``: HTTP/2 only; checks the ES256 provider token (signature with the key's
  public half, ``kid``, ``iss``, age), the headers (topic, push type, priority, a UUID
  ``apns-id``, collapse id, expiration) and the payload's size and ``aps``.
- ``FakeFcm``: issues OAuth2 access tokens for a service account's signed assertion
  (checks its RS256 signature, audience, scope), then checks each send's bearer token,
  project and message schema (unknown fields refused, as FCM does).
- ``FakeWebPush``: makes subscriptions (a browser's P-256 key and auth secret), checks
  the VAPID ``Authorization`` (signature, audience, expiry, subject) and **decrypts**
  each payload with the subscription's private key (``http_ece``).

Each can be told how to answer a token or subscription (``script``): a queue of
``Reply`` values taken one per request, then 200/201. ``serve`` runs an app with
hypercorn in a thread of its own (HTTP/1.1 and HTTP/2 with prior knowledge).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import http_ece
import jwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from schemas.devices import WebPushSubscription
from streams.settings import Settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(
        status, orjson.dumps(body), {"content-type": "application/json", **(headers or {})}
    )


class _App:
    """A tiny ASGI app: the request's parts to ``handle``, its answer back."""

    def __init__(self) -> None:
        self._scripts: dict[str, deque[Reply]] = {}
        self.lock = threading.Lock()
        self.requests = 0

    def script(self, key: str, *replies: Reply) -> None:
        with self.lock:
            self._scripts.setdefault(key, deque()).extend(replies)

    def scripted(self, key: str) -> Reply | None:
        with self.lock:
            queue = self._scripts.get(key)
            return queue.popleft() if queue else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        self.requests += 1
        answer = self.handle(scope["method"], scope["path"], headers, body, scope["http_version"])
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, version: str
    ) -> Answer:
        raise NotImplementedError


# --- APNs ---------------------------------------------------------------------------


class FakeApns(_App):
    def __init__(
        self,
        public_key: ec.EllipticCurvePublicKey,
        key_id: str,
        team_id: str,
        topics: frozenset[str],
    ) -> None:
        super().__init__()
        self.public_key = public_key
        self.key_id = key_id
        self.team_id = team_id
        self.topics = topics
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self.versions: set[str] = set()
        self.provider_tokens: set[str] = set()

    def _refuse(self, status: int, reason: str, headers: dict[str, str] | None = None) -> Answer:
        with self.lock:
            self.refused.append((status, reason))
        return _json(status, {"reason": reason}, headers)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, version: str
    ) -> Answer:
        self.versions.add(version)
        if version != "2":
            return self._refuse(400, "HTTP/2 only")
        match = re.fullmatch(r"/3/device/([0-9A-Za-z_-]+)", path)
        if method != "POST" or match is None:
            return self._refuse(405 if match else 404, "MethodNotAllowed")
        token = match.group(1)
        problem = self._check_token(headers.get("authorization", ""))
        if problem:
            return self._refuse(403, problem)
        topic = headers.get("apns-topic")
        if not topic:
            return self._refuse(400, "MissingTopic")
        if topic not in self.topics:
            return self._refuse(400, "TopicDisallowed")
        if headers.get("apns-push-type") not in ("alert", "background", "voip", "liveactivity"):
            return self._refuse(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("5", "10", "1"):
            return self._refuse(400, "BadPriority")
        notification = headers.get("apns-id", "")
        try:
            uuid.UUID(notification)
        except ValueError:
            return self._refuse(400, "BadMessageId")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return self._refuse(400, "BadCollapseId")
        if not headers.get("apns-expiration", "0").isdigit():
            return self._refuse(400, "BadExpirationDate")
        if len(body) > 4096:
            return self._refuse(413, "PayloadTooLarge")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._refuse(400, "BadPayload")
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return self._refuse(400, "PayloadEmpty")
        reply = self.scripted(token)
        if reply is not None and reply.status != 200:
            return self._refuse(reply.status, (reply.body or {}).get("reason", ""), reply.headers)
        with self.lock:
            self.accepted.append({"token": token, "headers": headers, "payload": payload})
        return Answer(200, b"", {"apns-id": notification})

    def _check_token(self, authorization: str) -> str:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"])
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return "InvalidProviderToken"
        if not isinstance(claims.get("iat"), int) or time.time() - claims["iat"] > 3600:
            return "ExpiredProviderToken"
        with self.lock:
            self.provider_tokens.add(token)
        return ""


# --- FCM ----------------------------------------------------------------------------

_NOTIFICATION = {"title", "body", "image"}
_ANDROID = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "direct_boot_ok",
}
_ANDROID_NOTIFICATION = {
    "title",
    "body",
    "icon",
    "color",
    "sound",
    "tag",
    "click_action",
    "channel_id",
    "image",
    "notification_count",
    "notification_priority",
}
_MESSAGE = {
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
}


def message_problems(message: Any) -> list[str]:
    """What FCM's HTTP v1 would refuse in ``message`` (the parts this project uses)."""
    if not isinstance(message, dict):
        return ["message is not an object"]
    problems = [f"Unknown name \"{key}\" at 'message'" for key in set(message) - _MESSAGE]
    targets = [key for key in ("token", "topic", "condition") if message.get(key)]
    if len(targets) != 1:
        problems.append("exactly one of token, topic, condition")
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or set(notification) - _NOTIFICATION:
        problems.append("message.notification has unknown fields")
    elif any(not isinstance(value, str) for value in notification.values()):
        problems.append("message.notification values are strings")
    data = message.get("data", {})
    if not isinstance(data, dict) or any(
        not isinstance(key, str) or not isinstance(value, str) for key, value in data.items()
    ):
        problems.append("message.data is a map of strings to strings")
    android = message.get("android", {})
    if not isinstance(android, dict) or set(android) - _ANDROID:
        problems.append("message.android has unknown fields")
    else:
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            problems.append("message.android.priority is NORMAL or HIGH")
        if "ttl" in android and not re.fullmatch(r"\d+(\.\d+)?s", str(android["ttl"])):
            problems.append("message.android.ttl is a duration like 3600s")
        extra = set(android.get("notification", {})) - _ANDROID_NOTIFICATION
        if extra:
            problems.append(f"message.android.notification has unknown fields {sorted(extra)}")
    return problems


def _fcm_error(status: int, name: str, message: str, code: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
    return {"error": error}


class FakeFcm(_App):
    def __init__(
        self,
        project_id: str,
        client_email: str,
        public_key: rsa.RSAPublicKey,
        token_seconds: int = 3600,
    ) -> None:
        super().__init__()
        self.project_id = project_id
        self.client_email = client_email
        self.public_key = public_key
        self.token_seconds = token_seconds
        self.base_url = ""
        self.tokens: dict[str, float] = {}
        self.accepted: list[dict[str, Any]] = []
        self.validated: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, version: str
    ) -> Answer:
        if method == "POST" and path == "/token":
            return self._token(body)
        if method == "POST" and path == f"/v1/projects/{self.project_id}/messages:send":
            return self._send(headers, body)
        return _json(404, _fcm_error(404, "NOT_FOUND", f"no {path}"))

    def _token(self, body: bytes) -> Answer:
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _json(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.public_key,
                algorithms=["RS256"],
                # google-auth names Google's token endpoint whatever the token URL.
                audience=[f"{self.base_url}/token", "https://oauth2.googleapis.com/token"],
            )
        except jwt.InvalidTokenError as error:
            return _json(400, {"error": "invalid_grant", "error_description": str(error)})
        if claims.get("iss") != self.client_email or "firebase.messaging" not in str(
            claims.get("scope", "")
        ):
            return _json(400, {"error": "invalid_scope"})
        token = "fake." + base64.urlsafe_b64encode(os.urandom(18)).decode()
        with self.lock:
            self.tokens[token] = time.time() + self.token_seconds
        return _json(
            200, {"access_token": token, "expires_in": self.token_seconds, "token_type": "Bearer"}
        )

    def _refuse(
        self,
        status: int,
        name: str,
        message: str,
        code: str = "",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        with self.lock:
            self.refused.append((status, code or name))
        return _json(status, _fcm_error(status, name, message, code), headers)

    def _send(self, headers: dict[str, str], body: bytes) -> Answer:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        expires = self.tokens.get(token)
        if scheme != "Bearer" or expires is None or expires < time.time():
            return self._refuse(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._refuse(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(request, dict) or set(request) - {"message", "validate_only"}:
            return self._refuse(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        message = request.get("message")
        problems = message_problems(message)
        if problems:
            return self._refuse(400, "INVALID_ARGUMENT", "; ".join(problems), "INVALID_ARGUMENT")
        assert isinstance(message, dict)
        reply = self.scripted(str(message.get("token", "")))
        if reply is not None and reply.status != 200:
            error = reply.body or {}
            return self._refuse(
                reply.status,
                error.get("status", ""),
                error.get("message", ""),
                error.get("code", ""),
                reply.headers,
            )
        with self.lock:
            (self.validated if request.get("validate_only") else self.accepted).append(message)
            count = len(self.accepted) + len(self.validated)
        return _json(200, {"name": f"projects/{self.project_id}/messages/{count}"})


def fcm_error(status: int, name: str, code: str = "", retry_after: str = "") -> Reply:
    """A scripted FCM error answer."""
    headers = {"retry-after": retry_after} if retry_after else {}
    return Reply(status, {"status": name, "message": f"fake {name}", "code": code}, headers)


# --- Web Push -----------------------------------------------------------------------


@dataclass
class Browser:
    """A subscription's private half, as a browser keeps it."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class FakeWebPush(_App):
    def __init__(self) -> None:
        super().__init__()
        self.base_url = ""
        self.browsers: dict[str, Browser] = {}
        self.received: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []

    def subscribe(self) -> WebPushSubscription:
        """A new browser's subscription to this push service."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        name = uuid.uuid4().hex
        with self.lock:
            self.browsers[name] = Browser(key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        endpoint = f"{self.base_url}/push/{name}"
        return WebPushSubscription(endpoint=endpoint, p256dh=_b64(public), auth=_b64(auth))

    def _refuse(self, status: int, why: str, headers: dict[str, str] | None = None) -> Answer:
        with self.lock:
            self.refused.append((status, why))
        return _json(status, {"reason": why}, headers)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, version: str
    ) -> Answer:
        match = re.fullmatch(r"/push/([0-9a-f]+)", path)
        browser = self.browsers.get(match.group(1)) if match else None
        if method != "POST" or match is None or browser is None:
            return self._refuse(404, "no such subscription")
        problem = self._check_vapid(headers.get("authorization", ""))
        if problem:
            return self._refuse(401 if "token" in problem else 403, problem)
        if not headers.get("ttl", "").isdigit():
            return self._refuse(400, "TTL header missing")
        if headers.get("urgency", "normal") not in ("very-low", "low", "normal", "high"):
            return self._refuse(400, "bad Urgency")
        if not re.fullmatch(r"[A-Za-z0-9_-]{0,32}", headers.get("topic", "")):
            return self._refuse(400, "bad Topic")
        if headers.get("content-encoding") != "aes128gcm":
            return self._refuse(415, "aes128gcm only")
        if len(body) > 4096:
            return self._refuse(413, "payload too large")
        try:
            plaintext = http_ece.decrypt(
                body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
            )
            payload = orjson.loads(plaintext)
        except Exception as error:  # any failure to decrypt is the sender's
            return self._refuse(400, f"cannot decrypt: {type(error).__name__}")
        reply = self.scripted(match.group(1))
        if reply is not None and reply.status not in (200, 201):
            return self._refuse(reply.status, "scripted", reply.headers)
        with self.lock:
            self.received.append(
                {
                    "subscription": match.group(1),
                    "headers": headers,
                    "payload": payload,
                    "size": len(body),
                }
            )
        return Answer(201, b"", {"location": f"/message/{uuid.uuid4().hex}"})

    def _check_vapid(self, authorization: str) -> str:
        scheme, _, rest = authorization.partition(" ")
        parts = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        if scheme.lower() != "vapid" or "t" not in parts or "k" not in parts:
            return "VAPID token missing"
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), _unb64(parts["k"])
            )
            claims = jwt.decode(
                parts["t"],
                public,
                algorithms=["ES256"],
                audience=self.base_url,
            )
        except (jwt.InvalidTokenError, ValueError) as error:
            return f"VAPID token invalid: {error}"
        if claims.get("exp", 0) > time.time() + 86400:
            return "VAPID token expires in more than 24 hours"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            return "VAPID subject is not mailto: or https:"
        return ""


# --- serving ------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    port: int
    ca_file: Path | None
    """The self-signed certificate of a TLS server (a client's CA file)."""


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fake-cert.pem", directory / "fake-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextmanager
def serve(app: _App, tls: bool = False) -> Iterator[Served]:
    """Run ``app`` on 127.0.0.1 (a free port) in a thread until the block ends; with
    ``tls``, over HTTPS with a self-signed certificate (ALPN h2 and http/1.1)."""
    try:
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config
    except ImportError:  # a development dependency
        raise RuntimeError(
            "the push fakes need hypercorn: pip install 'reachstream[dev]'"
        ) from None

    directory = Path(tempfile.mkdtemp(prefix="reach-fake-"))

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.h2_max_concurrent_streams = 1000
    config.keep_alive_timeout = 60
    config.keep_alive_max_requests = 1_000_000_000
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1
    ca_file: Path | None = None
    if tls:
        ca_file, key_file = self_signed(directory)
        config.certfile, config.keyfile = str(ca_file), str(key_file)
        config.alpn_protocols = ["h2", "http/1.1"]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def run() -> None:
        started.set()
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    started.wait(5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield Served(f"{'https' if tls else 'http'}://127.0.0.1:{port}", port, ca_file)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- the three, with credentials made for them ------------------------------------

KEY_ID = "ABC123DEFG"
TEAM_ID = "TEAM456789"
TOPIC = "com.example.shop"
PROJECT = "shop-test"
CLIENT_EMAIL = "reach@shop-test.iam.gserviceaccount.com"


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Fakes:
    apns: FakeApns
    apns_sandbox: FakeApns
    fcm: FakeFcm
    web_push: FakeWebPush
    settings: dict[str, Any]
    """Settings fields that point the adapters at the fakes with the credentials."""
    directory: Path

    def make_settings(self, **more: Any) -> Settings:
        return Settings(**{**self.settings, **more})


@contextmanager
def push_fakes(directory: Path) -> Iterator[Fakes]:
    apns_key = ec.generate_private_key(ec.SECP256R1())
    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vapid = ec.generate_private_key(ec.SECP256R1())
    apns = FakeApns(apns_key.public_key(), KEY_ID, TEAM_ID, frozenset({TOPIC}))
    sandbox = FakeApns(apns_key.public_key(), KEY_ID, TEAM_ID, frozenset({TOPIC}))
    fcm = FakeFcm(PROJECT, CLIENT_EMAIL, fcm_key.public_key())
    web_push = FakeWebPush()
    with ExitStack() as stack:
        served_apns = stack.enter_context(serve(apns))
        served_sandbox = stack.enter_context(serve(sandbox))
        served_fcm = stack.enter_context(serve(fcm))
        served_web = stack.enter_context(serve(web_push, tls=True))
        fcm.base_url = served_fcm.url
        web_push.base_url = served_web.url
        account = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "k1",
            "private_key": _pem(fcm_key),
            "client_email": CLIENT_EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        account_file = directory / "service-account.json"
        account_file.write_text(json.dumps(account))
        apns_file = directory / "AuthKey.p8"
        apns_file.write_text(_pem(apns_key))
        vapid_file = directory / "vapid.pem"
        vapid_file.write_text(_pem(vapid))
        assert served_web.ca_file is not None
        ca_file = directory / "fake-ca.pem"
        ca_file.write_bytes(served_web.ca_file.read_bytes())
        settings = {
            "data_dir": directory / "data",
            "fcm_service_account_file": account_file,
            "fcm_base_url": served_fcm.url,
            "fcm_token_url": f"{served_fcm.url}/token",
            "apns_key_file": apns_file,
            "apns_key_id": KEY_ID,
            "apns_team_id": TEAM_ID,
            "apns_production_url": served_apns.url,
            "apns_sandbox_url": served_sandbox.url,
            "vapid_private_key_file": vapid_file,
            "vapid_subject": "mailto:push@shop.example.com",
            "webhook_allow": "127.0.0.1",
            "push_ca_file": ca_file,
        }
        yield Fakes(apns, sandbox, fcm, web_push, settings, directory)
