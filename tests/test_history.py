"""History store, queries, progression, summary, reports and fault handling."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device.apps.cli import main
from device.apps.history_report import PLOT_HINT, history_main, plot, to_csv, to_json
from device.core.export import CSV_COLUMNS
from device.core.progression import next_hold_seconds
from device.core.records import RELAX_FIELDS, HoldRecord, LegSession, SessionRecord
from device.core.routine import load_routine
from device.core.summary import growth_line, summary_line
from device.store.paths import default_history_path
from device.store.safe import SafeHistory
from device.store.sqlite import SCHEMA_VERSION, History, HistoryError

BERLIN = ZoneInfo("Europe/Berlin")
ROUTINE = load_routine()
REPO = Path(__file__).resolve().parents[1]


def hold(leg: str = "right", planned: float = 60, held: float | None = None,
         ended: str = "complete", rnd: int = 1, steadiness: float | None = None) -> HoldRecord:
    return HoldRecord(leg, rnd, planned, planned if held is None else held, ended,
                      None if steadiness is None else 3.2,
                      None if steadiness is None else 4.1, steadiness)


def session(start: datetime, outcome: str = "complete", holds: tuple[HoldRecord, ...] | None = None,
            minutes: float = 5) -> SessionRecord:
    if holds is None:
        holds = (hold("right"), hold("left"))
    return SessionRecord(start, start + timedelta(minutes=minutes), outcome, "hamstring", holds)


def at(y: int, mo: int, d: int, h: int = 7, mi: int = 0, tz=BERLIN) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.db"


# --------------------------------------------------------------------------- store


def test_write_and_read_back(db: Path) -> None:
    a = session(at(2024, 5, 6), holds=(hold("right", steadiness=85.5), hold("left", held=41.5,
                                                                             ended="early")))
    b = session(datetime(2024, 5, 7, 6, 0, tzinfo=UTC), "cancelled", holds=())
    with History(db) as h:
        assert h.record(a) and h.record(b)
        assert h.record(a) is False  # same start instant: stored once
        assert h.count() == 2
    with History(db) as h:
        assert h.recent() == [b, a]
        assert h.sessions() == [a, b]
        assert h.sessions(since=at(2024, 5, 7, 0)) == [b]
        got = h.recent(1)[0]
        assert got.started.utcoffset() == timedelta(0) and h.recent()[1].started.utcoffset() == \
            timedelta(hours=2)  # the offset it was recorded in is kept
        assert h.recent()[1].holds[0].steadiness == 85.5 and h.recent()[1].holds[0].mean == 3.2
        assert h.schema_version == SCHEMA_VERSION
        assert h._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync per commit
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert check.execute("SELECT count(*) FROM holds").fetchone()[0] == 2


def test_records_validate() -> None:
    with pytest.raises(ValueError, match="aware"):
        SessionRecord(datetime(2024, 5, 6), datetime(2024, 5, 6), "complete", "hamstring", ())
    with pytest.raises(ValueError, match="outcome"):
        session(at(2024, 5, 6), "done")
    with pytest.raises(ValueError, match="leg"):
        hold("middle")
    with pytest.raises(ValueError, match="steadiness"):
        hold(steadiness=101)


def test_newer_schema_is_a_clear_error(db: Path) -> None:
    History(db).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 6}")
    c.close()
    expected = (f"history file {db} has schema version {SCHEMA_VERSION + 6}, this program "
                f"knows up to {SCHEMA_VERSION}; upgrade stretch-companion")
    with pytest.raises(HistoryError) as e:
        History(db)
    assert str(e.value) == expected
    with pytest.raises(HistoryError, match="upgrade stretch-companion"):
        History(db, read_only=True)


def test_empty_file_is_migrated_and_reopened(db: Path) -> None:
    db.parent.mkdir(parents=True)
    sqlite3.connect(db).close()  # version 0, no tables
    with History(db) as a, History(db) as b:
        assert a.schema_version == b.schema_version == SCHEMA_VERSION
        a.record(session(at(2024, 5, 6)))
        assert b.count() == 1


def test_default_history_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_history_path(False, {}, home) == \
        home / ".local/state/stretch-companion/history.db"
    assert default_history_path(False, {"XDG_STATE_HOME": "/x/state"}, home) == \
        Path("/x/state/stretch-companion/history.db")
    assert default_history_path(False, {"XDG_STATE_HOME": "rel"}, home) == \
        home / ".local/state/stretch-companion/history.db"  # relative: ignored (XDG spec)
    assert default_history_path(True, {"XDG_STATE_HOME": "/x"}, home) == \
        Path("/var/lib/stretch-companion/history.db")
    assert default_history_path(True, {"STATE_DIRECTORY": "/run/sd:/other"}, home) == \
        Path("/run/sd/history.db")
    assert default_history_path(False, {"STATE_DIRECTORY": "/run/sd"}, home) == \
        Path("/run/sd/history.db")


# --------------------------------------------------------------------------- days and weeks


def test_late_utc_session_is_next_day_in_berlin(db: Path) -> None:
    late = datetime(2024, 5, 5, 23, 30, tzinfo=UTC)  # Sunday in UTC, Monday 01:30 in Berlin
    with History(db) as h:
        h.record(session(late, holds=(hold("right", held=60), hold("left", held=30,
                                                                   ended="early"))))
        now = at(2024, 5, 6, 12)  # Monday noon in Berlin
        assert h.done_today(now, BERLIN) is True
        assert h.done_today(now, UTC) is False
        assert h.minutes_today(now, BERLIN) == pytest.approx(1.5)
        assert h.minutes_today(now, UTC) == 0
        assert h.sessions_this_week(now, BERLIN) == 1
        assert h.sessions_this_week(now, UTC) == 0  # ISO week of Monday 6 May starts then
        assert h.sessions_per_week(now, 2, UTC) == [(date(2024, 4, 29), 1), (date(2024, 5, 6), 0)]
        assert h.sessions_per_week(now, 2, BERLIN) == [(date(2024, 4, 29), 0),
                                                       (date(2024, 5, 6), 1)]


def test_streak_across_days_and_zones(db: Path) -> None:
    with History(db) as h:
        h.record(session(at(2024, 5, 6), "cancelled"))  # does not count
        h.record(session(at(2024, 5, 7)))
        h.record(session(at(2024, 5, 8)))
        h.record(session(at(2024, 5, 9, 23, 30)))  # Berlin 9 May, UTC 9 May 21:30
        now = at(2024, 5, 10, 10)
        assert h.streak_days(now, BERLIN) == 3  # alive: yesterday done, today not yet
        assert h.done_today(now, BERLIN) is False
        h.record(session(at(2024, 5, 10, 8)))
        assert h.streak_days(now, BERLIN) == 4 and h.done_today(now, BERLIN)
        assert h.streak_days(at(2024, 5, 11, 20), BERLIN) == 4
        assert h.streak_days(at(2024, 5, 12, 0, 5), BERLIN) == 0
        assert h.streak_days(at(2024, 5, 10, 7, 59), BERLIN) == 3  # the 8:00 one not yet
    db2 = db.with_name("zones.db")
    with History(db2) as h:
        h.record(session(at(2024, 5, 7)))
        h.record(session(at(2024, 5, 8)))
        h.record(session(datetime(2024, 5, 9, 22, 30, tzinfo=UTC)))  # Berlin: 10 May 00:30
        now = datetime(2024, 5, 10, 8, 0, tzinfo=UTC)
        assert h.streak_days(now, BERLIN) == 1  # 9 May missing in Berlin
        assert h.streak_days(now, UTC) == 3  # 7, 8, 9 May in UTC, today not yet


def test_streak_across_dst_change(db: Path) -> None:
    with History(db) as h:
        for d in ((3, 30), (3, 31), (4, 1)):  # clocks go forward on 31 March
            h.record(session(at(2024, *d, 0, 30)))
        assert h.streak_days(at(2024, 4, 1, 12), BERLIN) == 3
        assert h.sessions_this_week(at(2024, 4, 1, 12), BERLIN) == 1


def test_sessions_per_week_fills_zero_weeks(db: Path) -> None:
    with History(db) as h:
        for d in (29, 30):
            h.record(session(at(2024, 4, d)))
        h.record(session(at(2024, 5, 14), "interrupted"))
        h.record(session(at(2024, 5, 15)))
        now = at(2024, 5, 15, 20)
        assert h.sessions_per_week(now, 3, BERLIN) == [
            (date(2024, 4, 29), 2), (date(2024, 5, 6), 0), (date(2024, 5, 13), 1)]
        assert h.sessions_this_week(now, BERLIN) == 1


# --------------------------------------------------------------------------- progression


def legs(*items: tuple) -> list[LegSession]:
    """LegSessions newest first from (outcome, planned, ended[, steadiness])."""
    out = []
    start = at(2024, 6, 30)
    for i, it in enumerate(items):
        outcome, planned, ended, *rest = it + ("complete",) * (3 - len(it))
        hs = () if planned is None else (hold("right", planned, ended=ended,
                                              held=planned if ended == "complete" else 10,
                                              steadiness=rest[0] if rest else None),)
        out.append(LegSession(start - timedelta(days=i), outcome, hs))
    return out


def test_progression_grows_after_n_complete_sessions() -> None:
    two = legs(("complete", 60), ("complete", 60))
    assert next_hold_seconds(two, 60).hold_s == 60
    p = next_hold_seconds(legs(("complete", 60), ("complete", 60), ("complete", 60)), 60)
    assert (p.hold_s, p.grew, p.streak, p.previous_s) == (75, True, 3, 60)
    after = legs(("complete", 75), ("complete", 60), ("complete", 60), ("complete", 60))
    p = next_hold_seconds(after, 60)
    assert (p.hold_s, p.grew, p.streak) == (75, False, 1)  # count starts again at 75
    assert next_hold_seconds([], 60) == next_hold_seconds([], 60, step_s=15)
    assert next_hold_seconds([], 90).hold_s == 90
    assert growth_line(ROUTINE, "right", 75) == "Your right-leg hold grows to 75 seconds."


def test_progression_held_back_by_early_end_and_cancel() -> None:
    early = legs(("complete", 60), ("complete", 60), ("complete", 60, "early"), ("complete", 60))
    assert next_hold_seconds(early, 60).hold_s == 60
    assert next_hold_seconds(early, 60).streak == 2
    newest_early = legs(("complete", 60, "early"), ("complete", 60), ("complete", 60),
                        ("complete", 60))
    assert next_hold_seconds(newest_early, 60).hold_s == 60
    cancelled = legs(("complete", 60), ("complete", 60), ("cancelled", None), ("complete", 60))
    p = next_hold_seconds(cancelled, 60)
    assert (p.hold_s, p.streak) == (60, 2)
    neutral = legs(("complete", 60), ("interrupted", 60, "early"), ("complete", 60),
                   ("complete", 60))
    assert next_hold_seconds(neutral, 60).hold_s == 75  # a power cut is not the user's fault


def test_progression_capped_and_steadiness() -> None:
    three = [("complete", 300)] * 3
    assert next_hold_seconds(legs(*three), 60).hold_s == 300
    assert next_hold_seconds(legs(*three), 60).grew is False
    p = next_hold_seconds(legs(*[("complete", 290)] * 3), 60)
    assert (p.hold_s, p.grew) == (300, True)
    assert next_hold_seconds(legs(*[("complete", 90)] * 3), 60, max_s=90).hold_s == 90
    with pytest.raises(ValueError):
        next_hold_seconds([], 60, max_s=301)
    shaky = legs(("complete", 60, "complete", 50), ("complete", 60, "complete", 90),
                 ("complete", 60, "complete", 90))
    assert next_hold_seconds(shaky, 60, require_steady=70).hold_s == 60
    assert next_hold_seconds(shaky, 60).hold_s == 75  # no threshold, no check
    no_sensor = legs(*[("complete", 60)] * 3)
    assert next_hold_seconds(no_sensor, 60, require_steady=70).hold_s == 75


def test_progression_per_leg_from_store(db: Path) -> None:
    with History(db) as h:
        for day in (1, 2, 3):
            left = hold("left", ended="early", held=20) if day == 2 else hold("left")
            h.record(session(at(2024, 7, day), holds=(hold("right"), left)))
        right = next_hold_seconds(h.leg_progress("right"), 60)
        left = next_hold_seconds(h.leg_progress("left"), 60)
        assert (right.hold_s, right.grew) == (75, True)
        assert (left.hold_s, left.streak) == (60, 1)
        assert [s.started for s in h.leg_progress("left")] == [at(2024, 7, d) for d in (3, 2, 1)]


# --------------------------------------------------------------------------- summary


def test_summary_line() -> None:
    def said(*args: object) -> str:
        return summary_line(ROUTINE, *args)  # type: ignore[arg-type]

    both = (hold("right"), hold("left"))
    assert said(both, 3, 2) == ("Nice work. Right leg 60 seconds, left leg 60 seconds. "
                                "That's 3 sessions this week, and a 2 day streak.")
    assert said(both, 1, 1) == ("Nice work. Right leg 60 seconds, left leg 60 seconds. "
                                "That's your first session this week.")
    mixed = (hold("right", steadiness=85), hold("left", 90, held=42, ended="early",
                                                 steadiness=40))
    assert said(mixed, 2, 0) == (
        "Good effort. Right leg 60 seconds, steady strap, 85 out of 100. "
        "Left leg 42 seconds, ended early, shaky strap, 40 out of 100. "
        "That's 2 sessions this week.")
    rounds = (hold("right", 150), hold("right", 150, rnd=2), hold("left", 61))
    assert said(rounds, 0, 5) == ("Nice work. Right leg 5 minutes over 2 holds, "
                                  "left leg 61 seconds. That's a 5 day streak.")
    assert said((hold("left", held=1, ended="early"),), 0, 0) == \
        "Good effort. Left leg 1 second, ended early."
    assert said((), 4, 0) == "Session over. That's 4 sessions this week."


# --------------------------------------------------------------------------- reports


def _sample() -> list[SessionRecord]:
    return [session(at(2024, 5, 6), holds=(
                replace(hold("right", steadiness=80), tightness="tight", overpull_s=1.5),
                hold("left"))),
            session(at(2024, 5, 7), "cancelled", holds=())]


def test_json_shape() -> None:
    data = json.loads(to_json(_sample()))
    assert [s["outcome"] for s in data] == ["complete", "cancelled"]
    assert set(data[0]) == {"started", "ended", "outcome", "routine", "clock", "holds"}
    assert data[0]["clock"] == "synced"
    assert data[0]["started"] == "2024-05-06T07:00:00+02:00"
    assert data[0]["holds"][0] == {"leg": "right", "round": 1, "planned_s": 60, "held_s": 60,
                                   "ended": "complete", "mean": 3.2, "peak": 4.1,
                                   "steadiness": 80, "tightness": "tight", "overpull_s": 1.5,
                                   **dict.fromkeys(RELAX_FIELDS),  # no relaxation fit here
                                   "hurt": False, "pre_s": None, "base_s": None}
    assert data[0]["holds"][1]["steadiness"] is None and data[1]["holds"] == []


def test_csv_shape(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    assert to_csv(_sample(), path) == 3
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1] == ["2024-05-06T07:00:00+02:00", "2024-05-06T07:05:00+02:00", "complete",
                       "hamstring", "right", "1", "60.0", "60.0", "complete", "3.2", "4.1", "80.0",
                       "tight", "1.5"] + [""] * len(RELAX_FIELDS)
    assert rows[2][4:] == ["left", "1", "60.0", "60.0", "complete", "", "", "", "", ""] + [
        ""] * len(RELAX_FIELDS)
    assert rows[3][2] == "cancelled" and rows[3][4:] == [""] * (10 + len(RELAX_FIELDS))


def test_plot_writes_png(tmp_path: Path) -> None:
    for name, sessions in (("a.png", _sample()), ("b.png", [_sample()[1]]), ("c.png", [])):
        plot(sessions, tmp_path / name, BERLIN)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(HistoryError, match="stretch-companion\\[plot\\]"):
        plot(_sample(), tmp_path / "x.png", BERLIN)
    assert PLOT_HINT == "pip install 'stretch-companion[plot]'"


def _args(db: Path, **kw) -> argparse.Namespace:
    base = dict(history=db, service=False, json=False, csv=None, plot=None, limit=10, weeks=3)
    return argparse.Namespace(**{**base, **kw})


def test_history_main(db: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert history_main(_args(db), now=at(2024, 5, 7, 12), tz=BERLIN, out=out, err=err) == 0
    assert "No sessions recorded yet" in out.getvalue() and not db.exists()
    with History(db) as h:
        for s in _sample():
            h.record(s)
    out = io.StringIO()
    assert history_main(_args(db, csv=str(tmp_path / "o.csv")), now=at(2024, 5, 7, 12),
                        tz=BERLIN, out=out, err=err) == 0
    assert out.getvalue() == ""  # the file asked for, not the table as well
    out = io.StringIO()
    assert history_main(_args(db), now=at(2024, 5, 7, 12), tz=BERLIN, out=out, err=err) == 0
    text = out.getvalue()
    assert "2024-05-07 07:00  cancelled" in text
    assert "2024-05-06 07:00  complete     60 s           60 s           R 80" in text
    assert "Today: 0.0 min held. Streak: 1 day. This week: 1 complete session." in text
    assert "  2024-05-06  #              1" in text
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 4
    out = io.StringIO()
    assert history_main(_args(db, json=True), now=at(2024, 5, 7, 12), tz=BERLIN, out=out,
                        err=err) == 0
    assert len(json.loads(out.getvalue())) == 2
    c = sqlite3.connect(db)
    c.execute("PRAGMA user_version=99")
    c.close()
    err = io.StringIO()
    assert history_main(_args(db), now=at(2024, 5, 7, 12), tz=BERLIN, out=out, err=err) == 1
    assert "schema version 99" in err.getvalue() and "upgrade stretch-companion" in err.getvalue()


# --------------------------------------------------------------------------- faults


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "device.store.safe" and r.levelno >= logging.WARNING]


def _fallback_lines(safe: SafeHistory) -> list[dict]:
    return [json.loads(line) for line in safe.fallback_path.read_text().splitlines()]


def test_locked_database_keeps_going(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="device.store.safe")
    History(db).close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    safe = SafeHistory(db, timeout_s=0.01)
    a, b = session(at(2024, 5, 6)), session(at(2024, 5, 7))
    assert safe.record(a) is False
    assert safe.record(b) is False
    assert len(_warnings(caplog)) == 1 and "locked" in _warnings(caplog)[0].getMessage()
    assert safe.pending == (a, b) and not safe.ok
    assert [d["started"] for d in _fallback_lines(safe)] == [a.started.isoformat(),
                                                             b.started.isoformat()]
    assert safe.done_today(at(2024, 5, 7, 12)) is True  # answered from memory
    assert safe.sessions_this_week(at(2024, 5, 7, 12)) == 2
    locker.execute("ROLLBACK")
    locker.close()
    assert safe.flush() is True
    assert safe.pending == () and safe.ok and not safe.fallback_path.exists()
    with History(db) as h:
        assert h.sessions() == [a, b]  # once each, although also in the fallback file
    assert len(_warnings(caplog)) == 1


def test_read_only_database_keeps_going(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="device.store.safe")
    History(db).close()
    ro = {"on": True}
    safe = SafeHistory(db, opener=lambda: History(db, read_only=ro["on"], timeout_s=0.01))
    a = session(at(2024, 5, 6))
    assert safe.record(a) is False
    assert safe.flush() is False
    assert len(_warnings(caplog)) == 1 and "readonly" in _warnings(caplog)[0].getMessage()
    assert safe.pending == (a,) and len(_fallback_lines(safe)) == 1
    ro["on"] = False
    b = session(at(2024, 5, 7))
    assert safe.record(b) is True
    with History(db) as h:
        assert h.sessions() == [a, b]


def test_path_is_a_directory_keeps_going(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="device.store.safe")
    db.mkdir(parents=True)
    safe = SafeHistory(db)
    a = session(at(2024, 5, 6))
    assert safe.record(a) is False and safe.pending == (a,)
    assert safe.fallback_path == db.with_name("history-unsaved.jsonl")
    assert len(_fallback_lines(safe)) == 1 and len(_warnings(caplog)) == 1
    db.rmdir()
    assert safe.flush() is True
    with History(db) as h:
        assert h.sessions() == [a]


def test_corrupt_database_keeps_going_and_fallback_survives_restart(
        db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="device.store.safe")
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite, just garbage " * 200)
    fallback = tmp_path / "elsewhere" / "unsaved.jsonl"
    safe = SafeHistory(db, fallback)
    a, b = session(at(2024, 5, 6)), session(at(2024, 5, 7), "cancelled", holds=())
    assert safe.record(a) is False and safe.record(b) is False
    assert len(_warnings(caplog)) == 1 and "not a database" in _warnings(caplog)[0].getMessage()
    assert safe.streak_days(at(2024, 5, 7, 12)) == 1 and safe.leg_progress("right")[0].holds == ()
    del safe  # the process restarts: memory is gone, the fallback file is not
    with fallback.open("a") as f:
        f.write('{"started": "2024-05-08T07:00:00+02:00", "ended": "2024-05')  # torn line
    db.rename(db.with_suffix(".corrupt"))  # someone moves the damaged file aside
    fresh = SafeHistory(db, fallback)
    assert fresh.flush() is True and not fallback.exists()
    with History(db) as h:
        assert h.sessions() == [a, b]


def test_newer_schema_keeps_going(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="device.store.safe")
    History(db).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    safe = SafeHistory(db)
    assert safe.record(session(at(2024, 5, 6))) is False
    assert safe.record(session(at(2024, 5, 7))) is False
    assert [r.getMessage() for r in _warnings(caplog)][0].count("upgrade stretch-companion") == 1
    assert len(_warnings(caplog)) == 1 and len(safe.pending) == 2


# --------------------------------------------------------------------------- power cut

HOLDS_PER_SESSION = 10
CHILD = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timedelta, timezone
    from device.core.records import HoldRecord, SessionRecord
    from device.store.sqlite import History
    path, day, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    h = History(path)
    if kill_at:  # die by SIGKILL just before the kill_at-th SQL statement from here on
        seen = [0]
        def trace(sql):
            seen[0] += 1
            if seen[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        h._conn.set_trace_callback(trace)
    base = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)
    for i in range(1_000_000):
        start = base + timedelta(seconds=i)
        holds = tuple(HoldRecord(leg, r, 60, 60, "complete", 1.0, 2.0, 90)
                      for r in range(1, 6) for leg in ("right", "left"))
        h.record(SessionRecord(start, start + timedelta(seconds=1), "complete", f"r{i}", holds))
        print(i, flush=True)
""")


