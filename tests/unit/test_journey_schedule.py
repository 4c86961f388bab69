"""Journey time (engine/journeys/schedule.py): users' zones, wall-clock instants across
DST, schedule runs, delays and silent hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.journeys.schedule import (
    Run,
    delay_end,
    due_runs,
    latest_due_run,
    local_instant,
    next_run,
    silent_until,
    user_run_instant,
    user_zone,
)
from schemas.journey_nodes import Channel, DelayNode, Duration, Weekday
from schemas.journeys import Schedule, SilentHours

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14
PAGO_PAGO = ZoneInfo("Pacific/Pago_Pago")  # UTC-11
ZONES = sorted(available_timezones() - {"localtime"})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def naive(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A naive date and time: a wall-clock reading, or a bound for hypothesis."""
    return utc(year, month, day, hour, minute).replace(tzinfo=None)


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, second: int = 0
) -> datetime:
    """A wall-clock time in ``zone`` (first pass in a fold), as UTC."""
    return datetime(year, month, day, hour, minute, second, tzinfo=zone).astimezone(UTC)


def first_runs(schedule: Schedule, launched_at: datetime, count: int) -> list[Run]:
    """The schedule's first ``count`` runs (fewer when it ends)."""
    found: list[Run] = []
    run = next_run(schedule, launched_at, None)
    while run is not None and len(found) < count:
        found.append(run)
        run = next_run(schedule, launched_at, run)
    return found


def runs(schedule: Schedule, launched_at: datetime, count: int) -> list[str]:
    return [run.id for run in first_runs(schedule, launched_at, count)]


def delay(**fields: Any) -> DelayNode:
    return DelayNode(id="wait", next={"next": "done"}, **fields)


# --- zones and wall-clock times -----------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"Time zone": "Europe/Paris"}, "Europe/Paris"),
        ({"Time zone": "Pacific/Kiritimati"}, "Pacific/Kiritimati"),
        ({}, "America/New_York"),
        ({"Time zone": "Mars/Olympus_Mons"}, "America/New_York"),
        ({"Time zone": ""}, "America/New_York"),
        ({"Time zone": "Europe"}, "America/New_York"),  # a directory of zones
        ({"Time zone": "../etc/passwd"}, "America/New_York"),
        ({"Time zone": "localtime"}, "America/New_York"),  # the server's zone
        ({"Time zone": 2}, "America/New_York"),
        ({"Time zone": None}, "America/New_York"),
    ],
)
def test_user_zone(tags: dict[str, Any], expected: str) -> None:
    assert user_zone(tags, "America/New_York") == ZoneInfo(expected)


def test_user_zone_is_cached() -> None:
    tags = {"Time zone": "Asia/Kathmandu"}
    assert user_zone(tags, "UTC") is user_zone(dict(tags), "UTC")


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected"),
    [
        (PARIS, date(2026, 6, 1), time(12, 0), utc(2026, 6, 1, 10, 0)),
        (PARIS, date(2026, 1, 15), time(12, 0), utc(2026, 1, 15, 11, 0)),
        # Spring forward: 02:00 -> 03:00. 02:30 does not exist: 03:30 local.
        (PARIS, date(2026, 3, 29), time(2, 30), utc(2026, 3, 29, 1, 30)),
        (PARIS, date(2026, 3, 29), time(3, 30), utc(2026, 3, 29, 1, 30)),
        (PARIS, date(2026, 3, 29), time(1, 59), utc(2026, 3, 29, 0, 59)),
        # Fall back: 03:00 -> 02:00. 02:30 happens twice: the first one.
        (PARIS, date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),
        (PARIS, date(2026, 10, 25), time(3, 0), utc(2026, 10, 25, 2, 0)),
        (NEW_YORK, date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7, 30)),
        (NEW_YORK, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),
        (KIRITIMATI, date(2026, 12, 4), time(17, 0), utc(2026, 12, 4, 3, 0)),
        (PAGO_PAGO, date(2026, 12, 4), time(17, 0), utc(2026, 12, 5, 4, 0)),
        (ZoneInfo("UTC"), date(2026, 12, 4), time(17, 0), utc(2026, 12, 4, 17, 0)),
    ],
)
def test_local_instant(zone: ZoneInfo, day: date, at: time, expected: datetime) -> None:
    instant = local_instant(day, at, zone)
    assert instant == expected
    assert instant.tzinfo is UTC


