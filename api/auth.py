"""API keys and their scopes for the HTTP API."""

from __future__ import annotations

import hmac
from enum import StrEnum


class Scope(StrEnum):
    INGEST = "ingest"
    READ = "read"
    INAPP = "inapp"
    """Apps reading their users' in-app messages (api/messaging.py)."""
    ADMIN = "admin"  # every scope


class ApiKeyError(ValueError):
    """The API key setting cannot be read."""


def parse_api_keys(text: str) -> dict[str, frozenset[Scope]]:
    """``key1:ingest+read,key2:admin`` -> {key: scopes}."""
    keys: dict[str, frozenset[Scope]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        key, sep, scopes = entry.partition(":")
        if not sep or len(key) < 16:
            raise ApiKeyError(
                f"API key entry {entry[:4]}… must read KEY:SCOPE[+SCOPE] with a key of "
                "at least 16 characters"
            )
        try:
            keys[key] = frozenset(Scope(scope) for scope in scopes.split("+"))
        except ValueError:
            raise ApiKeyError(
                f"unknown scope in {scopes!r}; scopes are ingest, read, inapp, admin"
            ) from None
    return keys


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY`` (the scheme in any
    case, as RFC 7235 has it), else ``X-Api-Key: KEY``."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return api_key or None


def allowed(keys: dict[str, frozenset[Scope]], presented: str | None, needed: Scope) -> bool:
    """Open when no keys are configured (loopback only); otherwise key and scope must fit."""
    if not keys:
        return True
    if not presented:
        return False
    # Header bytes that are not UTF-8 reach here as surrogates: compared, never matched.
    offered = presented.encode("utf-8", "surrogateescape")
    for key, scopes in keys.items():
        if hmac.compare_digest(key.encode(), offered):
            return needed in scopes or Scope.ADMIN in scopes
    return False


class InsecureBinding(ValueError):
    """The API would listen beyond loopback without API keys."""


def check_binding(host_is_loopback: bool, api_keys: str) -> None:
    parse_api_keys(api_keys)
    if not host_is_loopback and not api_keys:
        raise InsecureBinding(
            "refusing to serve the HTTP API beyond loopback without API keys: "
            "set REACH_API_KEYS (KEY:SCOPE[+SCOPE],...)"
        )
