"""The demo's users: who they are (tags) and what they do (events), hour by hour.

Pure and seeded: the same seed gives the same population and the same events. Each
user has a habit (how likely they open the app on a given day); some lapse for good
at some point, which is what puts them in "has not opened the app for 7 days".
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

Item = dict[str, Any]

COUNTRIES = [("PT", "pt", "Europe/Lisbon"), ("BR", "pt-BR", "America/Sao_Paulo"),
             ("IN", "hi", "Asia/Kolkata"), ("FR", "fr", "Europe/Paris"),
             ("DE", "de", "Europe/Berlin"), ("US", "en", "America/New_York")]  # fmt: skip
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    country: str
    language: str
    zone: str
    installed: datetime
    daily_open: float
    """Chance of opening the app on a day (several sessions when they do)."""
    lapses_at: datetime | None
    """From this instant on, they never open the app again."""
    buyer: bool


def people(count: int, start: datetime, rng: random.Random) -> list[Person]:
    found = []
    for number in range(count):
        country, language, zone = rng.choice(COUNTRIES)
        lapsing = rng.random() < 0.45
        found.append(
            Person(
                user_id=f"user-{number:05d}",
                country=country,
                language=language,
                zone=zone,
                installed=start
                - timedelta(days=rng.randint(30, 400), minutes=rng.randint(0, 1439)),
                daily_open=rng.uniform(0.3, 0.95),
                # Lapsed already, or lapsing during the simulation.
                lapses_at=start + timedelta(hours=rng.randint(-24 * 20, 24 * 14))
                if lapsing
                else None,
                buyer=rng.random() < 0.25,
            )
        )
    return found


def tags(person: Person) -> Item:
    installed = person.installed.isoformat()
    return {
        "user_id": person.user_id,
        "op": "set",
        "timestamp": installed,
        "tags": {
            "Country": person.country,
            "Language": person.language,
            "Time zone": person.zone,
            "First Install": {"type": "date", "value": installed},
            "Email": f"{person.user_id}@example.com",
            "Phone": f"+1555{person.user_id[-5:]}",
            "Push Token": f"token-{person.user_id}",
            "Application Version": {"type": "version", "value": "2.4.0"},
        },
    }


def events(person: Person, start: datetime, end: datetime, seed: int) -> Iterator[Item]:
    """The person's events from ``start`` to ``end``, in time order."""
    rng = random.Random(f"{seed}:{person.user_id}")
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        active = person.lapses_at is None or day < person.lapses_at
        if active and rng.random() < person.daily_open:
            for _ in range(rng.randint(1, 3)):
                at = day + timedelta(minutes=rng.randint(7 * 60, 23 * 60))
                if start <= at < end and (person.lapses_at is None or at < person.lapses_at):
                    yield from _session(person, at, rng)
        day += timedelta(days=1)


def _session(person: Person, at: datetime, rng: random.Random) -> Iterator[Item]:
    yield {"user_id": person.user_id, "name": "ApplicationOpen", "timestamp": at.isoformat()}
    for screen in range(rng.randint(1, 4)):
        moment = at + timedelta(seconds=30 * (screen + 1))
        yield {"user_id": person.user_id, "name": "ScreenOpen", "timestamp": moment.isoformat()}
    if person.buyer and rng.random() < 0.3:
        price = {"type": "price", "amount": f"{rng.randint(1, 50)}.99", "currency": "EUR"}
        moment = at + timedelta(minutes=3)
        yield {
            "user_id": person.user_id,
            "name": "InAppPurchase",
            "timestamp": moment.isoformat(),
            "attributes": {"price": price},
        }


def hourly(items: list[Item], start: datetime, end: datetime) -> list[list[Item]]:
    """``items`` (with ISO timestamps) in one list per hour from ``start`` to ``end``."""
    hours = int((end - start) / HOUR)
    buckets: list[list[Item]] = [[] for _ in range(hours)]
    for item in items:
        index = int((datetime.fromisoformat(item["timestamp"]) - start) / HOUR)
        if 0 <= index < hours:
            buckets[index].append(item)
    for bucket in buckets:
        bucket.sort(key=lambda item: item["timestamp"])
    return buckets
