"""Days, weeks and streaks as pure functions over start times (no store involved)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from device.core.records import HoldRecord, SessionRecord
from device.core.streaks import (
    done_today,
    local_day,
    local_zone,
    minutes_today,
    sessions_per_week,
    sessions_this_week,
    streak_days,
    week_start,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(d: int, h: int = 7, mi: int = 0, month: int = 5) -> datetime:
    return datetime(2024, month, d, h, mi, tzinfo=BERLIN)


def test_local_day_and_week_start() -> None:
    late = datetime(2024, 5, 5, 22, 30, tzinfo=UTC)  # Sunday in UTC, Monday in Berlin
    assert local_day(late, UTC) == date(2024, 5, 5)
    assert local_day(late, BERLIN) == date(2024, 5, 6)
    assert week_start(date(2024, 5, 5)) == date(2024, 4, 29)
    assert week_start(date(2024, 5, 6)) == date(2024, 5, 6)


def test_streak_counts_back_from_today_or_yesterday() -> None:
    starts = [at(7), at(8), at(9, 23, 30)]
    assert streak_days(starts, at(10, 10)) == 3  # today not done yet: still alive
    assert streak_days([*starts, at(10, 8)], at(10, 10)) == 4
    assert streak_days(starts, at(11, 10)) == 0  # a whole day missed
    assert streak_days([at(10, 8)], at(10, 7, 59)) == 0  # a later start does not count yet
    assert streak_days([], at(10)) == 0
    assert streak_days(starts, datetime(2024, 5, 9, 21, 29, tzinfo=UTC), UTC) == 2  # 7, 8
    assert streak_days(starts, datetime(2024, 5, 9, 21, 30, tzinfo=UTC), UTC) == 3


def test_done_today_and_minutes_today() -> None:
    now = at(6, 12)
    assert done_today([at(6, 8)], now) is True
    assert done_today([at(5, 23, 59)], now) is False
    assert done_today([at(6, 8)], now, UTC) is True
    holds = (HoldRecord("right", 1, 60, 60, "complete"),
             HoldRecord("left", 1, 60, 30, "early"))
    today = SessionRecord(at(6, 8), at(6, 8, 5), "cancelled", "hamstring", holds)
    yesterday = SessionRecord(at(5, 8), at(5, 8, 5), "complete", "hamstring", holds)
    assert minutes_today([today, yesterday], now) == pytest.approx(1.5)  # any outcome
    with pytest.raises(ValueError, match="aware"):
        done_today([], datetime(2024, 5, 6, 12))


def test_weeks_run_monday_to_sunday_and_fill_with_zeros() -> None:
    starts = [at(29, month=4), at(30, month=4), at(15)]
    now = at(15, 20)
    assert sessions_per_week(starts, now, 3) == [
        (date(2024, 4, 29), 2), (date(2024, 5, 6), 0), (date(2024, 5, 13), 1)]
    assert sessions_this_week(starts, now) == 1
    assert sessions_this_week([*starts, now + timedelta(hours=1)], now) == 1  # not yet
    with pytest.raises(ValueError, match="weeks"):
        sessions_per_week(starts, now, 0)


def test_local_zone_from_tz() -> None:
    assert local_zone({"TZ": ":Europe/Berlin"}) == BERLIN
    assert local_zone({"TZ": "Not/AZone"}) is not None  # falls back, never raises
