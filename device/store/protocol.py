"""The one store interface: what the box, its add-ons and the reports ask of a history.

``History`` (the SQLite file; raises ``HistoryError``) and ``SafeHistory`` (the device's
never-raising wrapper, which adds sessions still waiting in memory) both are a
``SessionStore``. Each gives the record-level reads (``recent``, ``sessions``,
``complete_starts``); the questions built on them (streak, today's minutes, a leg's
progress...) are written once, in ``StoreQueries``, which both inherit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Protocol, runtime_checkable

from device.core import streaks
from device.core.records import HoldRecord, LegSession, SessionRecord


@runtime_checkable
class SessionStore(Protocol):
    """A history of sessions: write one, read them back, ask the habit questions."""

    def record(self, session: SessionRecord) -> bool:
        """Keep ``session``; True if it reached the store."""
        ...

    def recent(self, limit: int = 10) -> list[SessionRecord]:
        """The latest ``limit`` sessions, newest first."""
        ...

    def sessions(self, since: datetime | None = None,
                 until: datetime | None = None) -> list[SessionRecord]:
        """Sessions started in [since, until), oldest first (all when both are None)."""
        ...

    def complete_starts(self, since: datetime | None = None) -> list[datetime]:
        """Start times of complete sessions (from ``since``), oldest first."""
        ...

    def leg_progress(self, leg: str, limit: int = 30) -> list[LegSession]:
        """The last ``limit`` sessions seen from ``leg``, newest first (for progression)."""
        ...

    def first_fitted(self, leg: str, limit: int) -> list[HoldRecord]:
        """The oldest ``limit`` holds of ``leg`` with a relaxation fit (its first weeks)."""
        ...

    def streak_days(self, now: datetime, tz: tzinfo | None = None) -> int:
        """Days in a row with a complete session, up to ``now``."""
        ...

    def done_today(self, now: datetime, tz: tzinfo | None = None) -> bool:
        """True when ``now``'s day has a complete session."""
        ...

    def sessions_this_week(self, now: datetime, tz: tzinfo | None = None) -> int:
        """Complete sessions since Monday."""
        ...

    def sessions_per_week(self, now: datetime, weeks: int = 8,
                          tz: tzinfo | None = None) -> list[tuple[date, int]]:
        """Complete sessions in each of the last ``weeks`` weeks (Monday, count)."""
        ...

    def minutes_today(self, now: datetime, tz: tzinfo | None = None) -> float:
        """Minutes held on ``now``'s day."""
        ...

    def close(self) -> None:
        """Let go of the store."""
        ...


class StoreQueries:
    """The habit questions, once, on a store's ``recent``, ``sessions`` and
    ``complete_starts`` (each store reads as little as the question needs)."""

    def recent(self, limit: int = 10) -> list[SessionRecord]:
        raise NotImplementedError

    def sessions(self, since: datetime | None = None,
                 until: datetime | None = None) -> list[SessionRecord]:
        raise NotImplementedError

    def complete_starts(self, since: datetime | None = None) -> list[datetime]:
        raise NotImplementedError

    def leg_progress(self, leg: str, limit: int = 30) -> list[LegSession]:
        """The last ``limit`` sessions seen from ``leg``, newest first (for progression)."""
        return [LegSession.of(s, leg) for s in self.recent(limit)]

    # tz defaults to now's zone

    def streak_days(self, now: datetime, tz: tzinfo | None = None) -> int:
        """See ``streaks.streak_days``; reads back only as far as the streak goes."""
        return streaks.streak_days_bounded(self.complete_starts, now, tz)

    def done_today(self, now: datetime, tz: tzinfo | None = None) -> bool:
        """See ``streaks.done_today``."""
        return streaks.done_today(self.complete_starts(now - timedelta(days=2)), now, tz)

    def sessions_this_week(self, now: datetime, tz: tzinfo | None = None) -> int:
        """See ``streaks.sessions_this_week``."""
        return streaks.sessions_this_week(self.complete_starts(now - timedelta(days=9)), now, tz)

    def sessions_per_week(self, now: datetime, weeks: int = 8,
                          tz: tzinfo | None = None) -> list[tuple[date, int]]:
        """See ``streaks.sessions_per_week``."""
        starts = self.complete_starts(now - timedelta(weeks=weeks, days=2))
        return streaks.sessions_per_week(starts, now, weeks, tz)

    def minutes_today(self, now: datetime, tz: tzinfo | None = None) -> float:
        """See ``streaks.minutes_today``."""
        return streaks.minutes_today(self.sessions(since=now - timedelta(days=2)), now, tz)