def test_sigkill_while_writing_leaves_a_consistent_file(db: Path) -> None:
    """A child writing sessions is killed: by us at some moment, or by itself before each
    SQL statement of a session's write in turn. The file stays sound, with whole sessions
    only, and every session the child was told was saved is there."""
    History(db).close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    per_session = HOLDS_PER_SESSION + 3  # BEGIN, session row, hold rows, COMMIT
    runs = [(w, 0) for w in (3, 11, 19)] + [
        (None, 2 * per_session + k) for k in range(1, per_session + 1)]
    committed: dict[int, int] = {}
    for run, (wait_for, kill_at) in enumerate(runs):
        day = run * 10
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(day), str(kill_at)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout is not None
            last = -1
            for line in child.stdout:
                last = int(line)
                if wait_for is not None and last >= wait_for:
                    child.send_signal(signal.SIGKILL)  # the next session is being written
                    break
        finally:
            child.kill()
            assert child.wait() == -signal.SIGKILL
        committed[day] = last
        c = sqlite3.connect(db)
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT count(*) FROM sessions s WHERE (SELECT count(*) FROM holds"
                         " WHERE session_id = s.id) != ?", (HOLDS_PER_SESSION,)).fetchone()[0] == 0
        c.close()
        with History(db) as h:
            stored = {((s.started - datetime(2024, 1, 1, tzinfo=UTC)).days, int(s.routine[1:]))
                      for s in h.sessions()}
        for d, n in committed.items():
            assert all((d, i) in stored for i in range(n + 1))  # every committed one survives
    assert committed[30] == 1 and committed[30 + 10 * (per_session - 1)] == 1


