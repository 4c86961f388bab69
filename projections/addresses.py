"""Addresses (email, phone, push tokens) leave the worker only as keyed hashes.

Delivery needs a user's addresses in clear, so the worker's state keeps them; the
ClickHouse projection, open to every ``read`` key, gets an HMAC-SHA256 of each
instead. The same address under the same key gives the same hash, so analysts can
still count, join and find duplicates, but not read or guess an address without the
key. The key is ``REACH_PII_KEY``, or a random one created once in the data
directory (owner-only). ``REACH_PII_CLEAR_TEXT=true`` projects addresses as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from schemas.journey_nodes import ADDRESS_TAGS

KEY_FILE = "pii.key"
PREFIX = "hmac-sha256:"
"""Every hashed value starts with this, so a reader knows what it is looking at."""

_SEEN_NAMES = 10_000

DEFAULT_TAGS = frozenset(tag for tag in ADDRESS_TAGS.values() if tag)
"""The tags that hold addresses (see ``schemas.journey_nodes.ADDRESS_TAGS``)."""


class AddressMask:
    """Replaces the values of address tags with their keyed hashes; ``key`` None
    leaves them in clear."""

    def __init__(self, key: bytes | None, extra_tags: Iterable[str] = ()) -> None:
        self.key = key
        self.tags = frozenset(tag.casefold() for tag in (*DEFAULT_TAGS, *extra_tags))
        self._hmac = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None
        # Tag names are a small vocabulary: each is looked at once (up to a bound).
        self._seen: dict[str, bool] = {}

    def is_address(self, tag: str) -> bool:
        found = self._seen.get(tag)
        if found is None:
            found = tag.casefold() in self.tags
            if len(self._seen) < _SEEN_NAMES:
                self._seen[tag] = found
        return found

    def mask(self, tags: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.key is None or not any(self.is_address(name) for name in tags):
            return tags
        return {
            name: self.hash(value) if value is not None and self.is_address(name) else value
            for name, value in tags.items()
        }

    def personal(self, value: str) -> str:
        """Personal data (a phone number, an email address): hashed unless in clear."""
        return value if self.key is None else str(self.hash(value))

    def secret(self, value: str) -> str:
        """A secret (a push token, a web push endpoint): never in clear; keyed when
        there is a key, else plain SHA-256."""
        if self.key is None:
            return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return str(self.hash(value))

    def hash(self, value: Any) -> Any:
        """A list's items one by one (a list of tokens stays a list), anything else as
        one value: text as its UTF-8 bytes, other values as their JSON."""
        assert self._hmac is not None
        if isinstance(value, list):
            return [self.hash(item) for item in value]
        if isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
        else:
            data = orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS)
        keyed = self._hmac.copy()  # the key's inner and outer pads, computed once
        keyed.update(data)
        return PREFIX + keyed.hexdigest()


CLEAR = AddressMask(None)


def address_mask(
    data_dir: Path, key: str = "", clear_text: bool = False, extra_tags: str = ""
) -> AddressMask:
    """The mask a worker projects with (from ``REACH_PII_*`` and the data directory)."""
    extra = [tag.strip() for tag in extra_tags.split(",") if tag.strip()]
    if clear_text:
        return AddressMask(None, extra)
    return AddressMask(key.encode() if key else kept_key(data_dir / KEY_FILE), extra)


def kept_key(path: Path) -> bytes:
    """A random key created once at ``path`` (owner-only), then read from there."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        # Created owner-only, never readable by others even for a moment.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_urlsafe(32).encode())
        # A link, not a rename: of two processes creating it at once, the first wins
        # and both read the same key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it, or set REACH_PII_KEY")
    return key
