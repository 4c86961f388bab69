"""Credentials made for a test (an APNs .p8 key, an FCM service account, a VAPID key)
and the push providers' fakes (benchmarks/push_fakes.py) started with them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from benchmarks.push_fakes import FakeApns, FakeFcm, FakeWebPush, serve
from streams.settings import Settings

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
