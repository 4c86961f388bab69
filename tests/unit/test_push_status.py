"""Push credentials never show: not in ``/v1/status`` (which says which adapter serves
each channel), not in the settings' repr, not in the adapters' log lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.server import HttpApi
from delivery import adapters as channel_adapters
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from tests.unit.test_journey_routes import FoldingProducer


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _secrets() -> dict[str, str]:
    account = {
        "type": "service_account",
        "project_id": "shop",
        "private_key": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "client_email": "reach@shop.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return {
        "REACH_FCM_SERVICE_ACCOUNT_JSON": json.dumps(account),
        "REACH_APNS_KEY": _pem(ec.generate_private_key(ec.SECP256R1())),
        "REACH_APNS_KEY_ID": "ABC123DEFG",
        "REACH_APNS_TEAM_ID": "TEAM456789",
        "REACH_VAPID_PRIVATE_KEY": _pem(ec.generate_private_key(ec.SECP256R1())),
        "REACH_VAPID_SUBJECT": "mailto:push@shop.example.com",
    }


def _key_lines(secrets: dict[str, str]) -> list[str]:
    """Distinctive pieces of every private key: one line of base64 each."""
    keys = [secrets["REACH_APNS_KEY"], secrets["REACH_VAPID_PRIVATE_KEY"]]
    keys.append(json.loads(secrets["REACH_FCM_SERVICE_ACCOUNT_JSON"])["private_key"])
    return [key.splitlines()[2] for key in keys]


async def test_status_names_the_adapters_and_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = _secrets()
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=tmp_path)
    assert settings.apns_configured
    assert settings.fcm_configured
    assert settings.web_push_configured
    with caplog.at_level(logging.DEBUG):
        adapters = channel_adapters.build(settings)
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    engine.definitions.ready.set()
    engine.status_parts["channels"] = lambda: channel_adapters.served(adapters)
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, FoldingProducer(engine))
    async with TestClient(TestServer(http.build(), host="127.0.0.1")) as client:
        response = await client.get("/v1/status")
        assert response.status == 200
        text = await response.text()
    channels = json.loads(text)["channels"]
    assert channels["push"] == "delivery.push.PushAdapter"
    assert channels["web_push"] == "delivery.push.WebPushAdapter"
    assert channels["sms"] == "simulated"
    shown = [text, repr(settings), str(settings.model_dump()), caplog.text]
    for piece in _key_lines(secrets):
        assert all(piece not in place for place in shown)
