"""Journey time: users' zones, wall-clock times as instants, the runs of an audience
entry's schedule, when a delay ends, and silent hours.

Pure functions: no clock reads, no I/O. Every datetime taken or given is aware, and
every one given is in UTC. Wall-clock times follow one DST rule everywhere: a time that
does not exist (a spring-forward gap) moves forward by the gap, and a time that exists
twice (a fall-back fold) is its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.journey_nodes import USER_ZONE, DelayNode, DurationUnit, Weekday
from schemas.journeys import Schedule, SilentHours

TIME_ZONE_TAG = "Time zone"
"""The tag holding a user's zone, an IANA name."""
AHEAD = timedelta(hours=14)
"""The most any zone is ahead of UTC (Pacific/Kiritimati): where a local time comes first."""
BEHIND = timedelta(hours=12)
"""The most any zone is behind UTC (Etc/GMT+12): where a local time comes last."""
ONE_DAY = timedelta(days=1)
MIDNIGHT = time(0, 0)


# --- zones and wall-clock times -----------------------------------------------------


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo | None:
    # Bounded: the names come from users' tags, so anything can turn up.
    if name == "localtime":  # the server's own zone, not a place
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, "Europe"
        return None


def user_zone(tags: Mapping[str, Any], default: str) -> ZoneInfo:
    """The zone in the user's ``Time zone`` tag; ``default`` when it is missing or not a
    known IANA name."""
    name = tags.get(TIME_ZONE_TAG)
    found = _zone(name) if isinstance(name, str) else None
    return found or _zone(default) or ZoneInfo(default)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the clocks in ``zone`` show ``at`` on ``day``."""
    # fold=0 reads the offset in force before a transition: in a gap that is the
    # offset the clocks jumped from, which puts the time forward by the gap; in a fold
    # it is the first pass.
    return datetime.combine(day, at.replace(fold=0), tzinfo=zone).astimezone(UTC)


def _instant_after(day: date, at: time, zone: ZoneInfo, moment: datetime) -> datetime:
    """The first instant after ``moment`` at which ``zone`` shows ``at`` on ``day`` (the
    second pass of a fold when ``moment`` is inside it), or on the next day."""
    for fold in (0, 1):
        instant = datetime.combine(day, at.replace(fold=fold), tzinfo=zone).astimezone(UTC)
        if instant > moment:
            return instant
    return local_instant(day + ONE_DAY, at, zone)


def _first_allowed(day: date, weekdays: Sequence[Weekday]) -> date:
    """``day``, or the first day after it that is one of ``weekdays`` (any when empty)."""
    allowed = {weekday.number for weekday in weekdays}
    while allowed and day.weekday() not in allowed:
        day += ONE_DAY
    return day


# --- schedule runs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One run of an audience entry's schedule. Runs order by ``earliest``.

    ``local`` is the occurrence's naive local date and time (None for ``now``);
    ``earliest`` and ``latest`` bound the instants at which users enter: equal in a
    fixed zone; in users' zones, ``local`` where it comes first (UTC+14) and last
    (UTC-12)."""

    id: str
    local: datetime | None
    earliest: datetime
    latest: datetime

    def _key(self) -> tuple[datetime, datetime, str]:
        return self.earliest, self.latest, self.id

    def __lt__(self, other: Run) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Run) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Run) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Run) -> bool:
        return self._key() >= other._key()


def _run(local: datetime, zone: ZoneInfo | None) -> Run:
    """The run at naive ``local``, in ``zone`` (None: the users' zones)."""
    run_id = f"{local:%Y%m%dT%H%M}"
    if zone is None:
        return Run(
            run_id, local, (local - AHEAD).replace(tzinfo=UTC), (local + BEHIND).replace(tzinfo=UTC)
        )
    instant = local_instant(local.date(), local.time(), zone)
    return Run(run_id, local, instant, instant)


def _later(run: Run, after: Run) -> bool:
    if run.local is not None and after.local is not None:
        return run.local > after.local
    return run.earliest > after.earliest  # after a "now" run (a schedule changed kind)