def test_a_version_1_file_gains_the_tightness_and_overpull_columns(tmp_path: Path) -> None:
    # issue 11's migration: holds get tightness (the answer after the hold) and overpull_s
    from dataclasses import replace

    from device.store.sqlite import MIGRATIONS, SCHEMA_VERSION, History

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO sessions VALUES (1, 1, '2024-05-06T07:00:00+02:00', 2, "
                 "'2024-05-06T07:05:00+02:00', 'complete', 'hamstring')")
    conn.execute("INSERT INTO holds VALUES (1, 0, 'right', 1, 60, 60, 'complete', NULL, NULL,"
                 " NULL)")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with History(path) as h:
        assert h.schema_version == SCHEMA_VERSION >= 2
        old = h.recent(1)[0].holds[0]
        assert old.tightness is None and old.overpull_s is None
        s = _sample()[0]
        answered = replace(s, holds=(replace(s.holds[0], tightness="very_tight",
                                             overpull_s=3.5),))
        assert h.record(answered)
        got = next(x for x in h.recent(5) if x.started == s.started).holds[0]
        assert (got.tightness, got.overpull_s) == ("very_tight", 3.5)


def test_tightness_moves_a_legs_hold_in_steps_within_60_to_300_s() -> None:
    from dataclasses import replace

    from device.core.progression import adjust_for_tightness, tightness_plan

    assert adjust_for_tightness(60, "very_tight", 30) == 90
    assert adjust_for_tightness(290, "very_tight", 30) == 300
    assert adjust_for_tightness(90, "easy", 30) == 60 and adjust_for_tightness(60, "easy", 30) == 60
    assert adjust_for_tightness(120, "tight", 30) == 120
    assert adjust_for_tightness(120, None, 30) == 120
    when = at(2024, 5, 6)
    newest_unanswered = LegSession(when, "complete", (hold("right", 90),))
    answered = LegSession(when, "complete",
                          (replace(hold("right", 60), tightness="very_tight"),))
    assert tightness_plan([newest_unanswered, answered], 30) == 90  # the newest *answer*
    assert tightness_plan([newest_unanswered], 30) is None


