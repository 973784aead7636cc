"""History that does not grow with the years: bounded streak reads, streamed exports, a
chart aggregated in SQL, and the covering index (a migration)."""

from __future__ import annotations

import argparse
import io
import json
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device.apps.history_report import history_main, to_json, write_json
from device.core import streaks
from device.core.records import HoldRecord, SessionRecord
from device.store.sqlite import COMPLETE_STARTS, MIGRATIONS, History

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 2, 20, 0, tzinfo=BERLIN)


def session(start: datetime, outcome: str = "complete", held: float = 60.0,
            steadiness: float | None = None) -> SessionRecord:
    holds = (HoldRecord("right", 1, 60.0, held, "complete" if held >= 60 else "early",
                        steadiness=steadiness),
             HoldRecord("left", 1, 60.0, 60.0, "complete"))
    return SessionRecord(start, start + timedelta(minutes=5), outcome, "hamstring", holds)


def years_of_history(db: Path, days: int, streak: int) -> list[SessionRecord]:
    """A session most days for ``days`` days, a gap, then a ``streak``-day streak to today."""
    rng = random.Random(5)
    out = []
    for k in range(days, 0, -1):
        if k == streak + 1 or (k > streak and rng.random() < 0.2):
            continue
        start = (NOW - timedelta(days=k - 1)).replace(hour=7)
        out.append(session(start, "complete" if rng.random() < 0.9 or k <= streak
                           else "cancelled"))
    with History(db) as h:
        for s in out:
            h.record(s)
    return out


def test_streak_reads_back_only_as_far_as_the_streak(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    stored = years_of_history(db, days=5 * 365, streak=3)
    asked: list[datetime] = []
    with History(db) as h:
        real = h.complete_starts

        def spy(since=None):
            asked.append(since)
            return real(since)

        h.complete_starts = spy  # type: ignore[method-assign]
        n = h.streak_days(NOW, BERLIN)
    everything = [s.started for s in stored if s.outcome == "complete"]
    assert n == streaks.streak_days(everything, NOW, BERLIN) == 3
    assert asked and all(a is not None and NOW - a <= timedelta(days=40) for a in asked)


@pytest.mark.parametrize("streak", [0, 1, 37, 38, 39, 40, 159, 400])
def test_bounded_streak_equals_the_full_scan(streak: int) -> None:
    starts = [(NOW - timedelta(days=k)).replace(hour=9) for k in range(streak)]
    starts += [(NOW - timedelta(days=streak + 2 + k)).replace(hour=9) for k in range(30)]
    windows = []

    def since(at: datetime) -> list[datetime]:
        windows.append(at)
        return [s for s in starts if s >= at]

    assert streaks.streak_days_bounded(since, NOW, BERLIN) == streak
    assert streaks.streak_days(starts, NOW, BERLIN) == streak
    assert NOW - min(windows) <= timedelta(days=4 * max(40, streak + 3))  # never the lot


def unbounded_fails(real):
    """``History.sessions`` that fails when asked for every session (no ``since``)."""
    def sessions(self, since=None, until=None):
        if since is None:
            pytest.fail("loaded every session at once")
        return real(self, since, until)
    return sessions


def test_json_and_csv_stream_in_batches_without_loading_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "h.db"
    stored = years_of_history(db, days=60, streak=5)
    with History(db) as h:
        assert list(h.iter_sessions(batch=7)) == h.sessions() == sorted(
            stored, key=lambda s: s.started)
    # the export never asks for the whole list at once
    monkeypatch.setattr(History, "sessions", unbounded_fails(History.sessions))
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(history=db, service=False, json=True, csv=None, plot=None,
                              limit=10, weeks=8)
    assert history_main(args, now=NOW, tz=BERLIN, out=out, err=err) == 0
    assert len(json.loads(out.getvalue())) == len(stored)
    out = io.StringIO()
    args.json, args.csv = False, "-"
    assert history_main(args, now=NOW, tz=BERLIN, out=out, err=err) == 0
    assert len(out.getvalue().splitlines()) == 1 + 2 * len(stored)


def test_streamed_json_is_the_same_text_as_one_dump() -> None:
    from device.core.records import session_to_dict

    sessions = [session(NOW - timedelta(days=2)), session(NOW - timedelta(days=1), held=41.5,
                                                         steadiness=80.0)]
    for some in ([], sessions[:1], sessions):
        assert to_json(some) == json.dumps([session_to_dict(s) for s in some], indent=2)
        buf = io.StringIO()
        assert write_json(iter(some), buf) == len(some)


def test_plot_points_are_aggregated_in_sql(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    day = NOW.replace(hour=7)
    with History(db) as h:
        h.record(session(day, held=40.0, steadiness=60.0))
        h.record(session(day + timedelta(hours=2), held=60.0, steadiness=80.0))
        h.record(session(day - timedelta(days=1), held=50.0))
        points = h.plot_buckets()
        assert len(points) == 2  # one per day
        right = [x for x in points[1].holds if x.leg == "right"][0]
        assert right.held_s == pytest.approx(50.0) and right.ended == "early"
        assert right.steadiness == pytest.approx(70.0) and right.planned_s == 60.0
        assert points[1].started.date() == day.date()
    stored = years_of_history(tmp_path / "big.db", days=3000, streak=2)
    with History(tmp_path / "big.db") as h:
        points = h.plot_buckets(most=100)
        assert len(points) <= 101  # wider buckets: a bounded number of points
        assert points[0].started <= stored[0].started + timedelta(days=1)


def test_plot_command_reads_buckets_not_every_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "h.db"
    years_of_history(db, days=30, streak=3)
    monkeypatch.setattr(History, "sessions", unbounded_fails(History.sessions))
    monkeypatch.setattr(History, "iter_sessions", lambda *a, **k: pytest.fail("read every row"))
    args = argparse.Namespace(history=db, service=False, json=False, csv=None,
                              plot=str(tmp_path / "p.png"), limit=10, weeks=8)
    assert history_main(args, now=NOW, tz=BERLIN, out=io.StringIO(), err=io.StringIO()) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_migration_adds_the_covering_index_and_the_streak_query_uses_it(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    for statement in MIGRATIONS[0]:
        c.execute(statement)
    c.execute("PRAGMA user_version=1")
    c.execute("INSERT INTO sessions (started_us, started, ended_us, ended, outcome, routine)"
              " VALUES (1, '2026-01-01T07:00:00+01:00', 2, '2026-01-01T07:05:00+01:00',"
              " 'complete', 'hamstring')")
    c.commit()
    c.close()
    with History(db) as h:
        plan = h._conn.execute("EXPLAIN QUERY PLAN " + COMPLETE_STARTS, (0,)).fetchall()
        assert "COVERING INDEX" in plan[0][-1]
        assert h.count() == 1 and len(h.complete_starts()) == 1
