"""``reach channels check`` for SMS, WhatsApp and in-app: each configured provider's
settings checked for shape, named by what was checked, never by a secret."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cli.main import main
from delivery.messaging_check import check_messaging
from streams.settings import Settings

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f" * 32
WA_TOKEN = "EAAG-secret-access-token"
APP_SECRET = "app-secret-0123"


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_unconfigured_channels_are_named_as_simulated(tmp_path: Path) -> None:
    checks = {check.provider: check for check in check_messaging(_settings(tmp_path))}
    assert set(checks) == {"SMS", "WhatsApp", "in-app"}
    assert all(check.ok is None for check in checks.values())
    assert "REACH_TWILIO_ACCOUNT_SID" in checks["SMS"].detail


def test_a_complete_sms_and_whatsapp_setup_passes_and_prints_no_secret(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from="+14155550100",
        whatsapp_phone_number_id="106540352242922",
        whatsapp_access_token=WA_TOKEN,
        whatsapp_app_secret=APP_SECRET,
        inapp=True,
    )
    checks = {check.provider: check for check in check_messaging(settings)}
    assert [checks[name].ok for name in ("SMS", "WhatsApp", "in-app")] == [True, True, True]
    assert SID in checks["SMS"].detail
    assert "+14155550100" in checks["SMS"].detail
    text = " ".join(check.detail for check in checks.values())
    for secret in (TOKEN, WA_TOKEN, APP_SECRET):
        assert secret not in text


def test_each_broken_setting_is_named(tmp_path: Path) -> None:
    checks = check_messaging(
        _settings(
            tmp_path,
            twilio_account_sid="not-a-sid",
            twilio_auth_token=TOKEN,
            twilio_from="+14155550100",
            whatsapp_phone_number_id="106540352242922",
            whatsapp_access_token=WA_TOKEN,
        )
    )
    by = {check.provider: check for check in checks}
    assert by["SMS"].ok is False
    assert "account SID" in by["SMS"].detail
    assert by["WhatsApp"].ok is False
    assert "REACH_WHATSAPP_APP_SECRET" in by["WhatsApp"].detail
    missing = check_messaging(_settings(tmp_path, twilio_account_sid=SID))
    sms = next(check for check in missing if check.provider == "SMS")
    assert sms.ok is False
    assert "REACH_TWILIO_AUTH_TOKEN" in sms.detail


def test_the_command_checks_every_channel_and_fails_on_a_broken_one(tmp_path: Path) -> None:
    env = {"REACH_DATA_DIR": str(tmp_path), "REACH_TWILIO_ACCOUNT_SID": "nope"}
    result = CliRunner().invoke(main, ["channels", "check"], env=env)
    assert result.exit_code == 1
    assert "SMS" in result.output
    assert "FAILED" in result.output
    assert "WhatsApp" in result.output
    assert "in-app" in result.output
