"""Counters: how often something happened, in time buckets, as a user's state keeps them.

A counter is ``[total, last_ms, minute_tier, quarter_tier]``: the all-time count, the
exact instant of the newest occurrence, and occurrences in time buckets. The minute
tier covers the last ``RECENT`` minutes; older occurrences sit in quarter-hour buckets
until they are older than the horizon (plus one day), and then only count in the total.
Quarter hours, not hours: local midnight falls on a quarter hour in every zone in use
today (India is UTC+5:30, Nepal +5:45), so calendar-day windows stay exact anywhere.

A tier is a flat list of buckets, newest first: ``[key, count, gap, count, ...]``;
``key`` is the newest bucket's start (in minutes, or quarter hours, since the epoch)
and each gap how far the next older bucket starts before the previous one. Small gaps
keep a daily habit at about five characters a day in JSON.

Every reader places occurrences alike (``occurrences`` says how): each at the start of
its bucket, except the newest, at its exact instant. What a window holds of them is
engine/segments/windows.py's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta, tzinfo
from typing import Any

from engine.time import DAY, MINUTE, MS, day_start

Counter = list[Any]
"""``[total, last_ms, minute_tier, quarter_tier]``, see the module docstring."""

QUARTER = 15
"""Minutes in a coarse bucket."""
QUARTER_MS = QUARTER * MINUTE
RECENT = 180
"""Minutes kept at minute resolution: windows up to this long count by the minute."""
DEFAULT_HORIZON = timedelta(days=90)
"""How far back buckets are kept; windows reaching further are refused."""


def buckets(tier: list[int]) -> Iterator[tuple[int, int]]:
    """(key, count) of a tier, newest first."""
    key = 0
    for index in range(0, len(tier), 2):
        key = tier[0] if index == 0 else key - tier[index]
        yield key, tier[index + 1]


def encode(pairs: Iterable[tuple[int, int]]) -> list[int]:
    tier: list[int] = []
    previous = 0
    for key, count in pairs:
        tier += (key, count) if not tier else (previous - key, count)
        previous = key
    return tier


def _add(pairs: list[tuple[int, int]], key: int, count: int) -> None:
    """Add to a newest-first list of buckets, merging equal keys."""
    for index, (existing, total) in enumerate(pairs):
        if existing == key:
            pairs[index] = (key, total + count)
            return
        if existing < key:
            pairs.insert(index, (key, count))
            return
    pairs.append((key, count))


def count_into(
    counter: Counter | None, at_ms: int, reference_ms: int, horizon: timedelta
) -> Counter:
    """``counter`` with one more occurrence at ``at_ms``, its buckets settled for the
    instant ``reference_ms``: minutes older than ``RECENT`` folded into quarter hours,
    quarter hours older than the horizon plus a day dropped."""
    recent_edge = reference_ms // MINUTE - RECENT  # minute buckets start after this
    # The extra day keeps whole local days (and a DST hour) around the horizon's edge.
    cutoff = (reference_ms - horizon // MS - DAY) // QUARTER_MS
    if counter is None:
        total, last, fine, coarse = 0, at_ms, [], []
    else:
        total, last, fine, coarse = counter
        newest = _count_newest(fine, coarse, at_ms // MINUTE, recent_edge, cutoff)
        if newest is not None:
            return [total + 1, max(last, at_ms), newest, coarse]
    minutes = list(buckets(fine))
    quarters: list[tuple[int, int]] = []  # to add to the quarter tier, newest first
    minute = at_ms // MINUTE
    if minute > recent_edge:
        _add(minutes, minute, 1)
    elif minute // QUARTER >= cutoff:
        quarters.append((minute // QUARTER, 1))
    while minutes and minutes[-1][0] <= recent_edge:
        key, count = minutes.pop()
        _add(quarters, key // QUARTER, count)
    return [total + 1, max(last, at_ms), encode(minutes), _settle(coarse, quarters, cutoff)]


def _settle(tier: list[int], added: list[tuple[int, int]], cutoff: int) -> list[int]:
    """The quarter ``tier`` with the buckets ``added`` (newest first), less the buckets
    before ``cutoff``."""
    if not added:
        settled = tier
    elif not tier or added[-1][0] > tier[0]:  # all newer: the tier goes on as it is
        settled = [*encode(added), added[-1][0] - tier[0], *tier[1:]] if tier else encode(added)
    elif added[-1][0] == tier[0] and len(added) == 1:  # the common case: one more there
        settled = [tier[0], tier[1] + added[0][1], *tier[2:]]
    else:
        pairs = list(buckets(tier))
        for key, count in added:
            _add(pairs, key, count)
        settled = encode(pairs)
    # Drop from the oldest end: the oldest key is the newest less every gap.
    oldest = settled[0] - sum(settled[2::2]) if settled else 0
    if not settled or oldest >= cutoff:
        return settled
    settled = list(settled)
    while settled and oldest < cutoff:
        oldest += settled[-2] if len(settled) > 2 else 0
        del settled[-2:]
    return settled


def _count_newest(
    fine: list[int], coarse: list[int], minute: int, recent_edge: int, cutoff: int
) -> list[int] | None:
    """The common case of ``count_into``, without decoding the tiers: an occurrence in
    (or after) the newest minute bucket, and nothing to fold or drop. The new minute
    tier then, or None when the general case applies."""
    if minute <= recent_edge or (fine and minute < fine[0]):
        return None
    # Keys fall by the gaps: the oldest bucket is the newest key less every gap.
    if fine and fine[0] - sum(fine[2::2]) <= recent_edge:
        return None
    if coarse and coarse[0] - sum(coarse[2::2]) < cutoff:
        return None
    if not fine:
        return [minute, 1]
    if minute == fine[0]:
        return [minute, fine[1] + 1, *fine[2:]]
    return [minute, 1, minute - fine[0], *fine[1:]]


def newest_bucket(counter: Counter, fine: bool) -> int | None:
    """The start (ms, at the resolution asked) of the bucket holding the newest
    occurrence, or None when it has none (it was older than the horizon)."""
    minute: int = counter[1] // MINUTE
    minutes, quarters = counter[2], counter[3]
    if minutes and minutes[0] == minute:
        return minute * MINUTE if fine else minute // QUARTER * QUARTER_MS
    if quarters and quarters[0] == minute // QUARTER:
        return int(quarters[0]) * QUARTER_MS
    return None


def occurrences(counter: Counter, *, fine: bool) -> list[tuple[int, int]]:
    """(instant in ms, count) of the counter's occurrences: the newest at its exact
    instant, the others at their bucket's start (minute with ``fine``, else quarter)."""
    found: list[tuple[int, int]] = []
    for tier, is_minutes in ((counter[2], True), (counter[3], False)):
        key = 0
        for index in range(0, len(tier), 2):
            key = tier[0] if index == 0 else key - tier[index]
            if not is_minutes:
                start = key * QUARTER_MS
            elif fine:
                start = key * MINUTE
            else:
                start = key // QUARTER * QUARTER_MS
            found.append((start, tier[index + 1]))
    newest = newest_bucket(counter, fine)
    if newest is not None:
        for index, (start, count) in enumerate(found):
            if start == newest:
                if count == 1:
                    del found[index]
                else:
                    found[index] = (start, count - 1)
                break
        found.append((counter[1], 1))
    return found


