"""Days, weeks and streaks: which calendar days had a session, in a time zone (pure).

Over the start times of complete sessions (and, for minutes, the sessions themselves):
the streak of days, whether today is done, sessions per ISO week (Monday start), minutes
held today. ``now`` is always passed in (never read here) and must be aware; days are
those of ``tz`` (default: ``now``'s own zone). ``local_zone`` finds the machine's zone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device.core.records import SessionRecord, is_naive


def zone_of(name: str) -> tzinfo:
    """The time zone ``name`` (``history.timezone``; empty: the machine's own)."""
    return ZoneInfo(name) if name else local_zone()


def local_zone(env: Mapping[str, str] | None = None) -> tzinfo:
    """The machine's zone with its DST rules: ``$TZ``, else /etc/localtime, else a fixed offset."""
    env = os.environ if env is None else env
    name = env.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: TZ=America, a folder
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or UTC


def _zone(now: datetime, tz: tzinfo | None) -> tzinfo:
    if is_naive(now):
        raise ValueError("now must be an aware datetime")
    return tz if tz is not None else now.tzinfo  # type: ignore[return-value]


def local_day(dt: datetime, tz: tzinfo) -> date:
    """The calendar day of ``dt`` in zone ``tz``."""
    return dt.astimezone(tz).date()


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def streak_days(complete_starts: Iterable[datetime], now: datetime,
                tz: tzinfo | None = None) -> int:
    """Consecutive days (in ``tz``) with a complete session, ending today or yesterday.

    Today counts when done; if today is not done yet, a streak ending yesterday is alive.
    """
    zone = _zone(now, tz)
    today = local_day(now, zone)
    days = {local_day(s, zone) for s in complete_starts if s <= now}
    day = today if today in days else today - timedelta(days=1)
    n = 0
    while day in days:
        n += 1
        day -= timedelta(days=1)
    return n


def streak_days_bounded(starts_since: Callable[[datetime], Iterable[datetime]], now: datetime,
                        tz: tzinfo | None = None, first_days: int = 40) -> int:
    """``streak_days`` reading only as far back as the streak goes: the complete starts of
    the last ``first_days`` days, then four times as many while the streak reaches the
    window's edge. The cost follows the streak's length, never the history's size."""
    days = first_days
    while True:
        n = streak_days(starts_since(now - timedelta(days=days)), now, tz)
        if n < days - 2:  # the day before the streak lies wholly inside the window
            return n
        days *= 4


def done_today(complete_starts: Iterable[datetime], now: datetime,
               tz: tzinfo | None = None) -> bool:
    """True when a complete session started today (in ``tz``), at or before ``now``."""
    zone = _zone(now, tz)
    today = local_day(now, zone)
    return any(local_day(s, zone) == today for s in complete_starts if s <= now)


def sessions_per_week(complete_starts: Iterable[datetime], now: datetime, weeks: int = 8,
                      tz: tzinfo | None = None) -> list[tuple[date, int]]:
    """(Monday, complete sessions) for the last ``weeks`` ISO weeks in ``tz``, oldest first."""
    if weeks < 1:
        raise ValueError("weeks must be >= 1")
    zone = _zone(now, tz)
    this_monday = week_start(local_day(now, zone))
    mondays = [this_monday - timedelta(weeks=k) for k in range(weeks - 1, -1, -1)]
    counts = dict.fromkeys(mondays, 0)
    for s in complete_starts:
        if s <= now:
            monday = week_start(local_day(s, zone))
            if monday in counts:
                counts[monday] += 1
    return list(counts.items())


def sessions_this_week(complete_starts: Iterable[datetime], now: datetime,
                       tz: tzinfo | None = None) -> int:
    """Complete sessions in ``now``'s ISO week (Monday start) in ``tz``, up to ``now``."""
    return sessions_per_week(complete_starts, now, 1, tz)[0][1]


def minutes_today(sessions: Iterable[SessionRecord], now: datetime,
                  tz: tzinfo | None = None) -> float:
    """Minutes held today in ``tz``: every hold of every session started today, any outcome
    (a session whose date cannot be trusted is in no day)."""
    zone = _zone(now, tz)
    today = local_day(now, zone)
    return sum(h.held_s for s in sessions
               if s.trusted and s.started <= now and local_day(s.started, zone) == today
               for h in s.holds) / 60.0
