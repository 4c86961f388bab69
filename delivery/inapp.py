"""The in-app channel: messages kept per user for the user's apps, which fetch them
from the HTTP API (``GET /v1/users/{id}/inapp``, api/messaging.py) and report an
impression, a click or a dismissal back as feedback.

The store is a SQLite file in the data directory (``inapp.sqlite3``): it survives a
restart, needs no ClickHouse, and the delivery worker (which writes) and the HTTP API
(which reads) share it through the data directory, as they share the tracking key. A
message is kept until it is dismissed or expires (the preset's ``expires_hours``, else
``REACH_INAPP_DAYS`` after the send); a user keeps at most ``REACH_INAPP_MAX_PER_USER``,
the oldest going first. Storing a command twice keeps one message: a retried command
shows once.

Without ``REACH_INAPP=true``, in-app messages go to the simulator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from delivery.channels import Message, Outcome, Result
from delivery.simulator import SimulatedChannels
from engine.time import from_ms, to_ms
from schemas.presets import InAppContent
from streams.settings import Settings

FILE = "inapp.sqlite3"
_SCRIPTED = re.compile(r"^\s*(javascript|data|vbscript|file):", re.IGNORECASE)
"""Link schemes a user's value must not give a button (deep links of apps are fine)."""
Mark = Literal["opened", "clicked", "dismissed"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS inapp (
    user_id    TEXT NOT NULL,
    command_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    message    BLOB NOT NULL,
    opened     INTEGER NOT NULL DEFAULT 0,
    clicked    INTEGER NOT NULL DEFAULT 0,
    dismissed  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, command_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inapp_expiry ON inapp (expires_ms);
"""


@dataclass(frozen=True, slots=True)
class Stored:
    command_id: str
    created: datetime
    expires: datetime
    message: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "created_at": self.created.isoformat(),
            "expires_at": self.expires.isoformat(),
            **self.message,
        }


class InAppStore:
    """The messages of every user (blocking calls: run them off the event loop)."""

    def __init__(self, path: Path, max_per_user: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only, as the data dir's other files (SQLite gives its journal the same).
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        self.path = path
        self.max_per_user = max_per_user
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def of(cls, settings: Settings) -> InAppStore:
        return cls(settings.data_dir / FILE, settings.inapp_max_per_user)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(
        self, user_id: str, command_id: str, created: datetime, expires: datetime, message: bytes
    ) -> bool:
        """Keep a message (once per command); whether it is new."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            added = self._db.execute(
                "INSERT OR IGNORE INTO inapp (user_id, command_id, created_ms, expires_ms, "
                "message) VALUES (?, ?, ?, ?, ?)",
                (user_id, command_id, to_ms(created), to_ms(expires), message),
            ).rowcount
            # Beyond the limit, the oldest go.
            self._db.execute(
                "DELETE FROM inapp WHERE user_id = ? AND command_id NOT IN (SELECT command_id "
                "FROM inapp WHERE user_id = ? ORDER BY created_ms DESC, command_id DESC "
                "LIMIT ?)",
                (user_id, user_id, self.max_per_user),
            )
        return bool(added)

    def messages(self, user_id: str, now: datetime) -> list[Stored]:
        """The user's messages to show: not dismissed, not expired; newest first."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM inapp WHERE expires_ms <= ?", (to_ms(now),))
            rows = self._db.execute(
                "SELECT command_id, created_ms, expires_ms, message FROM inapp "
                "WHERE user_id = ? AND dismissed = 0 ORDER BY created_ms DESC, command_id DESC",
                (user_id,),
            ).fetchall()
        return [
            Stored(row[0], from_ms(row[1]), from_ms(row[2]), orjson.loads(row[3])) for row in rows
        ]

    def mark(self, user_id: str, command_id: str, what: Mark, now: datetime) -> bool | None:
        """Record an impression, click or dismissal: None when the user has no such
        message (or it expired), else whether it is the first of its kind."""
        column = {"opened": "opened", "clicked": "clicked", "dismissed": "dismissed"}[what]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                f"SELECT {column} FROM inapp WHERE user_id = ? AND command_id = ? "
                "AND expires_ms > ?",
                (user_id, command_id, to_ms(now)),
            ).fetchone()
            if row is None:
                return None
            if row[0]:
                return False
            self._db.execute(
                f"UPDATE inapp SET {column} = 1 WHERE user_id = ? AND command_id = ?",
                (user_id, command_id),
            )
        return True

    def forget(self, user_id: str) -> int:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM inapp WHERE user_id = ?", (user_id,)).rowcount


def layout(content: InAppContent) -> dict[str, Any]:
    """What the app gets of a rendered message (fields without a value left out)."""
    shown: dict[str, Any] = {}
    for name in ("title", "body", "image"):
        value = getattr(content, name)
        if value:
            shown[name] = value
    if content.buttons:
        shown["buttons"] = [
            button.model_dump(mode="json", exclude_none=True) for button in content.buttons
        ]
    if content.payload:
        shown["payload"] = content.payload
    return shown


def inapp_channel(settings: Settings) -> Any:
    """The ``in_app`` entry point: the store when enabled, else the simulator."""
    return InAppAdapter(settings) if settings.inapp else SimulatedChannels(settings)


class InAppAdapter:
    channels = frozenset({"in_app"})

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: InAppStore | None = None
        self._opening = asyncio.Lock()

    async def _ready(self) -> InAppStore:
        async with self._opening:
            if self._store is None:
                self._store = await asyncio.to_thread(InAppStore.of, self._settings)
        return self._store

    async def start(self) -> None:
        await self._ready()

    async def stop(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)

    async def deliver(self, message: Message) -> Result:
        rendered = message.content
        if rendered is None or not isinstance(rendered.content, InAppContent):
            return Result(Outcome("failed", "no in-app content to keep"))
        content = rendered.content
        for button in content.buttons:
            if button.link is not None and _SCRIPTED.match(button.link):
                return Result(Outcome("failed", f"the button {button.label!r} links to a script"))
        command = message.command
        hours = content.expires_hours
        kept = (
            timedelta(hours=hours)
            if hours is not None
            else timedelta(days=self._settings.inapp_days)
        )
        shown = {
            **layout(content),
            "preset": rendered.preset_id,
            "language": rendered.language,
        }
        store = await self._ready()
        await asyncio.to_thread(
            store.put,
            command.user_id,
            command.command_id,
            command.at,
            command.at + kept,
            orjson.dumps(shown),
        )
        return Result(Outcome("delivered"))


# --- per-user tokens: an app reads its user's messages without a workspace key --------

_DOMAIN = b"reach-inapp-user-v1\0"
TOKEN_PREFIX = "ia1."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UserTokens:
    """Tokens that let one user's app read and report on that user's in-app messages
    until they expire, signed with the tracking key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a key must not be empty")
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + payload, hashlib.sha256).digest()

    def make(self, user_id: str, expires: datetime) -> str:
        payload = orjson.dumps([user_id, to_ms(expires)])
        return f"{TOKEN_PREFIX}{_b64(payload)}.{_b64(self._sign(payload))}"

    def user(self, token: str, now: datetime) -> str | None:
        """The user a valid, unexpired token is for; None otherwise."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 4096:
            return None
        encoded, dot, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        try:
            payload, presented = _unb64(encoded), _unb64(signature)
            if not dot or not hmac.compare_digest(presented, self._sign(payload)):
                return None
            fields = orjson.loads(payload)
        except (ValueError, orjson.JSONDecodeError):
            return None
        if (
            not isinstance(fields, list)
            or len(fields) != 2
            or not isinstance(fields[0], str)
            or not isinstance(fields[1], int)
            or fields[1] <= to_ms(now)
        ):
            return None
        return fields[0]
