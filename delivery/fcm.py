"""Firebase Cloud Messaging, HTTP v1: ``POST {base}/v1/projects/{id}/messages:send``
with an OAuth2 access token of a service account (``google-auth``).

The token is cached and refreshed five minutes before it expires (and once more when
FCM answers 401). Answers: 200 accepted; ``UNREGISTERED`` or 404 -> the device is gone;
``INVALID_ARGUMENT`` and other 4xx -> failed with FCM's message; 429, 5xx,
``UNAVAILABLE``, ``INTERNAL``, ``QUOTA_EXCEEDED`` -> later (``Retry-After`` honoured).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from delivery.provider import ACCEPTED, CredentialsError, DeviceResult, retry_after
from streams.settings import Settings

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
REFRESH_MARGIN = timedelta(minutes=5)
SERVICE_ACCOUNT_FIELDS = ("type", "project_id", "private_key", "client_email", "token_uri")
LATER = frozenset({"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED"})


def service_account_info(settings: Settings) -> dict[str, Any]:
    """The service account's JSON key, from the file or the environment, checked."""
    if settings.fcm_service_account_file is not None:
        path = Path(settings.fcm_service_account_file)
        try:
            text = path.read_text()
        except OSError as error:
            raise CredentialsError(f"FCM service account file: {error.strerror}") from None
    else:
        text = settings.fcm_service_account_json.get_secret_value()
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialsError("the FCM service account is not JSON") from None
    if not isinstance(info, dict):
        raise CredentialsError("the FCM service account is not a JSON object")
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not info.get(name)]
    if missing:
        raise CredentialsError(f"the FCM service account lacks {', '.join(missing)}")
    if info["type"] != "service_account":
        raise CredentialsError("the FCM key's type is not service_account")
    return info


@dataclass(frozen=True, slots=True)
class FcmConfig:
    project_id: str
    credentials: service_account.Credentials
    base_url: str


def fcm_config(settings: Settings) -> FcmConfig:
    info = service_account_info(settings)
    if settings.fcm_token_url:
        info = {**info, "token_uri": settings.fcm_token_url}
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE]
        )
    except ValueError:
        raise CredentialsError("the FCM service account's private key does not load") from None
    project = settings.fcm_project_id or str(info["project_id"])
    return FcmConfig(project, credentials, settings.fcm_base_url.rstrip("/"))


class FcmClient:
    def __init__(self, config: FcmConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.url = f"{config.base_url}/v1/projects/{config.project_id}/messages:send"
        self._lock = asyncio.Lock()
        self._request: Request | None = None
        self.refreshes = 0

    async def access_token(self, force: bool = False) -> str:
        credentials = self.config.credentials
        async with self._lock:
            expiry = credentials.expiry
            fresh = (
                credentials.token
                and expiry is not None
                and expiry.replace(tzinfo=UTC) - datetime.now(UTC) > REFRESH_MARGIN
            )
            if force or not fresh:
                if self._request is None:
                    self._request = Request()
                await asyncio.to_thread(credentials.refresh, self._request)
                self.refreshes += 1
            return str(credentials.token)

    async def send(self, message: dict[str, Any], validate_only: bool = False) -> DeviceResult:
        body: dict[str, Any] = {"message": message}
        if validate_only:
            body["validate_only"] = True
        try:
            token = await self.access_token()
        except GoogleAuthError as error:
            return DeviceResult("retry", f"FCM: no access token: {type(error).__name__}")
        try:
            response = await self._post(body, token)
            if response.status_code == 401:
                response = await self._post(body, await self.access_token(force=True))
        except httpx.HTTPError as error:
            return DeviceResult("retry", f"FCM: {type(error).__name__}")
        return answer(response)

    async def _post(self, body: dict[str, Any], token: str) -> httpx.Response:
        return await self.http.post(
            self.url, json=body, headers={"Authorization": f"Bearer {token}"}
        )


def answer(response: httpx.Response) -> DeviceResult:
    status = response.status_code
    if status == 200:
        return ACCEPTED
    code, message = _error(response)
    reason = f"FCM {status} {code}: {message}".rstrip(": ")
    if code == "UNREGISTERED" or status == 404:
        return DeviceResult("unregistered", reason)
    if status == 429 or status >= 500 or code in LATER or status == 401:
        return DeviceResult("retry", reason, retry_after(response.headers.get("retry-after")))
    return DeviceResult("failed", reason)


def _error(response: httpx.Response) -> tuple[str, str]:
    """(the FCM error code, else the status name; the message) of an error answer."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    code = str(error.get("status", ""))
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("errorCode"):
            code = str(detail["errorCode"])
    return code, str(error.get("message", ""))[:200]