def count_in(counter: Counter, low_ms: int, high_ms: int | None, *, fine: bool) -> int:
    """Occurrences in ``[low_ms, high_ms)`` (no upper bound: None), placed as
    ``occurrences`` places them."""
    # In key space: a bucket starts at or after an instant x exactly when its key is at
    # least the first key starting there, -(-x // size); a minute placed at its quarter
    # (not ``fine``) when its key is at least QUARTER times the first such quarter.
    if fine:
        low_minute = -(-low_ms // MINUTE)
        high_minute = None if high_ms is None else -(-high_ms // MINUTE)
    else:
        low_minute = -(-low_ms // QUARTER_MS) * QUARTER
        high_minute = None if high_ms is None else -(-high_ms // QUARTER_MS) * QUARTER
    total = _tier_count(counter[2], low_minute, high_minute)
    total += _tier_count(
        counter[3],
        -(-low_ms // QUARTER_MS),
        None if high_ms is None else -(-high_ms // QUARTER_MS),
    )
    newest = newest_bucket(counter, fine)
    if newest is not None:  # move the newest occurrence from its bucket to its instant
        last: int = counter[1]
        total -= low_ms <= newest and (high_ms is None or newest < high_ms)
        total += low_ms <= last and (high_ms is None or last < high_ms)
    return total


def _tier_count(tier: list[int], low: int, high: int | None) -> int:
    """The counts of a tier's buckets with ``low <= key < high`` (None: no bound)."""
    size = len(tier)
    if not size:
        return 0
    index, key = 0, tier[0]
    if high is not None:
        while key >= high:  # newest first: skip what is too new, then count down to low
            index += 2
            if index >= size:
                return 0
            key -= tier[index]
    total = 0
    while key >= low:
        total += tier[index + 1]
        index += 2
        if index >= size:
            break
        key -= tier[index]
    return total


def placed(counter: Counter, low_ms: int | None, *, fine: bool) -> dict[int, int]:
    """``occurrences`` from ``low_ms`` on (None: all of them), summed by instant."""
    found: dict[int, int] = {}
    minutes, quarters = counter[2], counter[3]
    scale, group = (MINUTE, 1) if fine else (QUARTER_MS, QUARTER)
    key = 0
    for index in range(0, len(minutes), 2):
        key = minutes[0] if index == 0 else key - minutes[index]
        start = key // group * scale
        if low_ms is not None and start < low_ms:
            break  # newest first: every further bucket is older
        found[start] = found.get(start, 0) + minutes[index + 1]
    for index in range(0, len(quarters), 2):
        key = quarters[0] if index == 0 else key - quarters[index]
        start = key * QUARTER_MS
        if low_ms is not None and start < low_ms:
            break
        found[start] = found.get(start, 0) + quarters[index + 1]
    newest = newest_bucket(counter, fine)
    if newest is not None:  # the newest occurrence counts at its instant
        if newest in found:
            found[newest] -= 1
            if not found[newest]:
                del found[newest]
        last: int = counter[1]
        if low_ms is None or last >= low_ms:
            found[last] = found.get(last, 0) + 1
    return found


# --- by local day ---------------------------------------------------------------------


def occurrences_by_day(
    counter: Counter, low: int, today: int, today_low: int, today_high: int, tz: tzinfo
) -> dict[int, int]:
    """Occurrences from instant ``low`` on, by local day: each at its quarter hour's
    start, the newest at its instant (as ``occurrences`` places them). ``today_low``
    and ``today_high``: the first instants of ``today`` and of the next day."""
    per_day: dict[int, int] = {}
    # From ``even`` to the end of today every day is 24 hours: a day is a division there.
    even = _even_since(today, today_low, today_high, tz)
    # Buckets come newest first: walk the days down from today (up for a future one),
    # adding up a day's buckets before storing them.
    day, day_low, day_high = today, today_low, today_high
    low_quarter = -(-low // QUARTER_MS)
    found = 0
    for tier, group in ((counter[2], QUARTER), (counter[3], 1)):
        key = 0
        for index in range(0, len(tier), 2):
            key = tier[0] if index == 0 else key - tier[index]
            quarter = key // group
            if quarter < low_quarter:
                break
            start = quarter * QUARTER_MS
            if not day_low <= start < day_high:
                if found:
                    per_day[day] = per_day.get(day, 0) + found
                    found = 0
                if even <= start < today_high:
                    shift = (start - today_low) // DAY
                    day, day_low = today + shift, today_low + shift * DAY
                    day_high = day_low + DAY
                else:
                    day, day_low, day_high = _walk(start, day, day_low, day_high, tz)
            found += tier[index + 1]
    if found:
        per_day[day] = per_day.get(day, 0) + found
    newest = newest_bucket(counter, fine=False)
    if newest is not None:  # the newest occurrence counts at its instant
        last: int = counter[1]
        for instant, change in ((newest, -1), (last, 1)):
            if instant < low:
                continue
            if even <= instant < today_high:
                day = today + (instant - today_low) // DAY
            else:
                day = _walk(instant, today, today_low, today_high, tz)[0]
            per_day[day] = per_day.get(day, 0) + change
    return per_day


def _even_since(today: int, today_low: int, today_high: int, tz: tzinfo) -> int:
    """The first instant of the earliest day (back to ``_EVEN_DAYS`` before ``today``)
    from which every day up to ``today`` is 24 hours long; ``today_high`` when today
    is not. Remembered per zone and day."""
    since = _EVEN.get((tz, today))
    if since is not None:
        return since
    since = today_high
    if today_high - today_low == DAY:
        since = today_low
        for back in range(1, _EVEN_DAYS + 1):
            if day_start(today - back, tz) != today_low - back * DAY:
                break
            since = today_low - back * DAY
    if len(_EVEN) > 4096:  # zones and days in use are few; never let the cache grow
        _EVEN.clear()
    _EVEN[tz, today] = since
    return since


_EVEN_DAYS = 100
_EVEN: dict[tuple[tzinfo, int], int] = {}
"""``_even_since`` by zone and day."""


def _walk(instant: int, day: int, low: int, high: int, tz: tzinfo) -> tuple[int, int, int]:
    """From local ``day`` (its first instant ``low``, and the next day's, ``high``) to
    the day of ``instant``, a day at a time: (that day, its first instant, the next's)."""
    while instant < low:
        day, high = day - 1, low
        low = day_start(day, tz)
    while instant >= high:
        day, low = day + 1, high
        high = day_start(day + 1, tz)
    return day, low, high
