"""``reach channels check``: whether the push credentials configured have the right
shape (the keys load, the service account has its fields), and with ``live`` whether
FCM takes them (an access token, then a ``validate_only`` send to a topic, which
delivers nothing). Each line names what was checked, never a secret.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import serialization

from delivery.apns import apns_config
from delivery.fcm import FcmClient, fcm_config
from delivery.provider import CredentialsError, tls_context
from delivery.web_push import vapid_key
from streams.settings import Settings

LIVE_TOPIC = "reach-channels-check"


@dataclass(frozen=True, slots=True)
class Check:
    provider: str
    ok: bool | None
    """None: not configured (its channel is simulated or fails for its devices)."""
    detail: str


def check_shapes(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    if settings.fcm_configured:
        try:
            config = fcm_config(settings)
            account = config.credentials.service_account_email
            checks.append(Check("FCM", True, f"project {config.project_id}, account {account}"))
        except CredentialsError as error:
            checks.append(Check("FCM", False, str(error)))
    else:
        checks.append(Check("FCM", None, "not configured (REACH_FCM_SERVICE_ACCOUNT_FILE)"))
    if settings.apns_configured:
        try:
            apns = apns_config(settings)
            checks.append(Check("APNs", True, f"key {apns.key_id}, team {apns.team_id}, EC P-256"))
        except CredentialsError as error:
            checks.append(Check("APNs", False, str(error)))
    else:
        missing = "REACH_APNS_KEY_FILE, REACH_APNS_KEY_ID, REACH_APNS_TEAM_ID"
        checks.append(Check("APNs", None, f"not configured ({missing})"))
    if settings.web_push_configured:
        try:
            vapid = vapid_key(settings)
            public = vapid.public_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            server_key = base64.urlsafe_b64encode(public).decode().rstrip("=")
            detail = f"subject {settings.vapid_subject}, applicationServerKey {server_key}"
            checks.append(Check("Web Push", True, detail))
        except CredentialsError as error:
            checks.append(Check("Web Push", False, str(error)))
    else:
        missing = "REACH_VAPID_PRIVATE_KEY_FILE, REACH_VAPID_SUBJECT"
        checks.append(Check("Web Push", None, f"not configured ({missing})"))
    return checks


async def check_fcm_live(settings: Settings) -> Check:
    """An access token, then a ``validate_only`` message to a topic (FCM's dry run)."""
    try:
        config = fcm_config(settings)
    except CredentialsError as error:
        return Check("FCM live", False, str(error))
    async with httpx.AsyncClient(
        timeout=settings.push_timeout_seconds,
        verify=tls_context(settings.push_ca_file),
        trust_env=False,
    ) as http:
        client = FcmClient(config, http)
        message = {"topic": LIVE_TOPIC, "notification": {"title": "check", "body": "check"}}
        result = await client.send(message, validate_only=True)
    if result.answer == "accepted":
        return Check("FCM live", True, "access token issued; validate_only send accepted")
    return Check("FCM live", False, result.reason)