def test_summary_never_calls_an_over_pulled_hold_steady() -> None:
    from dataclasses import replace

    from device.core.summary import summary_line

    routine = load_routine()
    steady = hold("right", steadiness=95)
    pulled = replace(hold("right", steadiness=95), overpull_s=12.0)
    assert "steady strap" in summary_line(routine, [steady], 0, 0)
    line = summary_line(routine, [pulled], 0, 0)
    assert "pulled too hard" in line and "steady" not in line


# --------------------------------------------------------------------------- issue 22


def test_sessions_are_keyed_by_their_own_id_not_their_start(db: Path) -> None:
    a = session(at(2024, 5, 6))
    with History(db) as h:
        assert h.record(replace(a, uid="one")) and h.record(replace(a, uid="two"))
        assert h.record(replace(a, uid="one")) is False  # the same session again
        assert h.count() == 2


def test_three_runs_with_the_same_start_are_three_sessions(tmp_path: Path) -> None:
    """Issue 22: each run said "saved" and the database held one session."""
    db = tmp_path / "h.db"
    for _ in range(3):
        assert main(["sim", "--headless", "--script", "press@1,long@5", "--until", "30",
                     "--history", str(db), "--start", "2026-03-01T07:00:00+00:00"]) == 0
    with History(db) as h:
        assert h.count() == 3


