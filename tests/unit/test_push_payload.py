"""The providers' payloads of push and web push presets, and their size limits: as
written (``presets apply``) and once rendered for a user."""

from __future__ import annotations

import base64
import os

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from delivery.push_payload import (
    APNS_LIMIT,
    WEB_PUSH_LIMIT,
    WEB_PUSH_RECORD,
    apns_payload,
    fcm_message,
    preset_problems,
)
from delivery.render import RenderedContent, RenderFailure, render
from delivery.web_push import encrypt
from schemas.devices import WebPushSubscription
from schemas.presets import PresetDefinition, PushContent


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def test_the_web_push_plaintext_limit_encrypts_to_the_record_limit() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = os.urandom(16)
    subscription = WebPushSubscription(
        endpoint="https://push.example.com/x", p256dh=_b64(public), auth=_b64(auth)
    )
    fits = encrypt(subscription, b"x" * WEB_PUSH_LIMIT)
    assert len(fits) == WEB_PUSH_RECORD
    assert len(encrypt(subscription, b"x" * (WEB_PUSH_LIMIT + 1))) > WEB_PUSH_RECORD
    plain = http_ece.decrypt(fits, private_key=key, auth_secret=auth, version="aes128gcm")
    assert plain == b"x" * WEB_PUSH_LIMIT


def preset(channel: str, **content: object) -> PresetDefinition:
    return PresetDefinition.model_validate(
        {"id": "p", "name": "P", "channel": channel, "content": content}
    )


def test_a_push_preset_over_4_kb_as_written_is_refused() -> None:
    big = preset("push", title="Hi", body="é" * 2100)  # 4200 bytes in UTF-8
    [problem] = [p for p in preset_problems(big) if "APNs" in p]
    assert problem.startswith("content: the APNs payload is")
    assert f"over APNs' limit of {APNS_LIMIT}" in problem
    assert preset_problems(preset("push", title="Hi", body="short")) == []


def test_a_web_push_preset_over_the_limit_is_refused() -> None:
    big = preset("web_push", title="Hi", body="x" * 4000)
    [problem] = preset_problems(big)
    assert "web push payload" in problem
    assert str(WEB_PUSH_LIMIT) in problem


def test_a_payload_that_grows_past_the_limit_when_rendered_fails_to_render() -> None:
    written = preset("push", title="Hi", body="{{tag.Note}} and more")
    assert preset_problems(written) == []
    small = render(written, {"Note": "a"}, {}, "u-1")
    assert isinstance(small, RenderedContent)
    large = render(written, {"Note": "n" * 4090}, {}, "u-1")
    assert isinstance(large, RenderFailure)
    assert "over APNs' limit" in large.message


def test_custom_data_is_rendered_and_sent_as_strings() -> None:
    written = preset("push", title="Hi", body="b", data={"coupon": "{{tag.Coupon|none}}"})
    rendered = render(written, {"Coupon": "SAVE10"}, {}, "u-1")
    assert isinstance(rendered, RenderedContent)
    content = rendered.content
    assert isinstance(content, PushContent)
    assert apns_payload(content)["coupon"] == "SAVE10"
    assert fcm_message(content, "t")["data"] == {"coupon": "SAVE10"}


def test_reserved_data_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        preset("push", title="Hi", body="b", data={"aps": "x"})
    with pytest.raises(ValidationError, match="reserved"):
        preset("push", title="Hi", body="b", data={"google.x": "x"})
