"""API keys: parsing REACH_API_KEYS and deciding whether a request may pass."""

from __future__ import annotations

import pytest

from api.auth import ApiKeyError, Scope, allowed, parse_api_keys, presented_key

INGEST_KEY = "ingest-key-0123456789"
READ_KEY = "read-key-0123456789ab"
ADMIN_KEY = "admin-key-0123456789a"
BOTH_KEY = "both-key-0123456789ab"
KEYS = parse_api_keys(
    f"{INGEST_KEY}:ingest,{READ_KEY}:read,{ADMIN_KEY}:admin,{BOTH_KEY}:ingest+read"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("  ", {}),
        (",,", {}),
        ("k" * 16 + ":read", {"k" * 16: frozenset({Scope.READ})}),
        (f"{INGEST_KEY}:ingest+read", {INGEST_KEY: frozenset({Scope.INGEST, Scope.READ})}),
        (
            f" {INGEST_KEY}:admin , {READ_KEY}:read ",
            {INGEST_KEY: frozenset({Scope.ADMIN}), READ_KEY: frozenset({Scope.READ})},
        ),
        # A key listed twice: the last entry wins.
        (f"{INGEST_KEY}:read,{INGEST_KEY}:ingest", {INGEST_KEY: frozenset({Scope.INGEST})}),
    ],
)
def test_parse_api_keys(text: str, expected: dict[str, frozenset[Scope]]) -> None:
    assert parse_api_keys(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short:read", "at least 16 characters"),
        ("k" * 15 + ":read", "at least 16 characters"),
        ("k" * 16, "KEY:SCOPE"),  # no scope at all
        (":read", "at least 16 characters"),
        ("k" * 16 + ":write", "unknown scope"),
        ("k" * 16 + ":", "unknown scope"),
        ("k" * 16 + ":read+", "unknown scope"),
        ("k" * 16 + ":READ", "unknown scope"),
        (f"{INGEST_KEY}:ingest,tiny:read", "at least 16 characters"),
    ],
)
def test_parse_api_keys_refuses(text: str, message: str) -> None:
    with pytest.raises(ApiKeyError, match=message):
        parse_api_keys(text)


def test_parse_errors_do_not_echo_the_key() -> None:
    secret = "secret-but-too-short"[:15]
    with pytest.raises(ApiKeyError) as raised:
        parse_api_keys(f"{secret}:read")
    assert secret not in str(raised.value)


@pytest.mark.parametrize("presented", [None, "", "anything", INGEST_KEY])
@pytest.mark.parametrize("needed", list(Scope))
def test_no_keys_means_open(presented: str | None, needed: Scope) -> None:
    assert allowed({}, presented, needed)


@pytest.mark.parametrize(
    ("presented", "needed", "expected"),
    [
        (INGEST_KEY, Scope.INGEST, True),
        (INGEST_KEY, Scope.READ, False),
        (INGEST_KEY, Scope.ADMIN, False),
        (READ_KEY, Scope.READ, True),
        (READ_KEY, Scope.INGEST, False),
        (BOTH_KEY, Scope.INGEST, True),
        (BOTH_KEY, Scope.READ, True),
        (BOTH_KEY, Scope.ADMIN, False),
        (ADMIN_KEY, Scope.INGEST, True),  # admin implies every scope
        (ADMIN_KEY, Scope.READ, True),
        (ADMIN_KEY, Scope.ADMIN, True),
        (None, Scope.READ, False),
        ("", Scope.READ, False),
        ("wrong-key-0123456789", Scope.READ, False),
        (READ_KEY[:-1], Scope.READ, False),  # a prefix is not the key
        (READ_KEY + "x", Scope.READ, False),
        (READ_KEY.upper(), Scope.READ, False),
    ],
)
def test_allowed_with_keys(presented: str | None, needed: Scope, expected: bool) -> None:
    assert allowed(KEYS, presented, needed) is expected


def test_non_ascii_key_is_refused_not_raised() -> None:
    assert allowed(KEYS, "clé-0123456789abcdef", Scope.READ) is False


@pytest.mark.parametrize(
    ("authorization", "api_key", "expected"),
    [
        (f"Bearer {READ_KEY}", None, READ_KEY),
        (f"bearer {READ_KEY}", None, READ_KEY),
        (f"BEARER   {READ_KEY} ", None, READ_KEY),
        (f"Basic {READ_KEY}", None, None),
        (READ_KEY, None, None),  # no scheme: not a bearer token
        ("Bearer ", ADMIN_KEY, ADMIN_KEY),
        (None, ADMIN_KEY, ADMIN_KEY),
        (None, None, None),
    ],
)
def test_presented_key(authorization: str | None, api_key: str | None, expected: str) -> None:
    assert presented_key(authorization, api_key) == expected


def test_keys_that_are_not_utf8_are_refused_not_raised() -> None:
    # aiohttp hands header bytes that are not UTF-8 over as surrogates.
    presented = b"\xff\xfe-key".decode("utf-8", "surrogateescape")
    assert not allowed(KEYS, presented, Scope.READ)