def test_local_instant_ignores_a_fold_on_the_time() -> None:
    at = time(2, 30, fold=1)
    assert local_instant(date(2026, 10, 25), at, PARIS) == utc(2026, 10, 25, 0, 30)


# --- schedule runs ------------------------------------------------------------------

FRIDAY = date(2026, 12, 4)  # a Friday


def test_now_runs_once_at_launch() -> None:
    schedule = Schedule(kind="now")
    launched = utc(2026, 12, 4, 18, 0)
    first = next_run(schedule, launched, None)
    assert first == Run("now", None, launched, launched)
    assert next_run(schedule, launched, first) is None
    assert user_run_instant(first, PARIS) == launched


def test_once_in_a_fixed_zone() -> None:
    schedule = Schedule(kind="once", date=FRIDAY, at="17:00", timezone="Europe/Paris")
    first = next_run(schedule, utc(2026, 12, 1), None)
    instant = utc(2026, 12, 4, 16, 0)
    assert first == Run("20261204T1700", naive(2026, 12, 4, 17, 0), instant, instant)
    assert next_run(schedule, utc(2026, 12, 1), first) is None


def test_once_in_the_past_is_still_its_run() -> None:
    schedule = Schedule(kind="once", date=FRIDAY, at="17:00")
    launched = utc(2027, 1, 1)
    first = next_run(schedule, launched, None)
    assert first is not None
    assert first.id == "20261204T1700"
    assert first.earliest < launched
    assert due_runs(schedule, launched, None, launched) == [first]


def test_once_in_users_zones() -> None:
    schedule = Schedule(kind="once", date=FRIDAY, at="17:00", timezone="user")
    run = next_run(schedule, utc(2026, 12, 1), None)
    assert run == Run(
        "20261204T1700",
        naive(2026, 12, 4, 17, 0),
        utc(2026, 12, 4, 3, 0),  # 17:00 at UTC+14
        utc(2026, 12, 5, 5, 0),  # 17:00 at UTC-12
    )
    assert user_run_instant(run, KIRITIMATI) == utc(2026, 12, 4, 3, 0)
    assert user_run_instant(run, PARIS) == utc(2026, 12, 4, 16, 0)
    assert user_run_instant(run, PAGO_PAGO) == utc(2026, 12, 5, 4, 0)


FRIDAYS_AT_FIVE = {"kind": "recurring", "at": "17:00", "unit": "weeks", "weekdays": ["fri"]}


@pytest.mark.parametrize(
    ("launched", "first"),
    [
        (local(PARIS, 2026, 12, 2, 9, 0), "20261204T1700"),  # Wednesday
        (local(PARIS, 2026, 12, 4, 16, 59), "20261204T1700"),
        (local(PARIS, 2026, 12, 4, 17, 0), "20261204T1700"),  # at the instant itself
        (local(PARIS, 2026, 12, 4, 18, 0), "20261211T1700"),  # launched after it
        (local(PARIS, 2026, 12, 5, 0, 30), "20261211T1700"),
    ],
)
def test_weekly_in_a_fixed_zone(launched: datetime, first: str) -> None:
    schedule = Schedule(**FRIDAYS_AT_FIVE, timezone="Europe/Paris")
    run = next_run(schedule, launched, None)
    assert run is not None
    assert run.id == first
    assert run.earliest == run.latest >= launched
    following = next_run(schedule, launched, run)
    assert following is not None
    assert following.local == run.local + timedelta(weeks=1)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("launched", "first"),
    [
        (utc(2026, 12, 4, 2, 0), "20261204T1700"),  # before it comes anywhere
        # Past in Kiritimati and Paris, still to come west of UTC-7.
        (utc(2026, 12, 4, 18, 0), "20261204T1700"),
        # Past everywhere but UTC-12: the UTC day is Saturday, the run is Friday's.
        (utc(2026, 12, 5, 4, 30), "20261204T1700"),
        (utc(2026, 12, 5, 5, 1), "20261211T1700"),  # past everywhere
    ],
)
def test_weekly_in_users_zones(launched: datetime, first: str) -> None:
    schedule = Schedule(**FRIDAYS_AT_FIVE, timezone="user")
    run = next_run(schedule, launched, None)
    assert run is not None
    assert run.id == first
    assert run.latest >= launched
    assert run.earliest == user_run_instant(run, KIRITIMATI)
    assert run.earliest <= user_run_instant(run, PAGO_PAGO) <= run.latest


