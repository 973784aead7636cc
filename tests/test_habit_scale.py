"""The habit never reads the whole history (issue 23): start-up, each session's end (in
the loop) and the MQTT stats message read back only as far as the streak goes, so they
cost the same at 100,000 sessions as at ten."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device.addons.habit import KEEP_STARTS, Tally
from device.addons.habit import attach as attach_history
from device.addons.mqtt import stats_payload
from device.apps.sim import make_sim
from device.box.clock import VirtualClock, wall_clock
from device.core import streaks
from device.core.config import Config, with_overrides
from device.core.records import HoldRecord, SessionRecord
from device.store.safe import SafeHistory
from device.store.sqlite import History
from tests.conftest import Events

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 2, 7, 0, tzinfo=BERLIN)
SESSION = "press@1,press@2,press@2.3,press@90,press@91,press@91.3"
YEARS = 3
STREAK = 12


def session(start: datetime, outcome: str = "complete") -> SessionRecord:
    holds = (HoldRecord("right", 1, 60.0, 60.0, "complete"),
             HoldRecord("left", 1, 60.0, 60.0, "complete"))
    return SessionRecord(start, start + timedelta(minutes=5), outcome, "hamstring", holds)


def fill(db: Path) -> list[SessionRecord]:
    """Two sessions a day for ``YEARS`` years, a gap, then a ``STREAK``-day streak ending
    yesterday."""
    out = []
    for k in range(1, YEARS * 365):
        if k == STREAK + 1:
            continue
        day = (NOW - timedelta(days=k)).replace(hour=7)
        out += [session(day), session(day.replace(hour=18))]
    with History(db) as h:
        c = h._conn
        c.execute("BEGIN")
        for k, s in enumerate(out):
            c.execute("INSERT INTO sessions (uid, started_us, started, ended_us, ended,"
                      " outcome, routine) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (f"fill-{k}", int(s.started.timestamp() * 1e6), s.started.isoformat(),
                       int(s.ended.timestamp() * 1e6), s.ended.isoformat(), s.outcome,
                       s.routine))
        c.execute("COMMIT")
    return out


class Reads:
    """Counts the rows each History query hands back; fails on an unbounded one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        self.oldest: datetime | None = None
        real_starts, real_sessions = History.complete_starts, History.sessions
        reads = self

        def complete_starts(self: History, since: datetime | None = None) -> list[datetime]:
            if since is None:
                pytest.fail("read every complete session")
            reads.oldest = since if reads.oldest is None else min(reads.oldest, since)
            out = real_starts(self, since)
            reads.rows += len(out)
            return out

        def sessions(self: History, since: datetime | None = None,
                     until: datetime | None = None) -> list[SessionRecord]:
            if since is None:
                pytest.fail("read every session")
            out = real_sessions(self, since, until)
            reads.rows += len(out)
            return out

        monkeypatch.setattr(History, "complete_starts", complete_starts)
        monkeypatch.setattr(History, "sessions", sessions)
        monkeypatch.setattr(History, "iter_sessions",
                            lambda *a, **k: pytest.fail("walked the whole history"))


def test_start_up_session_end_and_stats_read_back_only_as_far_as_the_streak(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "h.db"
    stored = fill(db)
    reads = Reads(monkeypatch)
    config = with_overrides(Config(), history={"timezone": "Europe/Berlin"})
    events = Events()
    clock = VirtualClock()
    box = make_sim(config, clock=clock, listeners=[events])
    habit = attach_history(box.port, db, wall_clock(clock, NOW.replace(hour=8)))
    for item in SESSION.split(","):
        box.loop.schedule(float(item.split("@")[1]), box.press_now)
    box.loop.run(stop_when_done=True, until=3000)
    box.close()
    habit.close()
    summary = [e["text"] for e in events.kind("speak") if e["key"] == "summary"]
    assert len(summary) == 1
    # yesterday's streak of STREAK days plus today; this week: from Monday 30 November
    week = sum(1 for s in stored if s.started >= datetime(2026, 11, 30, tzinfo=BERLIN)) + 1
    assert f"{STREAK + 1} day streak" in summary[0]
    assert f"{week} sessions this week" in summary[0]
    assert reads.oldest is not None and NOW - reads.oldest <= timedelta(days=40)
    assert reads.rows < 4 * 40  # of more than 2,000
    assert habit.tally.rows_read < 2 * 40

    reads.rows, reads.oldest = 0, None
    with History(db) as h:
        stats = stats_payload(h, config, NOW.replace(hour=9), BERLIN)
    assert stats["streak_days"] == STREAK + 1
    assert stats["sessions_this_week"] == week
    assert reads.oldest is not None and NOW - reads.oldest <= timedelta(days=40)
    assert reads.rows < 4 * 40


def test_the_tally_stays_small_and_right_as_sessions_go_on(tmp_path: Path) -> None:
    """A box left running for a year: the tally forgets what neither the week nor the
    streak needs, and its streak and week stay those of the whole history."""
    db = tmp_path / "h.db"
    tally = Tally(BERLIN)
    history = SafeHistory(db)
    tally.load(history, NOW)
    everything: list[datetime] = []
    day = NOW
    for k in range(400):
        day = day + timedelta(days=1 if k % 50 else 2)  # a gap now and then
        s = session(day.replace(hour=7))
        tally.add(s)
        everything.append(s.started)
        assert len(tally.starts()) <= KEEP_STARTS + 1
        assert streaks.streak_days(tally.starts(), s.ended, BERLIN) == \
            streaks.streak_days(everything, s.ended, BERLIN)
        assert streaks.sessions_this_week(tally.starts(), s.ended, BERLIN) == \
            streaks.sessions_this_week(everything, s.ended, BERLIN)
    history.close()
