"""What the segments benchmark feeds the system: its segment definitions, the users'
tag updates and their events."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import orjson

COUNTRIES = ("PT", "FR", "IN", "DE", "BR", "US", "ES", "IT")
LANGUAGES = ("pt", "fr", "hi", "de", "en", "es", "it")
EVENTS = ("ApplicationOpen", "ScreenOpen", "InAppPurchase", "AddToCart", "Search")


def segments() -> list[dict[str, Any]]:
    """20 segments: tag conditions, windowed event counts, and mixes of both."""
    expressions = [
        'T("Country", eq, "PT")',
        'T("Language", eq, "hi")',
        'T("Country", in, ["FR", "DE", "ES"])',
        'T("Sessions", gte, 10)',
        'T("Plan", eq, "premium")',
        'E("ApplicationOpen", count = 0, last 7 days)',
        'E("InAppPurchase", count >= 2, last 30 days)',
        'E("AddToCart", count >= 1, last 1 days) * E("InAppPurchase", count = 0, last 1 days)',
        'E("Search", count >= 3, last 6 hours)',
        'E("ScreenOpen", count between 5 and 50, last 14 days)',
        'T("Country", eq, "PT") * E("ApplicationOpen", count >= 1, last 3 days)',
        'T("Language", in, ["pt", "es"]) * E("InAppPurchase", count >= 1, last 7 days)',
        'T("Plan", eq, "free") * E("AddToCart", count >= 2, last 2 days)',
        'E("ApplicationOpen", count >= 5, last 1 days) + T("Plan", eq, "premium")',
        'T("Country", eq, "IN") - E("InAppPurchase", count >= 1, ever)',
        'E("Search", count >= 1, last 30 minutes)',
        'E("ScreenOpen", count >= 1, exactly 1 days ago)',
        'E("ApplicationOpen", count >= 1, between 1 and 7 days ago)',
        'T("Sessions", between, [1, 5]) * E("ApplicationOpen", count >= 1, last 2 days)',
        'E("Probe", count >= 1, last 1 days)',
    ]
    return [
        {"id": f"s{number:02d}", "name": f"segment {number}", "expression": expression}
        for number, expression in enumerate(expressions)
    ]


def tag_updates(users: int, now: datetime, rng: random.Random) -> list[tuple[str, bytes]]:
    encoded = []
    for number in range(users):
        user = f"user-{number}"
        update = {
            "user_id": user,
            "op": "set",
            "timestamp": (now - timedelta(days=30)).isoformat(),
            "tags": {
                "Country": rng.choice(COUNTRIES),
                "Language": rng.choice(LANGUAGES),
                "Plan": rng.choice(("free", "premium")),
                "Sessions": rng.randint(0, 20),
            },
        }
        encoded.append((user, orjson.dumps(update)))
    return encoded


def events(
    count: int, users: int, now: datetime, rng: random.Random, days: int = 14
) -> list[tuple[str, bytes]]:
    """``count`` events of random users, their timestamps spread evenly over the
    ``days`` before ``now`` (0: all at ``now``, as live traffic)."""
    encoded = []
    for number in range(count):
        user = f"user-{rng.randrange(users)}"
        at = now - timedelta(seconds=(count - number) * 60 * 24 * days // count)
        event = {
            "user_id": user,
            "name": rng.choice(EVENTS),
            "timestamp": at.isoformat(),
            "attributes": {"n": number},
        }
        encoded.append((user, orjson.dumps(event)))
    return encoded