def test_users_zones_after_friday_6pm_utc() -> None:
    # Kiritimati's users' Friday 17:00 has passed, Pago Pago's is ten hours away.
    schedule = Schedule(**FRIDAYS_AT_FIVE, timezone="user")
    launched = utc(2026, 12, 4, 18, 0)
    run = next_run(schedule, launched, None)
    assert run is not None
    assert user_run_instant(run, KIRITIMATI) < launched
    assert user_run_instant(run, PAGO_PAGO) == utc(2026, 12, 5, 4, 0)


def test_every_two_weeks_counts_weeks_from_the_start_date() -> None:
    schedule = Schedule(
        kind="recurring",
        date=date(2026, 12, 2),  # a Wednesday: its week starts Monday 30 November
        at="09:00",
        every=2,
        unit="weeks",
        weekdays=["fri", "mon"],
    )
    assert runs(schedule, utc(2026, 11, 1), 5) == [
        "20261204T0900",  # not Monday 30 November: before the start date
        "20261214T0900",
        "20261218T0900",
        "20261228T0900",
        "20270101T0900",
    ]
    # Launched in a week that is not counted: the next counted one.
    assert runs(schedule, utc(2026, 12, 8), 1) == ["20261214T0900"]


def test_every_three_days() -> None:
    schedule = Schedule(
        kind="recurring", date=date(2026, 12, 1), at="08:00", every=3, timezone="Europe/Paris"
    )
    assert runs(schedule, utc(2026, 11, 1), 3) == [
        "20261201T0800",
        "20261204T0800",
        "20261207T0800",
    ]
    assert runs(schedule, local(PARIS, 2026, 12, 4, 8, 1), 2) == [
        "20261207T0800",
        "20261210T0800",
    ]


def test_recurring_without_a_date_starts_on_the_launch_day() -> None:
    schedule = Schedule(kind="recurring", at="08:00", every=3, timezone="America/New_York")
    launched = local(NEW_YORK, 2026, 12, 4, 7, 0)
    assert runs(schedule, launched, 2) == ["20261204T0800", "20261207T0800"]
    launched = local(NEW_YORK, 2026, 12, 4, 9, 0)  # the day's time has passed
    assert runs(schedule, launched, 2) == ["20261207T0800", "20261210T0800"]


def test_recurring_in_users_zones_can_start_the_day_before_in_utc() -> None:
    # 00:30 UTC on Saturday: Friday 17:00 is still to come west of UTC-7.
    schedule = Schedule(kind="recurring", at="17:00", timezone="user")
    assert runs(schedule, utc(2026, 12, 5, 0, 30), 2) == ["20261204T1700", "20261205T1700"]


def test_until_is_inclusive() -> None:
    schedule = Schedule(
        kind="recurring", date=date(2026, 12, 1), until=date(2026, 12, 3), at="23:59"
    )
    assert runs(schedule, utc(2026, 11, 1), 10) == [
        "20261201T2359",
        "20261202T2359",
        "20261203T2359",
    ]
    assert next_run(schedule, utc(2026, 12, 4), None) is None  # launched after the end