def _pattern(schedule: Schedule, anchor: date, first: date) -> Iterator[date]:
    """The dates of a recurring schedule anchored at ``anchor`` (its day 0 and week 0),
    from ``first`` on, without end."""
    every = schedule.every
    if schedule.unit == "days":
        # Ceiling division: the first multiple of ``every`` days on or after ``first``.
        day = anchor + timedelta(days=-(-(first - anchor).days // every) * every)
        while True:
            yield day
            day += timedelta(days=every)
    numbers = sorted(weekday.number for weekday in schedule.weekdays)
    monday = anchor - timedelta(days=anchor.weekday())
    week = (first - monday).days // 7
    week += -week % every  # the first counted week from the one holding ``first``
    while True:
        start = monday + timedelta(weeks=week)
        for number in numbers:
            day = start + timedelta(days=number)
            if day >= first:
                yield day
        week += every


def _zone_of(schedule: Schedule) -> ZoneInfo | None:
    return None if schedule.timezone == USER_ZONE else ZoneInfo(schedule.timezone)


def _time_of(schedule: Schedule) -> time:
    if schedule.at is None:  # refused by the schedule's own validation
        raise ValueError(f"a {schedule.kind!r} schedule needs a time of day")
    return schedule.at


def next_run(schedule: Schedule, launched_at: datetime, after: Run | None) -> Run | None:
    """The schedule's first run after ``after`` (None: its first run), or None when
    there is none.

    ``now`` runs once, at ``launched_at``. ``once`` runs once, even before
    ``launched_at``: skipping runs in the past is the caller's choice. A recurring
    schedule's first run is the first occurrence still to come somewhere at
    ``launched_at`` (its ``latest`` at or after it), from ``date`` or, without one, from
    the launch day (in the schedule's zone; in UTC for users' zones, where the day
    before can still be to come in the west).
    """
    launched_at = launched_at.astimezone(UTC)
    if schedule.kind == "now":
        return None if after is not None else Run("now", None, launched_at, launched_at)
    at = _time_of(schedule)
    zone = _zone_of(schedule)
    if schedule.kind == "once":
        if schedule.date is None:  # refused by the schedule's own validation
            raise ValueError("a 'once' schedule needs a date")
        run = _run(datetime.combine(schedule.date, at), zone)
        return run if after is None or _later(run, after) else None
    if zone is None:
        anchor = launched_at.date()
        # latest = local + BEHIND >= launched_at: no local date before this one.
        first = (launched_at - BEHIND).date()
    else:
        anchor = launched_at.astimezone(zone).date()
        first = anchor - ONE_DAY  # a day's margin: a gap can push a time past midnight
    if schedule.date is not None:
        anchor = schedule.date
        first = max(first, schedule.date)
    if after is not None and after.local is not None:
        first = max(first, after.local.date())
    for day in _pattern(schedule, anchor, first):
        if schedule.until is not None and day > schedule.until:
            return None
        run = _run(datetime.combine(day, at), zone)
        if run.latest >= launched_at and (after is None or _later(run, after)):
            return run
    raise AssertionError("a recurring schedule has no end")  # pragma: no cover


def due_runs(
    schedule: Schedule,
    launched_at: datetime,
    after: Run | None,
    now: datetime,
    limit: int = 100,
) -> list[Run]:
    """The runs after ``after`` that have started by ``now`` (``earliest``), in order, at
    most ``limit`` of them (a schedule far in the past has many). None before the launch:
    a clock behind ``launched_at`` starts nothing yet."""
    runs: list[Run] = []
    if now < launched_at:
        return runs
    while len(runs) < limit:
        run = next_run(schedule, launched_at, after)
        if run is None or run.earliest > now:
            break
        runs.append(run)
        after = run
    return runs


_LATEST_MARGIN = timedelta(days=3)
"""Beyond a schedule's period, how far back from ``now`` its latest due run is looked
for: zones put a run's instants up to 26 hours apart."""


def latest_due_run(
    schedule: Schedule, launched_at: datetime, after: Run | None, now: datetime
) -> Run | None:
    """The latest run after ``after`` that has started by ``now`` (None: none): the only
    one that starts, however many were missed (a first tick far after the launch, a
    worker down for weeks). Found from a period before ``now``, without walking the
    runs in between."""
    if now < launched_at:
        return None
    start = after
    if schedule.kind == "recurring" and (after is None or after.local is not None):
        days = schedule.every * (7 if schedule.unit == "weeks" else 1)
        floor_day = now.astimezone(UTC).date() - timedelta(days=days) - _LATEST_MARGIN
        if schedule.until is not None:
            floor_day = min(floor_day, schedule.until - timedelta(days=days) - _LATEST_MARGIN)
        floor_local = datetime.combine(floor_day, MIDNIGHT)
        if after is None or (after.local is not None and after.local < floor_local):
            # Runs before this day cannot be the latest: a period holds at least one.
            instant = floor_local.replace(tzinfo=UTC)
            start = Run("", floor_local, instant, instant)
    last: Run | None = None
    while True:
        due = due_runs(schedule, launched_at, start, now)
        if not due:
            return last
        last = start = due[-1]


def user_run_instant(run: Run, zone: ZoneInfo) -> datetime:
    """When a run in users' zones starts for a user in ``zone``."""
    if run.local is None:  # "now": the same instant everywhere
        return run.earliest
    return local_instant(run.local.date(), run.local.time(), zone)


# --- delays -------------------------------------------------------------------------


_LOCAL_DAYS = {DurationUnit.DAYS: 1, DurationUnit.WEEKS: 7}


def delay_end(node: DelayNode, start: datetime, zone: ZoneInfo) -> datetime:
    """When a user who reaches ``node`` at ``start`` leaves it; ``zone`` is the node's
    zone, resolved (the user's own for ``user``).

    First the duration: minutes and hours as elapsed time, days and weeks as calendar
    days in ``zone`` (a day's wait from 17:00 ends at 17:00, across a DST change too).
    Then the next ``until`` time of day at or after that, on one of ``weekdays`` if
    given; with weekdays and no ``until``, the start of the next allowed day unless the
    day reached is allowed.
    """
    end = start.astimezone(UTC)
    if node.duration is not None:
        days = _LOCAL_DAYS.get(node.duration.unit)
        if days is None:
            end += node.duration.delta
        else:
            local = end.astimezone(zone).replace(tzinfo=None) + timedelta(
                days=days * node.duration.amount
            )
            end = local_instant(local.date(), local.time(), zone)
    day = end.astimezone(zone).date()
    if node.until is not None:
        if local_instant(day, node.until, zone) < end:
            day += ONE_DAY
        return local_instant(_first_allowed(day, node.weekdays), node.until, zone)
    allowed = _first_allowed(day, node.weekdays)
    return end if allowed == day else local_instant(allowed, MIDNIGHT, zone)


# --- silent hours -------------------------------------------------------------------


def _window_end(window: SilentHours, moment: datetime, zone: ZoneInfo) -> datetime | None:
    """When ``window`` ends, if ``moment`` is inside it (start included, end not)."""
    local = moment.astimezone(zone)
    clock = local.time()
    day = local.date()
    if window.start < window.end:
        inside = window.start <= clock < window.end
    else:  # across midnight: the evening part ends the next day
        inside = clock >= window.start or clock < window.end
        if clock >= window.start:
            day += ONE_DAY
    return _instant_after(day, window.end, zone, moment) if inside else None


def silent_until(
    windows: Sequence[SilentHours], channel: str, at: datetime, zone: ZoneInfo
) -> datetime | None:
    """When a send on ``channel`` due ``at`` may go out, if ``at`` is inside silent hours
    (local time in ``zone``; a window without channels covers them all): the end of the
    windows, chained ones included. None when it may go out at once, and when the
    windows leave no time of day free (nothing would ever go out: they silence nothing).
    """
    applying = [w for w in windows if not w.channels or channel in w.channels]
    moment = at.astimezone(UTC)
    # Each step passes a window's end, and a free time of day comes within three days
    # (two when a gap swallows it one day): a window ends at most four times by then.
    for _ in range(4 * len(applying) + 2):
        ends = [end for w in applying if (end := _window_end(w, moment, zone)) is not None]
        if not ends:
            return None if moment == at else moment
        moment = max(ends)
    return None
