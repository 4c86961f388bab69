"""Instants and local calendar days, as the engine counts them.

Time is in epoch milliseconds throughout the engine; ``to_ms`` and ``from_ms`` convert
from and to aware datetimes. A calendar day is that of a time zone, named by its
proleptic ordinal (``date.toordinal``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
MINUTE = 60_000
"""One minute, in ms."""
DAY = 86_400_000
"""24 hours, in ms."""
_QUARTER_HOUR = 15 * MINUTE


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (floored, also before 1970)."""
    # From the parts of the difference (seconds and microseconds are never negative):
    # quicker than dividing one timedelta by another.
    since = moment - EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(0, 0, 0, ms)  # positional milliseconds: quicker than by name


# --- calendar days ------------------------------------------------------------------


def local_day(ms: int, tz: tzinfo) -> int:
    """The proleptic ordinal of the local calendar day containing instant ``ms``."""
    # Bucket starts (quarter hours) recur from step to step; other instants (``now``)
    # within one step.
    if ms % _QUARTER_HOUR:
        return _day_of_instant(ms, tz)
    return _day_of_quarter(ms, tz)


def local_today(now: int, tz: tzinfo) -> int:
    """``local_day`` of the current instant: remembered per zone while it lasts."""
    known = _TODAY.get(tz)
    if known is not None and known[0] <= now < known[1]:
        return known[2]
    return local_today_bounds(now, tz)[0]


def local_today_bounds(now: int, tz: tzinfo) -> tuple[int, int, int]:
    """``local_today``, with the first instants of that day and of the next."""
    known = _TODAY.get(tz)
    if known is not None and known[0] <= now < known[1]:
        return known[2], known[0], known[1]
    # Ticks evaluate at their timers' instants, inputs at theirs: a zone's days alternate.
    for known in _DAYS.get((tz, now // DAY), ()):
        if known[0] <= now < known[1]:
            _TODAY[tz] = known
            return known[2], known[0], known[1]
    day = local_day(now, tz)
    low, high = day_start(day, tz), day_start(day + 1, tz)
    # Only a day of exactly 24 hours has one UTC offset throughout (no DST change in it,
    # so every instant in it is on that day); other days are looked up every time.
    if high - low == DAY:
        if len(_TODAY) > 256:  # zones are few; never let the cache grow with them
            _TODAY.clear()
        if len(_DAYS) > 8192:
            _DAYS.clear()
        known = _TODAY[tz] = (low, high, day)
        for utc_day in {low // DAY, (high - 1) // DAY}:
            _DAYS.setdefault((tz, utc_day), []).append(known)
    return day, low, high


_TODAY: dict[tzinfo, tuple[int, int, int]] = {}
"""Per zone, the day of the instant last looked up: (first instant, end, ordinal)."""
_DAYS: dict[tuple[tzinfo, int], list[tuple[int, int, int]]] = {}
"""Local days of 24 hours looked up, as ``_TODAY`` has them, by zone and by the UTC
days they overlap."""


@lru_cache(maxsize=256)
def _day_of_instant(ms: int, tz: tzinfo) -> int:
    return from_ms(ms).astimezone(tz).toordinal()


@lru_cache(maxsize=65536)
def _day_of_quarter(ms: int, tz: tzinfo) -> int:
    return from_ms(ms).astimezone(tz).toordinal()


@lru_cache(maxsize=8192)
def day_start(ordinal: int, tz: tzinfo) -> int:
    """The first instant (ms) of a local day. Where midnight is skipped by a DST change,
    fold=0 reads it with the offset before the change: the instant of the change."""
    return to_ms(datetime.combine(date.fromordinal(ordinal), time(0), tzinfo=tz))