def test_daily_across_dst_keeps_the_wall_clock_time() -> None:
    schedule = Schedule(
        kind="recurring", date=date(2026, 3, 28), at="02:30", timezone="Europe/Paris"
    )
    first = next_run(schedule, utc(2026, 3, 1), None)
    assert first is not None
    second = next_run(schedule, utc(2026, 3, 1), first)
    third = next_run(schedule, utc(2026, 3, 1), second)
    assert second is not None
    assert third is not None
    assert [first.earliest, second.earliest, third.earliest] == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 30),  # 02:30 does not exist: 03:30 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    assert second.id == "20260329T0230"


def test_due_runs() -> None:
    schedule = Schedule(kind="recurring", at="09:00", timezone="Europe/Paris")
    launched = local(PARIS, 2026, 12, 1, 10, 0)
    now = local(PARIS, 2026, 12, 4, 9, 0)
    due = due_runs(schedule, launched, None, now)
    assert [run.id for run in due] == ["20261202T0900", "20261203T0900", "20261204T0900"]
    assert due_runs(schedule, launched, due[-1], now) == []
    assert due_runs(schedule, launched, due[0], now) == due[1:]
    assert due_runs(schedule, launched, None, launched) == []


def test_due_runs_are_capped() -> None:
    schedule = Schedule(kind="recurring", date=date(2000, 1, 1), at="09:00")
    launched = utc(2000, 1, 1)
    now = utc(2026, 12, 4)
    due = due_runs(schedule, launched, None, now, limit=100)
    assert len(due) == 100
    assert due[0].id == "20000101T0900"
    assert due[-1].id == "20000409T0900"
    more = due_runs(schedule, launched, due[-1], now, limit=100)
    assert more[0].id == "20000410T0900"
    assert due == sorted(due)


def test_runs_order_by_earliest() -> None:
    early = Run("b", None, utc(2026, 12, 4), utc(2026, 12, 6))
    late = Run("a", None, utc(2026, 12, 5), utc(2026, 12, 5))
    assert early < late
    assert early <= late
    assert late > early
    assert late >= early
    assert sorted([late, early]) == [early, late]


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(date(2000, 1, 1), date(2040, 12, 31)),
    at=st.times().map(lambda moment: moment.replace(second=0, microsecond=0)),
)
def test_a_users_run_instant_is_between_earliest_and_latest(zone: str, day: date, at: time) -> None:
    schedule = Schedule(kind="once", date=day, at=at, timezone="user")
    run = next_run(schedule, utc(2000, 1, 1), None)
    assert run is not None
    assert run.earliest <= user_run_instant(run, ZoneInfo(zone)) <= run.latest


