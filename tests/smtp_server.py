"""A real SMTP server on loopback for the email channel's tests (aiosmtpd, in its own
thread), keeping what it accepts. Recipients at ``refused.test`` are refused for good
(550), those at ``later.test`` for now (451)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller

REFUSED = "550 5.1.1 No such user here"
LATER = "451 4.3.2 Try again later"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes = b""
    """The message as it came over the wire, before parsing."""


@dataclass
class SmtpServer:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(  # aiosmtpd names its hooks so
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain == "refused.test":
            return REFUSED
        if domain == "later.test":
            return LATER
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = cast(EmailMessage, message_from_bytes(envelope.content, policy=policy.default))
        with self._arrived:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), message, envelope.content)
            )
            self._arrived.notify_all()
        return "250 2.0.0 Message accepted"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` messages, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} emails arrived")
                self._arrived.wait(left)
            return self.received[:count]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_smtp_server()


def running_smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
