"""Addresses projected as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson

from projections import rows
from projections.addresses import CLEAR, KEY_FILE, AddressMask, address_mask, kept_key
from schemas import TagUpdate

KEY = b"a-key-of-the-deployment-0123456789"


def digest(value: bytes, key: bytes = KEY) -> str:
    return "hmac-sha256:" + hmac.new(key, value, hashlib.sha256).hexdigest()


def test_address_tags_are_hashed_and_the_rest_left_alone() -> None:
    mask = AddressMask(KEY)
    tags = {
        "Email": "ana@example.com",
        "Phone": "+15550100",
        "Push Token": "tok-1",
        "Web Push Token": ["w1", "w2"],
        "Plan": "gold",
        "Visits": 3,
    }
    assert mask.mask(tags) == {
        "Email": digest(b"ana@example.com"),
        "Phone": digest(b"+15550100"),
        "Push Token": digest(b"tok-1"),
        "Web Push Token": [digest(b"w1"), digest(b"w2")],
        "Plan": "gold",
        "Visits": 3,
    }


def test_same_address_same_hash_another_key_another_hash() -> None:
    one, other = AddressMask(KEY), AddressMask(b"another-key-0123456789")
    assert one.mask({"Email": "a@b.c"}) == one.mask({"Email": "a@b.c"})
    assert one.mask({"Email": "a@b.c"}) != other.mask({"Email": "a@b.c"})


def test_unset_stays_unset_and_numbers_are_hashed_too() -> None:
    mask = AddressMask(KEY)
    assert mask.mask({"Email": None}) == {"Email": None}
    assert mask.mask({"Phone": 15550100}) == {"Phone": digest(b"15550100")}


def test_extra_tags_and_any_case() -> None:
    mask = AddressMask(KEY, ["Full Name"])
    masked = mask.mask({"full name": "Ana Lima", "EMAIL": "x@y.z", "City": "Porto"})
    assert masked == {"full name": digest(b"Ana Lima"), "EMAIL": digest(b"x@y.z"), "City": "Porto"}


def test_clear_text_leaves_everything() -> None:
    assert CLEAR.mask({"Email": "a@b.c"}) == {"Email": "a@b.c"}
    assert address_mask(Path("/nonexistent"), clear_text=True).key is None


def test_the_tag_update_row_carries_the_masked_tags() -> None:
    update = TagUpdate.model_validate(
        {"user_id": "u", "tags": {"Email": "a@b.c", "Plan": "p"}, "timestamp": 0}
    )
    now = datetime(2024, 5, 1, tzinfo=UTC)
    row = rows.tag_update_row(update, rows.Origin(0, 1), now, AddressMask(KEY))
    tags = dict(zip(rows.TAG_UPDATES.columns, row, strict=True))["tags"]
    assert orjson.loads(tags) == {"Email": digest(b"a@b.c"), "Plan": "p"}


def test_a_kept_key_is_created_once_and_owner_only(tmp_path: Path) -> None:
    first = address_mask(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert address_mask(tmp_path / "data").key == first.key == kept_key(path)
    assert len(first.key or b"") >= 32
    assert address_mask(tmp_path / "data", key="set-key").key == b"set-key"