@settings(max_examples=200, deadline=None)
@given(
    every=st.integers(1, 5),
    unit=st.sampled_from(["days", "weeks"]),
    weekdays=st.sets(st.sampled_from(list(Weekday)), min_size=1),
    start=st.none() | st.dates(date(2025, 1, 1), date(2027, 12, 31)),
    zone=st.sampled_from(["user", "UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]),
    launched=st.datetimes(naive(2025, 1, 1), naive(2027, 12, 31), timezones=st.just(UTC)),
)
def test_recurring_runs_follow_their_pattern(
    every: int,
    unit: Literal["days", "weeks"],
    weekdays: set[Weekday],
    start: date | None,
    zone: str,
    launched: datetime,
) -> None:
    schedule = Schedule(
        kind="recurring",
        date=start,
        at="09:30",
        every=every,
        unit=unit,
        weekdays=tuple(weekdays) if unit == "weeks" else (),
        timezone=zone,
    )
    found = first_runs(schedule, launched, 20)
    assert found
    assert found == sorted(found)
    assert found[0].latest >= launched
    days = [run.local.date() for run in found]  # type: ignore[union-attr]
    assert len(set(days)) == len(days)
    anchor = start or (launched if zone == "user" else launched.astimezone(ZoneInfo(zone))).date()
    monday = anchor - timedelta(days=anchor.weekday())

    def in_pattern(day: date) -> bool:
        if unit == "days":
            return (day - anchor).days % every == 0
        return ((day - monday).days // 7) % every == 0 and day.weekday() in numbers

    numbers = {weekday.number for weekday in weekdays}
    for day in days:
        assert in_pattern(day)
        assert start is None or day >= start
    # Nothing skipped: the occurrence before the first run is before the start date,
    # or was over everywhere at launch.
    before = next(
        days[0] - timedelta(days=back)
        for back in range(1, 50)
        if in_pattern(days[0] - timedelta(days=back))
    )
    if start is None or before >= start:
        once = Schedule(kind="once", date=before, at="09:30", timezone=zone)
        run = next_run(once, launched, None)
        assert run is not None
        assert run.latest < launched


# --- delays -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # Spring forward: a 23-hour day.
        (PARIS, local(PARIS, 2026, 3, 28, 17, 0), utc(2026, 3, 29, 15, 0)),
        # Fall back: a 25-hour day.
        (PARIS, local(PARIS, 2026, 10, 24, 17, 0), utc(2026, 10, 25, 16, 0)),
        (NEW_YORK, local(NEW_YORK, 2026, 3, 7, 17, 0), utc(2026, 3, 8, 21, 0)),
        (NEW_YORK, local(NEW_YORK, 2026, 10, 31, 17, 0), utc(2026, 11, 1, 22, 0)),
        # Into the gap: 02:30 does not exist, 03:30.
        (PARIS, local(PARIS, 2026, 3, 28, 2, 30), utc(2026, 3, 29, 1, 30)),
    ],
)
def test_a_days_delay_keeps_the_wall_clock_time(
    zone: ZoneInfo, start: datetime, expected: datetime
) -> None:
    assert delay_end(delay(duration=Duration(amount=1, unit="days")), start, zone) == expected


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (Duration(amount=24, unit="hours"), local(PARIS, 2026, 3, 29, 18, 0)),
        (Duration(amount=1440, unit="minutes"), local(PARIS, 2026, 3, 29, 18, 0)),
        (Duration(amount=1, unit="weeks"), local(PARIS, 2026, 4, 4, 17, 0)),
        (Duration(amount=3, unit="days"), local(PARIS, 2026, 3, 31, 17, 0)),
        (Duration(amount=30, unit="minutes"), local(PARIS, 2026, 3, 28, 17, 30)),
    ],
)
def test_delay_durations(duration: Duration, expected: datetime) -> None:
    start = local(PARIS, 2026, 3, 28, 17, 0)
    assert delay_end(delay(duration=duration), start, PARIS) == expected


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (local(PARIS, 2026, 12, 3, 8, 0), local(PARIS, 2026, 12, 3, 9, 0)),
        (local(PARIS, 2026, 12, 3, 9, 0), local(PARIS, 2026, 12, 3, 9, 0)),  # no wait
        (local(PARIS, 2026, 12, 3, 9, 0) + timedelta(seconds=1), local(PARIS, 2026, 12, 4, 9, 0)),
        (local(PARIS, 2026, 12, 3, 10, 0), local(PARIS, 2026, 12, 4, 9, 0)),
        (local(PARIS, 2026, 3, 28, 20, 0), utc(2026, 3, 29, 7, 0)),  # 09:00 CEST
    ],
)
def test_delay_until_a_time_of_day(start: datetime, expected: datetime) -> None:
    assert delay_end(delay(until="09:00"), start, PARIS) == expected


def test_delay_duration_then_time_of_day() -> None:
    node = delay(duration=Duration(amount=1, unit="hours"), until="09:00")
    assert delay_end(node, local(PARIS, 2026, 12, 3, 7, 30), PARIS) == local(
        PARIS, 2026, 12, 3, 9, 0
    )
    assert delay_end(node, local(PARIS, 2026, 12, 3, 8, 30), PARIS) == local(
        PARIS, 2026, 12, 4, 9, 0
    )