def test_the_id_migration_keeps_every_hold_and_outbox_row(tmp_path: Path) -> None:
    from device.store.sqlite import MIGRATIONS

    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    for step in MIGRATIONS[:4]:  # a file as the box wrote it before issue 22
        for statement in step:
            c.execute(statement)
    c.execute("PRAGMA user_version=4")
    c.execute("PRAGMA foreign_keys=ON")
    c.execute("INSERT INTO sessions VALUES (7, 1714975200000000, '2024-05-06T06:00:00+00:00',"
              " 1714975350000000, '2024-05-06T06:02:30+00:00', 'complete', 'hamstring')")
    c.execute("INSERT INTO holds (session_id, seq, leg, round, planned_s, held_s, ended)"
              " VALUES (7, 0, 'right', 1, 60, 60, 'complete')")
    c.execute("INSERT INTO outbox (session_id, msg_id) VALUES (7, 'm7')")
    c.commit()
    c.close()
    with History(db, outbox=True) as h:
        [old] = h.recent()
        assert len(old.holds) == 1 and h.outbox_count() == 1
        assert h.outbox_pending()[0].session == old
        assert h.record(old) is False  # the old row's id is its start instant
        assert h.record(replace(old, uid="new")) and h.count() == 2


def test_plot_shows_each_leg_s_tightness_index_when_the_strap_gave_one(tmp_path: Path) -> None:
    """Issue 21: the plot carries the strap's measure too: a row of each leg's tightness
    index (100 = its first weeks) under hold time and steadiness."""
    from device.apps.history_report import figure

    plain = figure(_sample(), BERLIN)
    assert len(plain.axes) == 2  # hold time, steadiness
    measured = [session(at(2024, 5, 6 + d), holds=(
        replace(hold("right", steadiness=90), index=100.0 - 4 * d),
        replace(hold("left", steadiness=88), index=110.0 - 2 * d))) for d in range(3)]
    fig = figure(measured, BERLIN)
    assert len(fig.axes) == 3
    index_ax = fig.axes[-1]
    assert "tightness index" in index_ax.get_ylabel()
    lines = {line.get_label(): list(line.get_ydata()) for line in index_ax.get_lines()}
    assert lines["right leg"] == [100.0, 96.0, 92.0] and lines["left leg"] == [110.0, 108.0, 106.0]
    plot(measured, tmp_path / "m.png", BERLIN)
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
