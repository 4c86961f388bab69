"""The email adapter against a real SMTP server on loopback (aiosmtpd): what arrives,
and the outcome for each way a send can go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from delivery.channels import Message, Outcome
from delivery.email import COMMAND_HEADER, EmailAdapter, message_id
from delivery.render import RenderedContent
from delivery.tracking import Tracking
from schemas.commands import SendCommand, command_id
from schemas.journey_nodes import Channel
from schemas.presets import EmailContent
from streams.settings import Settings
from tests.smtp_server import LATER, REFUSED, SmtpServer, free_port, smtp_server

__all__ = ["smtp_server"]  # the fixture, used by name

SECRET = "tracking-secret-for-tests"
BASE = "https://reach.example.com"
HTML = (
    "<html><body><p>Hi Ana,</p>"
    '<p><a href="https://shop.example.com/cart?c=1&amp;utm=mail">Your cart</a> · '
    "<a href='mailto:help@example.com'>help</a></p></body></html>"
)
CONTENT = EmailContent(
    subject="We miss you, Ana",
    html=HTML,
    text="Hi Ana, your cart: https://shop.example.com/cart?c=1",
    sender="Shop <news@shop.example.com>",
    reply_to="help@example.com",
)


def command(address: str | None) -> SendCommand:
    return SendCommand(
        command_id=command_id("winback", 1, "r1", "u-1", "first-email", 0),
        user_id="u-1",
        channel="email",
        preset="we-miss-you",
        journey_id="winback",
        journey_version=1,
        run="r1",
        step="first-email",
        visit=0,
        at=datetime(2026, 11, 1, 9, tzinfo=UTC),
        address=address,
    )


def message(address: str | None, content: EmailContent = CONTENT) -> Message:
    rendered = RenderedContent(
        preset_id="we-miss-you", version=1, channel=Channel.EMAIL, language="en", content=content
    )
    return Message(command(address), rendered)


@pytest.fixture
async def adapter(smtp_server: SmtpServer, tmp_path: Path) -> AsyncIterator[EmailAdapter]:
    settings = Settings(
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        tracking_secret=SECRET,
        tracking_base_url=BASE,
        data_dir=tmp_path,
    )
    email = EmailAdapter(settings)
    await email.start()
    yield email
    await email.stop()


async def test_a_tracked_multipart_email_arrives(
    adapter: EmailAdapter, smtp_server: SmtpServer
) -> None:
    assert adapter.channels == frozenset({"email"})
    result = await adapter.deliver(message("ana@example.com"))
    assert result.outcome == Outcome("delivered")
    assert result.later == ()
    (received,) = smtp_server.wait_for(1)
    assert received.mail_from == "news@shop.example.com"
    assert received.rcpt_tos == ["ana@example.com"]
    mail = received.message
    assert mail.get_content_type() == "multipart/alternative"
    assert (mail["From"], mail["To"], mail["Reply-To"], mail["Subject"]) == (
        "Shop <news@shop.example.com>",
        "ana@example.com",
        "help@example.com",
        "We miss you, Ana",
    )
    the_command = command("ana@example.com")
    assert mail[COMMAND_HEADER] == the_command.command_id
    assert mail["Message-ID"] == message_id(the_command.command_id, CONTENT.sender)
    assert mail["Message-ID"].endswith("@shop.example.com>")
    assert mail["Date"] is not None
    text, html = (part for part in mail.iter_parts() if isinstance(part, EmailMessage))
    assert text.get_content_type() == "text/plain"
    assert text.get_content().strip() == CONTENT.text
    assert html.get_content_type() == "text/html"
    body = html.get_content()
    tracking = Tracking(SECRET.encode())
    clicks = [part.split('"')[0] for part in body.split(f'href="{BASE}/t/c/')[1:]]
    assert len(clicks) == 1
    clicked = tracking.read(clicks[0], "click")
    assert clicked is not None
    assert clicked.url == "https://shop.example.com/cart?c=1&utm=mail"
    assert "href='mailto:help@example.com'" in body
    pixel = body.split(f'<img src="{BASE}/t/o/')[1].split('"')[0]
    opened = tracking.read(pixel, "open")
    assert opened is not None
    assert (opened.command_id, opened.user_id, opened.channel) == (
        the_command.command_id,
        "u-1",
        "email",
    )
    assert body.rstrip().endswith("</body></html>")
    # One-click unsubscribe (RFC 8058), its URL on one line as written, not RFC 2047
    # encoded words, which mailbox providers would not read.
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = mail["List-Unsubscribe"]
    assert header.startswith(f"<{BASE}/t/u/")
    assert header.endswith(">")
    assert f"\r\nList-Unsubscribe: {header}\r\n".encode() in received.raw
    unsubscribe = tracking.read(header[1:-1].rsplit("/", 1)[1], "unsubscribe")
    assert unsubscribe is not None
    assert (unsubscribe.command_id, unsubscribe.user_id, unsubscribe.channel) == (
        the_command.command_id,
        "u-1",
        "email",
    )


async def test_a_retry_sends_the_same_message_id_over_the_same_connection(
    adapter: EmailAdapter, smtp_server: SmtpServer
) -> None:
    for _ in range(2):
        assert (await adapter.deliver(message("Ana <ana@example.com>"))).outcome.status == (
            "delivered"
        )
    first, second = smtp_server.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert second.rcpt_tos == ["ana@example.com"]


async def test_refused_missing_and_invalid_addresses(
    adapter: EmailAdapter, smtp_server: SmtpServer
) -> None:
    bounced = await adapter.deliver(message("nobody@refused.test"))
    assert bounced.outcome == Outcome("bounced", REFUSED)
    assert await adapter.deliver(message(None)) == await adapter.deliver(message(""))
    missing = await adapter.deliver(message(None))
    assert missing.outcome == Outcome("failed", "the user has no email address")
    for invalid in ("not-an-address", "two@at@example.com", "ana@example.com\r\nBcc: x@y.z"):
        invalid_result = await adapter.deliver(message(invalid))
        assert invalid_result.outcome == Outcome("failed", "the user has an invalid email address")
    # A temporary refusal is the worker's to retry.
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as raised:
        await adapter.deliver(message("someone@later.test"))
    assert raised.value.recipients[0].code == int(LATER.split()[0])
    # The connection is still good for the next one.
    assert (await adapter.deliver(message("ana@example.com"))).outcome.status == "delivered"
    assert [received.rcpt_tos for received in smtp_server.wait_for(1)] == [["ana@example.com"]]


async def test_a_line_break_in_a_rendered_header_fails_the_message(
    adapter: EmailAdapter, smtp_server: SmtpServer
) -> None:
    content = CONTENT.model_copy(update={"subject": "Hi\r\nBcc: everyone@example.com"})
    result = await adapter.deliver(message("ana@example.com", content))
    assert result.outcome.status == "failed"
    assert result.outcome.reason is not None
    assert result.outcome.reason.startswith("cannot compose the email")
    assert smtp_server.received == []


async def test_text_or_html_alone(adapter: EmailAdapter, smtp_server: SmtpServer) -> None:
    text_only = CONTENT.model_copy(update={"html": None})
    html_only = CONTENT.model_copy(update={"text": None})
    for content in (text_only, html_only):
        assert (await adapter.deliver(message("ana@example.com", content))).outcome.status == (
            "delivered"
        )
    text, html = (received.message for received in smtp_server.wait_for(2))
    assert text.get_content_type() == "text/plain"
    assert text["List-Unsubscribe"].startswith(f"<{BASE}/t/u/")  # text alone has it too
    assert html.get_content_type() == "text/html"
    assert f"{BASE}/t/o/" in html.get_content()


async def test_no_server_raises_for_the_worker_to_retry(tmp_path: Path) -> None:
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=free_port(), tracking_secret=SECRET, data_dir=tmp_path
    )
    email = EmailAdapter(settings)
    await email.start()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await email.deliver(message("ana@example.com"))
    await email.stop()