WORKDAYS = ["mon", "tue", "wed", "thu", "fri"]


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (local(PARIS, 2026, 12, 2, 14, 0), local(PARIS, 2026, 12, 2, 14, 0)),  # Wednesday
        (local(PARIS, 2026, 12, 5, 14, 0), local(PARIS, 2026, 12, 7, 0, 0)),  # Saturday
        (local(PARIS, 2026, 12, 6, 23, 59), local(PARIS, 2026, 12, 7, 0, 0)),  # Sunday
        # Saturday 00:30 in Paris, still Friday in UTC: Paris's day counts.
        (local(PARIS, 2026, 12, 5, 0, 30), local(PARIS, 2026, 12, 7, 0, 0)),
    ],
)
def test_delay_to_weekdays(start: datetime, expected: datetime) -> None:
    assert delay_end(delay(weekdays=WORKDAYS), start, PARIS) == expected


def test_delay_until_a_time_on_weekdays() -> None:
    node = delay(until="09:00", weekdays=["mon"])
    friday = local(PARIS, 2026, 12, 4, 10, 0)
    assert delay_end(node, friday, PARIS) == local(PARIS, 2026, 12, 7, 9, 0)
    monday_early = local(PARIS, 2026, 12, 7, 8, 0)
    assert delay_end(node, monday_early, PARIS) == local(PARIS, 2026, 12, 7, 9, 0)
    monday_late = local(PARIS, 2026, 12, 7, 10, 0)
    assert delay_end(node, monday_late, PARIS) == local(PARIS, 2026, 12, 14, 9, 0)


def test_delay_of_a_day_then_weekdays() -> None:
    node = delay(duration=Duration(amount=1, unit="days"), weekdays=WORKDAYS)
    friday = local(NEW_YORK, 2026, 12, 4, 17, 0)
    assert delay_end(node, friday, NEW_YORK) == local(NEW_YORK, 2026, 12, 7, 0, 0)
    thursday = local(NEW_YORK, 2026, 12, 3, 17, 0)
    assert delay_end(node, thursday, NEW_YORK) == local(NEW_YORK, 2026, 12, 4, 17, 0)


@st.composite
def delays(draw: st.DrawFn) -> DelayNode:
    duration = draw(
        st.none()
        | st.builds(
            Duration,
            amount=st.integers(1, 500),
            unit=st.sampled_from(["minutes", "hours", "days", "weeks"]),
        )
    )
    until = draw(st.none() | st.times().map(lambda at: at.replace(second=0, microsecond=0)))
    weekdays = draw(st.lists(st.sampled_from(list(Weekday)), unique=True))
    assume(duration is not None or until is not None or weekdays)
    return delay(duration=duration, until=until, weekdays=weekdays)


INSTANTS = st.datetimes(naive(1990, 1, 1), naive(2060, 12, 31), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(node=delays(), start=INSTANTS, zone=st.sampled_from(ZONES))
def test_a_delay_never_ends_before_it_starts(node: DelayNode, start: datetime, zone: str) -> None:
    end = delay_end(node, start, ZoneInfo(zone))
    assert end >= start
    assert end.tzinfo is UTC
    if node.duration is not None and node.duration.unit in ("minutes", "hours"):
        assert end >= start + node.duration.delta


# --- silent hours -------------------------------------------------------------------


def window(start: str, end: str, *channels: str) -> SilentHours:
    return SilentHours(start=start, end=end, channels=channels)


NIGHT = window("22:00", "08:00")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(PARIS, 2026, 12, 3, 23, 0), local(PARIS, 2026, 12, 4, 8, 0)),
        (local(PARIS, 2026, 12, 4, 3, 0), local(PARIS, 2026, 12, 4, 8, 0)),
        (local(PARIS, 2026, 12, 3, 22, 0), local(PARIS, 2026, 12, 4, 8, 0)),  # start: silent
        (local(PARIS, 2026, 12, 4, 8, 0), None),  # end: not silent
        (local(PARIS, 2026, 12, 4, 7, 59, 59), local(PARIS, 2026, 12, 4, 8, 0)),
        (local(PARIS, 2026, 12, 4, 12, 0), None),
        (local(PARIS, 2026, 12, 3, 21, 59), None),
        # A 23-hour night's end in summer time.
        (local(PARIS, 2026, 3, 28, 23, 0), utc(2026, 3, 29, 6, 0)),
    ],
)
def test_silent_hours_across_midnight(at: datetime, expected: datetime | None) -> None:
    assert silent_until([NIGHT], "push", at, PARIS) == expected


