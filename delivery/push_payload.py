"""The providers' payloads of a push or web push preset, and their size limits.

Pure: a rendered ``PushContent`` becomes an APNs payload (``aps`` with the alert,
badge and sound; the deep link, image and custom data beside it) or an FCM HTTP v1
``message`` (notification, string data, Android options); a ``WebPushContent``
becomes the JSON a service worker reads. A payload over its provider's limit is a
problem named at ``presets apply`` (as written) and when rendered for a user.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.presets import PresetDefinition, PushContent, WebPushContent

APNS_LIMIT = 4096
"""Bytes of an APNs notification payload (JSON)."""
FCM_LIMIT = 4096
"""Bytes of an FCM message's notification and data."""
WEB_PUSH_RECORD = 4096
"""Bytes of an encrypted web push message that every push service accepts."""
WEB_PUSH_OVERHEAD = 16 + 4 + 1 + 65 + 1 + 16
"""aes128gcm (RFC 8188/8291): salt, record size, key id length, the sender's public
key, the padding delimiter and the authentication tag."""
WEB_PUSH_LIMIT = WEB_PUSH_RECORD - WEB_PUSH_OVERHEAD
"""Bytes of plaintext that encrypt to at most ``WEB_PUSH_RECORD`` (3993)."""


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def apns_payload(content: PushContent) -> dict[str, Any]:
    alert = {"title": content.title, "body": content.body}
    aps: dict[str, Any] = {"alert": alert}
    if content.badge is not None:
        aps["badge"] = content.badge
    if content.sound is not None:
        aps["sound"] = content.sound
    if content.image is not None:
        aps["mutable-content"] = 1  # a notification service extension fetches the image
    payload: dict[str, Any] = {"aps": aps, **content.data}
    if content.deep_link is not None:
        payload["deep_link"] = content.deep_link
    if content.image is not None:
        payload["image"] = content.image
    return payload


def fcm_message(content: PushContent, token: str = "") -> dict[str, Any]:
    """The ``message`` of ``projects/{id}/messages:send`` for an Android device."""
    notification: dict[str, Any] = {"title": content.title, "body": content.body}
    if content.image is not None:
        notification["image"] = content.image
    data = dict(content.data)
    if content.deep_link is not None:
        data["deep_link"] = content.deep_link
    android: dict[str, Any] = {"priority": "HIGH" if content.priority == "high" else "NORMAL"}
    if content.ttl_seconds is not None:
        android["ttl"] = f"{content.ttl_seconds}s"
    if content.collapse_id is not None:
        android["collapse_key"] = content.collapse_id
    android_notification: dict[str, Any] = {}
    if content.sound is not None:
        android_notification["sound"] = content.sound
    if content.badge is not None:
        android_notification["notification_count"] = content.badge
    if android_notification:
        android["notification"] = android_notification
    message: dict[str, Any] = {"notification": notification, "android": android}
    if data:
        message["data"] = data
    if token:
        message["token"] = token
    return message


def web_push_payload(content: WebPushContent) -> dict[str, Any]:
    """What the site's service worker receives (``event.data.json()``)."""
    payload: dict[str, Any] = {"title": content.title, "body": content.body}
    for name in ("url", "icon", "image"):
        value = getattr(content, name)
        if value is not None:
            payload[name] = value
    if content.actions:
        payload["actions"] = [
            action.model_dump(exclude_none=True, mode="json") for action in content.actions
        ]
    return payload


def size_problems(content: object) -> list[str]:
    """One line per payload of ``content`` over its provider's limit."""
    problems: list[str] = []
    if isinstance(content, PushContent):
        apns = len(_json(apns_payload(content)))
        if apns > APNS_LIMIT:
            problems.append(
                f"the APNs payload is {apns} bytes, over APNs' limit of {APNS_LIMIT}: "
                "shorten the title, body or data"
            )
        fcm = len(_json(fcm_message(content)))
        if fcm > FCM_LIMIT:
            problems.append(
                f"the FCM message is {fcm} bytes, over FCM's limit of {FCM_LIMIT}: "
                "shorten the title, body or data"
            )
    elif isinstance(content, WebPushContent):
        size = len(_json(web_push_payload(content)))
        if size > WEB_PUSH_LIMIT:
            problems.append(
                f"the web push payload is {size} bytes, over the {WEB_PUSH_LIMIT} that "
                f"encrypt to the push services' limit of {WEB_PUSH_RECORD}"
            )
    return problems


def preset_problems(preset: PresetDefinition) -> list[str]:
    """Size problems of a preset's contents as written (placeholders unfilled)."""
    contents = [("content", preset.content)]
    contents += [(f"variant '{key}'", item) for key, item in preset.variants.items()]
    return [f"{where}: {problem}" for where, item in contents for problem in size_problems(item)]
