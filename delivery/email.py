"""The email channel over SMTP: one multipart/alternative message per send command,
its HTML links sent through the click redirect and an open pixel added, so opens and
clicks come back as feedback through the HTTP API (api/tracking.py), and a
one-click unsubscribe (RFC 8058) in the ``List-Unsubscribe`` headers.

Outcomes: ``delivered`` once the server accepts the message (2xx), ``bounced`` when it
refuses the recipient for good (5xx, the reply as the reason), ``failed`` for a
message that cannot be sent (no or an invalid address, content refused for good).
A connection that fails or a temporary refusal (4xx) raises: the worker retries.
"""

from __future__ import annotations

import asyncio
import email.utils
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import Policy
from typing import Literal

import aiosmtplib
from pydantic import TypeAdapter, ValidationError

from delivery.channels import Message, Outcome, Result
from delivery.tracking import Tracking
from delivery.tracking_config import tracking_base, tracking_key
from schemas.commands import SendCommand
from schemas.identity import content_id
from schemas.presets import EmailAddress, EmailContent
from streams.settings import Settings

COMMAND_HEADER = "X-Reach-Command"
TIMEOUT = 30.0
"""Seconds for connecting and for each SMTP command."""
_ADDRESS: TypeAdapter[str] = TypeAdapter(EmailAddress)


class TrackingUnavailable(RuntimeError):
    """The HTTP API's address is not known yet (it has not started): retried later."""


class EmailAdapter:
    channels = frozenset({"email"})

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host or None,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
            start_tls=settings.smtp_starttls,
            timeout=TIMEOUT,
        )
        self._tracking: Tracking | None = None
        self._base: str | None = None
        # One connection, one mail transaction at a time on it.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._tracker()

    def _tracker(self) -> Tracking:
        if self._tracking is None:
            self._tracking = Tracking(tracking_key(self._settings))
        return self._tracking

    async def stop(self) -> None:
        async with self._lock:
            if self._smtp.is_connected:
                try:
                    await self._smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    self._smtp.close()

    async def deliver(self, message: Message) -> Result:
        rendered = message.content
        if rendered is None or not isinstance(rendered.content, EmailContent):
            return _result("failed", "no email content to send")
        command = message.command
        recipient = _mailbox(command.address)
        if recipient is None:
            shown = "no email address" if not command.address else "an invalid email address"
            return _result("failed", f"the user has {shown}")
        base = self._base_url()  # every message has its unsubscribe link
        try:
            mail = self.compose(command, rendered.content, base)
        except ValueError as error:  # a header with a line break in it, say
            return _result("failed", f"cannot compose the email: {error}")
        sender = email.utils.parseaddr(rendered.content.sender)[1]
        try:
            await self._send(mail, sender, recipient)
        except aiosmtplib.SMTPRecipientsRefused as refused:
            reply = refused.recipients[0]
            if reply.code < 500:
                raise  # "try again later": the worker retries
            return _result("bounced", f"{reply.code} {reply.message}")
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as refused:
            if refused.code < 500:
                raise
            return _result("failed", f"{refused.code} {refused.message}")
        except ValueError as error:  # an address aiosmtplib will not put on a command line
            return _result("failed", str(error))
        return _result("delivered")

    def compose(self, command: SendCommand, content: EmailContent, base: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = content.sender
        mail["To"] = command.address
        if content.reply_to:
            mail["Reply-To"] = content.reply_to
        mail["Subject"] = content.subject
        mail["Date"] = email.utils.format_datetime(datetime.now(UTC))
        mail["Message-ID"] = message_id(command.command_id, content.sender)
        mail[COMMAND_HEADER] = command.command_id
        unsubscribe = self._tracker().unsubscribe_url(base, command)
        mail["List-Unsubscribe"] = _Unfolded("List-Unsubscribe", f"<{unsubscribe}>")
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        html = content.html and self._tracker().rewrite_links(content.html, base, command)
        if content.text:
            mail.set_content(content.text)
            if html:
                mail.add_alternative(html, subtype="html")
        elif html:
            mail.set_content(html, subtype="html")
        return mail

    def _base_url(self) -> str:
        if self._base is None:
            self._base = tracking_base(self._settings)
        if self._base is None:
            raise TrackingUnavailable("the HTTP API's address is not known yet")
        return self._base

    async def _send(self, mail: EmailMessage, sender: str, recipient: str) -> None:
        async with self._lock:
            try:
                await self._transaction(mail, sender, recipient)
            except OSError:  # connection refused, lost, timed out: start afresh next time
                self._smtp.close()
                raise

    async def _transaction(self, mail: EmailMessage, sender: str, recipient: str) -> None:
        reused = self._smtp.is_connected
        if not reused:
            await self._smtp.connect()
        try:
            await self._smtp.send_message(mail, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPServerDisconnected:
            if not reused:
                raise
            # The server closed the idle connection: once more, on a new one.
            self._smtp.close()
            await self._smtp.connect()
            await self._smtp.send_message(mail, sender=sender, recipients=[recipient])


def message_id(command_id: str, sender: str) -> str:
    """The same for every attempt at one command, so a receiver can drop a duplicate
    that a retry after a lost reply sent."""
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "reachstream.invalid"
    return f"<{content_id('email', command_id)}@{domain}>"


class _Unfolded(str):
    """A header value written on one line as it is. The email package would turn a
    long value without spaces (the URL) into RFC 2047 encoded words, which mailbox
    providers do not decode in ``List-Unsubscribe``; one line is within SMTP's 998."""

    name: str

    def __new__(cls, name: str, value: str) -> _Unfolded:
        if "\r" in value or "\n" in value or len(name) + len(value) > 990:
            raise ValueError(f"the {name} header does not fit on one line")
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        # The email package folds a header value with a ``name`` by calling this.
        return f"{self.name}: {self}{policy.linesep}"


def _mailbox(address: str | None) -> str | None:
    """The bare address to send to, or None for a missing or malformed one."""
    if not address:
        return None
    try:
        _ADDRESS.validate_python(address)
    except ValidationError:
        return None
    return email.utils.parseaddr(address)[1] or None


def _result(status: Literal["delivered", "failed", "bounced"], reason: str | None = None) -> Result:
    # Feedback keeps 1024 characters of a reason; SMTP replies can run longer.
    return Result(Outcome(status, reason if reason is None else reason[:1000]))