def test_silent_hours_are_local() -> None:
    at = utc(2026, 12, 4, 2, 0)  # 03:00 in Paris, 21:00 in New York
    assert silent_until([NIGHT], "email", at, PARIS) == local(PARIS, 2026, 12, 4, 8, 0)
    assert silent_until([NIGHT], "email", at, NEW_YORK) is None


def test_silent_hours_for_some_channels() -> None:
    lunch = window("12:00", "14:00", "email", "sms")
    at = local(PARIS, 2026, 12, 4, 13, 0)
    assert silent_until([lunch], "email", at, PARIS) == local(PARIS, 2026, 12, 4, 14, 0)
    assert silent_until([lunch], Channel.SMS, at, PARIS) == local(PARIS, 2026, 12, 4, 14, 0)
    assert silent_until([lunch], "push", at, PARIS) is None
    assert silent_until([lunch, NIGHT], "push", at, PARIS) is None


def test_chained_silent_windows() -> None:
    windows = [window("07:00", "09:00"), NIGHT, window("08:30", "10:00", "push")]
    at = local(PARIS, 2026, 12, 3, 23, 0)
    assert silent_until(windows, "email", at, PARIS) == local(PARIS, 2026, 12, 4, 9, 0)
    assert silent_until(windows, "push", at, PARIS) == local(PARIS, 2026, 12, 4, 10, 0)


def test_windows_covering_the_whole_day_silence_nothing() -> None:
    windows = [window("00:00", "12:00"), window("12:00", "00:00")]
    assert silent_until(windows, "push", local(PARIS, 2026, 12, 4, 3, 0), PARIS) is None
    assert silent_until([], "push", local(PARIS, 2026, 12, 4, 3, 0), PARIS) is None


def test_silent_window_ending_in_a_fold() -> None:
    # 25 October 2026 in Paris: 02:00 to 03:00 CEST, then 02:00 to 03:00 CET again.
    windows = [window("01:00", "02:30")]
    first_pass = utc(2026, 10, 25, 0, 15)  # 02:15 CEST
    assert silent_until(windows, "push", first_pass, PARIS) == utc(2026, 10, 25, 0, 30)
    second_pass = utc(2026, 10, 25, 1, 15)  # 02:15 CET: silent again, to its 02:30
    assert silent_until(windows, "push", second_pass, PARIS) == utc(2026, 10, 25, 1, 30)


def _inside(windows: list[SilentHours], clock: time) -> bool:
    return any(
        (w.start <= clock < w.end) if w.start < w.end else (clock >= w.start or clock < w.end)
        for w in windows
    )


