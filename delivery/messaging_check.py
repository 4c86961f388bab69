"""``reach channels check`` for SMS, WhatsApp and in-app: whether each configured
provider's settings have the right shape (ids that look like the provider's, the
secrets present and readable, a sender). Each line names what was checked, never a
secret. ``delivery.push_check`` does the same for the push providers.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from delivery import sms, whatsapp
from delivery.provider import secret
from delivery.push_check import Check
from streams.settings import Settings

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_PHONE_NUMBER_ID = re.compile(r"^[0-9]{5,32}$")


def check_messaging(settings: Settings) -> list[Check]:
    return [_sms(settings), _whatsapp(settings), _inapp(settings)]


def _present(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    """The problem with a secret setting (None: it has a value)."""
    try:
        found = secret(value, file)
    except OSError as error:
        return f"{name}_FILE cannot be read ({error.strerror})"
    return None if found else f"{name} or {name}_FILE is not set"


def _sms(settings: Settings) -> Check:
    if not sms.configured(settings):
        return Check("SMS", None, "not configured (REACH_TWILIO_ACCOUNT_SID): simulated")
    sid = settings.twilio_account_sid
    problems = []
    if not _ACCOUNT_SID.match(sid):
        problems.append("the account SID is not AC followed by 32 hex digits")
    token = _present(
        settings.twilio_auth_token, settings.twilio_auth_token_file, "REACH_TWILIO_AUTH_TOKEN"
    )
    if token:
        problems.append(token)
    service = settings.twilio_messaging_service_sid
    if service and not _SERVICE_SID.match(service):
        problems.append("the messaging service SID is not MG followed by 32 hex digits")
    if not service and not settings.twilio_from:
        problems.append("no sender: set REACH_TWILIO_FROM or REACH_TWILIO_MESSAGING_SERVICE_SID")
    if problems:
        return Check("SMS", False, "; ".join(problems))
    sender = f"service {service}" if service else f"from {settings.twilio_from}"
    return Check("SMS", True, f"account {sid}, {sender}, {settings.twilio_base_url}")


def _whatsapp(settings: Settings) -> Check:
    if not whatsapp.configured(settings):
        return Check("WhatsApp", None, "not configured (REACH_WHATSAPP_PHONE_NUMBER_ID): simulated")
    number = settings.whatsapp_phone_number_id
    problems = []
    if not _PHONE_NUMBER_ID.match(number):
        problems.append("the phone number id is not the Cloud API's numeric id")
    for value, file, name in (
        (
            settings.whatsapp_access_token,
            settings.whatsapp_access_token_file,
            "REACH_WHATSAPP_ACCESS_TOKEN",
        ),
        # Without it no status webhook can be verified: deliveries and reads are lost.
        (
            settings.whatsapp_app_secret,
            settings.whatsapp_app_secret_file,
            "REACH_WHATSAPP_APP_SECRET",
        ),
    ):
        problem = _present(value, file, name)
        if problem:
            problems.append(problem)
    if problems:
        return Check("WhatsApp", False, "; ".join(problems))
    api = f"{settings.whatsapp_base_url} {settings.whatsapp_api_version}"
    return Check("WhatsApp", True, f"phone number id {number}, {api}")


def _inapp(settings: Settings) -> Check:
    if not settings.inapp:
        return Check("in-app", None, "not configured (REACH_INAPP=true): simulated")
    detail = (
        f"kept in the data directory, {settings.inapp_max_per_user} per user, "
        f"{settings.inapp_days:g} days"
    )
    return Check("in-app", True, detail)
