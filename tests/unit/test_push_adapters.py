"""The push and web push adapters against local fakes of APNs (HTTP/2, JWT checked),
FCM (OAuth token and message schema checked) and a web push service (payload
decrypted): what arrives, and how each provider answer maps to an outcome."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks.push_fakes import Reply, fcm_error
from delivery.apns import TOKEN_LIFETIME, ApnsClient, apns_config, apns_id
from delivery.channels import Message
from delivery.provider import ProviderUnavailable
from delivery.push import PushAdapter, WebPushAdapter, push_channel, web_push_channel
from delivery.push_payload import web_push_payload
from delivery.render import RenderedContent
from delivery.simulator import SimulatedChannels
from schemas.commands import SendCommand, command_id
from schemas.devices import PushDevice, WebPushSubscription, device_id
from schemas.journey_nodes import Channel
from schemas.presets import PushContent, WebPushAction, WebPushContent
from streams.settings import Settings
from tests.push_fakes import TOPIC, Fakes, push_fakes

PUSH = PushContent(
    title="Your cart misses you",
    body="Ana, 2 items are waiting",
    deep_link="shop://cart",
    image="https://cdn.example.com/cart.png",
    badge=2,
    sound="default",
    data={"cart": "c-1"},
    collapse_id="cart",
    ttl_seconds=3600,
)
WEB = WebPushContent(
    title="Back in stock",
    body="The shoes you liked",
    url="https://shop.example.com/p/1",
    icon="https://cdn.example.com/i.png",
    actions=(WebPushAction(action="buy", title="Buy"),),
    ttl_seconds=600,
    urgency="high",
    topic="stock",
)
AT = datetime(2026, 11, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    with push_fakes(tmp_path_factory.mktemp("push")) as started:
        yield started


@pytest.fixture
async def push(fakes: Fakes) -> AsyncIterator[PushAdapter]:
    adapter = PushAdapter(fakes.make_settings(push_retry_after_max_seconds=2))
    await adapter.start()
    yield adapter
    await adapter.stop()


@pytest.fixture
async def web(fakes: Fakes) -> AsyncIterator[WebPushAdapter]:
    adapter = WebPushAdapter(fakes.make_settings(push_retry_after_max_seconds=2))
    await adapter.start()
    yield adapter
    await adapter.stop()


def token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def ios(environment: str = "production") -> PushDevice:
    return PushDevice.model_validate(
        {"platform": "ios", "token": token(), "app_id": TOPIC, "environment": environment}
    )


def android() -> PushDevice:
    return PushDevice(platform="android", token=token(), app_id="com.example.shop")  # type: ignore[arg-type]


def send(
    channel: str,
    content: PushContent | WebPushContent,
    devices: list[Any] | None = None,
    address: str | None = None,
) -> Message:
    command = SendCommand(
        command_id=command_id("cart", 1, "r1", "u-1", "push", 0),
        user_id="u-1",
        channel=channel,
        preset="p",
        journey_id="cart",
        journey_version=1,
        run="r1",
        step="push",
        visit=0,
        at=AT,
        address=address,
        devices=devices or [],
    )
    rendered = RenderedContent(
        preset_id="p", version=1, channel=Channel(channel), language=None, content=content
    )
    return Message(command, rendered)


# --- APNs ---------------------------------------------------------------------------


async def test_an_ios_device_gets_an_apns_notification_over_http2(
    push: PushAdapter, fakes: Fakes
) -> None:
    device = ios()
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "delivered", result.outcome.reason
    [got] = [a for a in fakes.apns.accepted if a["token"] == device.token]
    assert fakes.apns.versions == {"2"}
    headers = got["headers"]
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "cart"
    assert headers["apns-expiration"] == str(int(AT.timestamp()) + 3600)
    command = send("push", PUSH, [device]).command.command_id
    assert headers["apns-id"] == apns_id(command, device_id(device))
    assert got["payload"]["aps"] == {
        "alert": {"title": PUSH.title, "body": PUSH.body},
        "badge": 2,
        "sound": "default",
        "mutable-content": 1,
    }
    assert got["payload"]["deep_link"] == "shop://cart"
    assert got["payload"]["cart"] == "c-1"


async def test_a_sandbox_device_goes_to_the_sandbox_host(push: PushAdapter, fakes: Fakes) -> None:
    device = ios("sandbox")
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "delivered"
    assert [a["token"] for a in fakes.apns_sandbox.accepted] == [device.token]
    assert all(a["token"] != device.token for a in fakes.apns.accepted)


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken")])
async def test_a_gone_apns_token_is_unregistered(
    push: PushAdapter, fakes: Fakes, status: int, reason: str
) -> None:
    device = ios()
    fakes.apns.script(device.token, Reply(status, {"reason": reason}))
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "failed"
    assert reason in (result.outcome.reason or "")
    assert result.unregistered == (device_id(device),)


async def test_apns_429_is_tried_again_after_retry_after_with_the_same_apns_id(
    push: PushAdapter, fakes: Fakes
) -> None:
    device = ios()
    fakes.apns.script(device.token, Reply(429, {"reason": "TooManyRequests"}, {"retry-after": "1"}))
    started = datetime.now(UTC)
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "delivered"
    assert datetime.now(UTC) - started >= timedelta(seconds=1)
    assert (429, "TooManyRequests") in fakes.apns.refused
    [got] = [a for a in fakes.apns.accepted if a["token"] == device.token]
    assert got["headers"]["apns-id"] == apns_id(
        send("push", PUSH).command.command_id, device_id(device)
    )


async def test_apns_500_every_time_leaves_the_command_to_the_worker(
    push: PushAdapter, fakes: Fakes
) -> None:
    device = ios()
    fakes.apns.script(device.token, *[Reply(500, {"reason": "InternalServerError"})] * 3)
    with pytest.raises(ProviderUnavailable, match="APNs 500"):
        await push.deliver(send("push", PUSH, [device]))


async def test_a_long_retry_after_is_left_to_the_worker(push: PushAdapter, fakes: Fakes) -> None:
    device = ios()
    fakes.apns.script(
        device.token, Reply(429, {"reason": "TooManyRequests"}, {"retry-after": "60"})
    )
    started = datetime.now(UTC)
    with pytest.raises(ProviderUnavailable) as raised:
        await push.deliver(send("push", PUSH, [device]))
    assert datetime.now(UTC) - started < timedelta(seconds=5)
    # The worker is told how long the provider asked it to wait.
    assert raised.value.retry_after == 60
    assert raised.value.unregistered == ()


async def test_a_gone_device_is_named_when_another_leaves_the_command_to_the_worker(
    push: PushAdapter, fakes: Fakes
) -> None:
    gone, busy = ios(), ios()
    fakes.apns.script(gone.token, Reply(410, {"reason": "Unregistered"}))
    fakes.apns.script(busy.token, Reply(429, {"reason": "TooManyRequests"}, {"retry-after": "90"}))
    with pytest.raises(ProviderUnavailable) as raised:
        await push.deliver(send("push", PUSH, [gone, busy]))
    assert raised.value.unregistered == (device_id(gone),)
    assert raised.value.retry_after == 90


async def test_apns_payload_too_large_fails(push: PushAdapter, fakes: Fakes) -> None:
    device = ios()
    fakes.apns.script(device.token, Reply(413, {"reason": "PayloadTooLarge"}))
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "failed"
    assert "PayloadTooLarge" in (result.outcome.reason or "")
    assert result.unregistered == ()


async def test_the_provider_token_is_reused_and_made_again_before_an_hour(fakes: Fakes) -> None:
    now = [1_000_000.0]
    client = ApnsClient(apns_config(fakes.make_settings()), 5, clock=lambda: now[0])
    first = client.provider_token()
    now[0] += 20 * 60 + 1
    assert client.provider_token() == first  # not more often than every 20 minutes
    now[0] += TOKEN_LIFETIME - 20 * 60
    second = client.provider_token()
    assert second != first  # before APNs' hour is up
    assert client.tokens_made == 2
    await client.close()


async def test_an_expired_provider_token_is_made_again_and_sent_once_more(
    push: PushAdapter, fakes: Fakes
) -> None:
    device = ios()
    fakes.apns.script(device.token, Reply(403, {"reason": "ExpiredProviderToken"}))
    await push.start()
    assert push.apns is not None
    push.apns.provider_token()
    made = push.apns.tokens_made
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "delivered"
    assert push.apns.tokens_made == made + 1


async def test_requests_refused_at_once_for_a_stale_token_make_one_new_token(
    push: PushAdapter, fakes: Fakes
) -> None:
    devices = [ios() for _ in range(4)]
    for device in devices:
        fakes.apns.script(device.token, Reply(403, {"reason": "ExpiredProviderToken"}))
    await push.start()
    assert push.apns is not None
    push.apns.provider_token()
    made = push.apns.tokens_made
    result = await push.deliver(send("push", PUSH, devices))
    assert result.outcome.status == "delivered"
    assert result.outcome.reason is None  # every device accepted
    assert push.apns.tokens_made == made + 1


async def test_a_provider_token_signed_by_another_key_is_refused(
    fakes: Fakes, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "other.p8").write_bytes(pem)
    adapter = PushAdapter(fakes.make_settings(apns_key_file=tmp_path / "other.p8", push_attempts=1))
    # A key APNs does not know is the deployment's fault: the worker tries later.
    with pytest.raises(ProviderUnavailable, match="InvalidProviderToken"):
        await adapter.deliver(send("push", PUSH, [ios()]))
    await adapter.stop()


# --- FCM ----------------------------------------------------------------------------


async def test_an_android_device_gets_an_fcm_message(push: PushAdapter, fakes: Fakes) -> None:
    device = android()
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "delivered", result.outcome.reason
    [got] = [m for m in fakes.fcm.accepted if m["token"] == device.token]
    assert got["notification"] == {
        "title": PUSH.title,
        "body": PUSH.body,
        "image": "https://cdn.example.com/cart.png",
    }
    assert got["data"] == {"cart": "c-1", "deep_link": "shop://cart"}
    assert got["android"]["ttl"] == "3600s"
    assert got["android"]["collapse_key"] == "cart"
    assert got["android"]["notification"] == {"sound": "default", "notification_count": 2}


async def test_the_access_token_is_cached_and_refreshed_before_it_expires(
    push: PushAdapter, fakes: Fakes
) -> None:
    for _ in range(3):
        assert (await push.deliver(send("push", PUSH, [android()]))).outcome.status == "delivered"
    assert push.fcm is not None
    assert push.fcm.refreshes == 1
    credentials = push.fcm.config.credentials
    credentials.expiry = (datetime.now(UTC) + timedelta(minutes=4)).replace(tzinfo=None)
    assert (await push.deliver(send("push", PUSH, [android()]))).outcome.status == "delivered"
    assert push.fcm.refreshes == 2


async def test_an_unregistered_fcm_token_is_unregistered(push: PushAdapter, fakes: Fakes) -> None:
    device = android()
    fakes.fcm.script(device.token, fcm_error(404, "NOT_FOUND", "UNREGISTERED"))
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "failed"
    assert "UNREGISTERED" in (result.outcome.reason or "")
    assert result.unregistered == (device_id(device),)


async def test_fcm_invalid_argument_fails_with_the_reason(push: PushAdapter, fakes: Fakes) -> None:
    device = android()
    fakes.fcm.script(device.token, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"))
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "failed"
    assert "INVALID_ARGUMENT" in (result.outcome.reason or "")
    assert result.unregistered == ()


async def test_fcm_429_honours_retry_after(push: PushAdapter, fakes: Fakes) -> None:
    device = android()
    fakes.fcm.script(device.token, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "1"))
    started = datetime.now(UTC)
    result = await push.deliver(send("push", PUSH, [device]))
    assert result.outcome.status == "delivered"
    assert datetime.now(UTC) - started >= timedelta(seconds=1)


async def test_fcm_unavailable_every_time_leaves_the_command_to_the_worker(
    push: PushAdapter, fakes: Fakes
) -> None:
    device = android()
    fakes.fcm.script(device.token, *[fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")] * 3)
    with pytest.raises(ProviderUnavailable, match="UNAVAILABLE"):
        await push.deliver(send("push", PUSH, [device]))


async def test_the_fake_refuses_a_message_fcm_would_refuse(fakes: Fakes) -> None:
    adapter = PushAdapter(fakes.make_settings())
    await adapter.start()
    assert adapter.fcm is not None
    bad = await adapter.fcm.send({"token": "t", "notification": {"title": "x", "badge": 1}})
    good = await adapter.fcm.send(
        {"token": "t", "notification": {"title": "x"}}, validate_only=True
    )
    await adapter.stop()
    assert bad.answer == "failed"
    assert "INVALID_ARGUMENT" in bad.reason
    assert good.answer == "accepted"
    assert fakes.fcm.validated[-1] == {"token": "t", "notification": {"title": "x"}}


async def test_a_token_tag_without_devices_is_an_fcm_token(push: PushAdapter, fakes: Fakes) -> None:
    legacy = token()
    result = await push.deliver(send("push", PUSH, address=legacy))
    assert result.outcome.status == "delivered"
    assert any(m["token"] == legacy for m in fakes.fcm.accepted)


async def test_every_device_is_sent_and_one_gone_is_named(push: PushAdapter, fakes: Fakes) -> None:
    phone, tablet, old = ios(), android(), android()
    fakes.fcm.script(old.token, fcm_error(404, "NOT_FOUND", "UNREGISTERED"))
    result = await push.deliver(send("push", PUSH, [phone, tablet, old]))
    assert result.outcome.status == "delivered"
    assert result.unregistered == (device_id(old),)
    assert any(a["token"] == phone.token for a in fakes.apns.accepted)
    assert any(m["token"] == tablet.token for m in fakes.fcm.accepted)


async def test_sends_of_one_app_keep_to_its_rate(fakes: Fakes) -> None:
    adapter = PushAdapter(fakes.make_settings(push_app_rate_per_second=4))
    devices = [android() for _ in range(8)]
    started = datetime.now(UTC)
    result = await adapter.deliver(send("push", PUSH, devices))
    elapsed = datetime.now(UTC) - started
    await adapter.stop()
    assert result.outcome.status == "delivered"
    assert elapsed >= timedelta(seconds=0.9)  # a burst of 4, then 4 more at 4/s


# --- Web Push -----------------------------------------------------------------------


async def test_a_web_push_arrives_encrypted_and_decrypts_to_the_payload(
    web: WebPushAdapter, fakes: Fakes
) -> None:
    subscription = fakes.web_push.subscribe()
    result = await web.deliver(send("web_push", WEB, [subscription]))
    assert result.outcome.status == "delivered", result.outcome.reason
    name = subscription.endpoint.rsplit("/", 1)[1]
    [got] = [r for r in fakes.web_push.received if r["subscription"] == name]
    assert got["payload"] == web_push_payload(WEB)
    assert got["payload"]["actions"] == [{"action": "buy", "title": "Buy"}]
    assert got["headers"]["ttl"] == "600"
    assert got["headers"]["urgency"] == "high"
    assert got["headers"]["topic"] == "stock"


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_unregistered(
    web: WebPushAdapter, fakes: Fakes, status: int
) -> None:
    subscription = fakes.web_push.subscribe()
    fakes.web_push.script(subscription.endpoint.rsplit("/", 1)[1], Reply(status))
    result = await web.deliver(send("web_push", WEB, [subscription]))
    assert result.outcome.status == "failed"
    assert result.unregistered == (device_id(subscription),)


async def test_web_push_413_fails_and_429_is_tried_again(web: WebPushAdapter, fakes: Fakes) -> None:
    large, busy = fakes.web_push.subscribe(), fakes.web_push.subscribe()
    fakes.web_push.script(large.endpoint.rsplit("/", 1)[1], Reply(413))
    fakes.web_push.script(busy.endpoint.rsplit("/", 1)[1], Reply(429, None, {"retry-after": "1"}))
    too_large = await web.deliver(send("web_push", WEB, [large]))
    assert too_large.outcome.status == "failed"
    assert "too large" in (too_large.outcome.reason or "")
    assert (await web.deliver(send("web_push", WEB, [busy]))).outcome.status == "delivered"


async def test_web_push_5xx_every_time_leaves_the_command_to_the_worker(
    web: WebPushAdapter, fakes: Fakes
) -> None:
    subscription = fakes.web_push.subscribe()
    fakes.web_push.script(subscription.endpoint.rsplit("/", 1)[1], *[Reply(503)] * 3)
    with pytest.raises(ProviderUnavailable, match="web push 503"):
        await web.deliver(send("web_push", WEB, [subscription]))


async def test_a_subscription_json_tag_is_a_subscription(web: WebPushAdapter, fakes: Fakes) -> None:
    subscription = fakes.web_push.subscribe()
    keys = {"p256dh": subscription.p256dh, "auth": subscription.auth}
    tag = json.dumps({"endpoint": subscription.endpoint, "keys": keys})
    assert (await web.deliver(send("web_push", WEB, address=tag))).outcome.status == "delivered"
    not_one = await web.deliver(send("web_push", WEB, address="someone@example.com"))
    assert not_one.outcome.status == "failed"


async def test_an_internal_endpoint_is_fenced(fakes: Fakes) -> None:
    adapter = WebPushAdapter(fakes.make_settings(webhook_allow=""))
    subscription = fakes.web_push.subscribe()
    result = await adapter.deliver(send("web_push", WEB, [subscription]))
    await adapter.stop()
    assert result.outcome.status == "failed"
    assert "not a public address" in (result.outcome.reason or "")
    assert not [
        r for r in fakes.web_push.received if subscription.endpoint.endswith(r["subscription"])
    ]


# --- which adapter ------------------------------------------------------------------


def test_without_credentials_the_simulator_serves_push(tmp_path: Path) -> None:
    bare = Settings(data_dir=tmp_path)
    assert isinstance(push_channel(bare), SimulatedChannels)
    assert isinstance(web_push_channel(bare), SimulatedChannels)


def test_with_credentials_the_providers_serve_push(fakes: Fakes) -> None:
    assert isinstance(push_channel(fakes.make_settings()), PushAdapter)
    assert isinstance(web_push_channel(fakes.make_settings()), WebPushAdapter)


def test_a_subscription_device_id_is_the_endpoints() -> None:
    one = WebPushSubscription(endpoint="https://push.example.com/a", p256dh="k", auth="a")
    assert device_id(one) == device_id(one.model_copy(update={"auth": "b"}))


# --- reach channels check -----------------------------------------------------------


def _env(fakes: Fakes, **more: object) -> dict[str, str]:
    values = {**fakes.settings, **more}
    return {f"REACH_{name.upper()}": str(value) for name, value in values.items()}


def test_channels_check_reads_the_credentials_and_prints_no_secret(fakes: Fakes) -> None:
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["channels", "check", "--live"], env=_env(fakes))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["FCM", "ok"]
    assert "project shop-test" in lines[0]
    assert lines[1].split()[:2] == ["APNs", "ok"]
    assert lines[2].split()[:3] == ["Web", "Push", "ok"]
    assert lines[3].split()[:3] == ["FCM", "live", "ok"]
    assert fakes.fcm.validated[-1]["topic"] == "reach-channels-check"
    account = json.loads((fakes.directory / "service-account.json").read_text())
    keys = [account["private_key"]]
    keys += [(fakes.directory / name).read_text() for name in ("AuthKey.p8", "vapid.pem")]
    for key in keys:
        assert key.splitlines()[1] not in result.output


def test_channels_check_names_a_broken_key_and_fails(fakes: Fakes, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    broken = tmp_path / "broken.p8"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    env = _env(fakes, apns_key_file=broken)
    result = CliRunner().invoke(main, ["channels", "check"], env=env)
    assert result.exit_code == 1
    assert "APNs       FAILED  the APNs key is not a PEM private key" in result.output


def test_channels_check_without_credentials_says_push_is_simulated(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["channels", "check"], env={"REACH_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0
    assert "push, web push and every other channel but" in result.output


def test_the_delivery_benchmark_runs_both_paths_to_completion() -> None:
    from benchmarks.delivery import run

    rows = run(count=20, web_count=10, concurrency=4)
    assert [row.commands for row in rows] == [20, 20, 10, 20, 20]
    assert all(row.worker > 0 and row.raw > 0 for row in rows)


def test_keys_of_the_wrong_kind_are_named(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from pydantic import SecretStr

    from delivery.provider import CredentialsError
    from delivery.web_push import vapid_key

    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    settings = Settings(data_dir=tmp_path, vapid_private_key=rsa_pem, vapid_subject="mailto:a@b.c")
    with pytest.raises(CredentialsError, match="not an EC P-256 key"):
        vapid_key(settings)
    with pytest.raises(CredentialsError, match="mailto: or https:"):
        vapid_key(
            settings.model_copy(
                update={"vapid_private_key": SecretStr(ec_pem), "vapid_subject": "a@b.c"}
            )
        )