def _whole_day(windows: list[SilentHours]) -> bool:
    return all(_inside(windows, time(minute // 60, minute % 60)) for minute in range(1440))


@st.composite
def silent_windows(draw: st.DrawFn) -> SilentHours:
    # Minutes of the day: a start, and a length short of a whole day.
    start = draw(st.integers(0, 1439))
    end = (start + draw(st.integers(1, 1439))) % 1440
    return SilentHours(
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
        channels=tuple(draw(st.sets(st.sampled_from(list(Channel)), max_size=2))),
    )


@settings(max_examples=300, deadline=None)
@given(
    windows=st.lists(silent_windows(), max_size=4),
    channel=st.sampled_from(list(Channel)),
    at=INSTANTS,
    zone=st.sampled_from(ZONES),
)
def test_silent_until_ends_outside_every_window(
    windows: list[SilentHours], channel: Channel, at: datetime, zone: str
) -> None:
    applying = [w for w in windows if not w.channels or channel in w.channels]
    tz = ZoneInfo(zone)
    end = silent_until(windows, channel, at, tz)
    if end is None:
        assert not _inside(applying, at.astimezone(tz).time()) or _whole_day(applying)
    else:
        assert end > at
        assert end.tzinfo is UTC
        assert not _inside(applying, end.astimezone(tz).time())


# --- the latest due run -------------------------------------------------------------

FRIDAYS = Schedule(
    kind="recurring", unit="weeks", weekdays=[Weekday.FRI], at="17:00", timezone="Europe/Paris"
)


def test_a_launch_at_the_epoch_starts_only_the_latest_run() -> None:
    # Launched while the simulated clock said 1970: the first tick in 2026 starts one
    # run, the latest due, and the next tick nothing stale.
    epoch = utc(1970, 1, 1)
    now = utc(2026, 12, 11, 16, 0)
    run = latest_due_run(FRIDAYS, epoch, None, now)
    assert run is not None
    assert run.id == "20261211T1700"
    assert latest_due_run(FRIDAYS, epoch, run, now + timedelta(hours=6)) is None
    following = latest_due_run(FRIDAYS, epoch, run, utc(2026, 12, 18, 16, 0))
    assert following is not None
    assert following.id == "20261218T1700"


def test_after_downtime_only_the_latest_missed_run_starts() -> None:
    launched = utc(2026, 1, 1)
    first = latest_due_run(FRIDAYS, launched, None, utc(2026, 1, 2, 16, 0))
    assert first is not None
    assert first.id == "20260102T1700"
    later = latest_due_run(FRIDAYS, launched, first, utc(2026, 3, 1))
    assert later is not None
    assert later.id == "20260227T1700"


def test_nothing_starts_before_the_launch() -> None:
    launched = utc(2026, 12, 11, 18, 0)
    assert due_runs(FRIDAYS, launched, None, launched - timedelta(hours=1)) == []
    assert latest_due_run(FRIDAYS, launched, None, launched - timedelta(days=30)) is None
    now_schedule = Schedule(kind="now")
    assert latest_due_run(now_schedule, launched, None, launched - timedelta(seconds=1)) is None
    assert latest_due_run(now_schedule, launched, None, launched) == Run(
        "now", None, launched, launched
    )


def test_a_schedule_with_an_end_still_has_its_last_run() -> None:
    schedule = Schedule(kind="recurring", at="09:00", until=date(2026, 3, 1))
    last = latest_due_run(schedule, utc(2026, 1, 1), None, utc(2027, 1, 1))
    assert last is not None
    assert last.id == "20260301T0900"


_WEEKDAYS = list(Weekday)


@settings(max_examples=300, deadline=None)
@given(
    unit=st.sampled_from(["days", "weeks"]),
    every=st.integers(1, 5),
    weekdays=st.lists(st.sampled_from(_WEEKDAYS), min_size=1, max_size=7, unique=True),
    at=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "user"]),
    launched=st.datetimes(naive(2025, 1, 1), naive(2026, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=120)),
    until=st.none() | st.dates(date(2025, 1, 1), date(2027, 6, 1)),
)
def test_the_latest_due_run_is_the_last_of_all_due_runs(
    unit: Literal["days", "weeks"],
    every: int,
    weekdays: list[Weekday],
    at: time,
    zone: str,
    launched: datetime,
    later: timedelta,
    until: date | None,
) -> None:
    schedule = Schedule(
        kind="recurring",
        unit=unit,
        every=every,
        weekdays=weekdays if unit == "weeks" else [],
        at=at,
        timezone=zone,
        until=until,
    )
    now = launched + later
    every_run = due_runs(schedule, launched, None, now, limit=10_000)
    expected = every_run[-1] if every_run else None
    assert latest_due_run(schedule, launched, None, now) == expected
    if len(every_run) > 2:
        assert latest_due_run(schedule, launched, every_run[1], now) == expected
        assert latest_due_run(schedule, launched, every_run[-1], now) is None
