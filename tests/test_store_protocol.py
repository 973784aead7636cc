"""One store interface (``device.store.protocol.SessionStore``): the SQLite ``History`` and
the device's never-raising ``SafeHistory`` both are one, answer every question the same
way, and the questions built on the reads are written once (``StoreQueries``)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.apps.history_report import history_table
from device.core.records import HoldRecord, SessionRecord
from device.store.protocol import SessionStore, StoreQueries
from device.store.safe import SafeHistory
from device.store.sqlite import History, HistoryError

NOW = datetime(2026, 5, 6, 19, 0, tzinfo=UTC)
QUESTIONS = ("leg_progress", "streak_days", "done_today", "sessions_this_week",
             "sessions_per_week", "minutes_today")


def sessions() -> list[SessionRecord]:
    out = []
    for day, outcome in enumerate(["complete", "complete", "cancelled", "complete",
                                   "interrupted", "complete", "complete"]):
        start = NOW - timedelta(days=day, hours=2)
        holds = (HoldRecord("right", 1, 60.0, 60.0 if outcome == "complete" else 20.0,
                            "complete" if outcome == "complete" else "early"),
                 HoldRecord("left", 1, 75.0, 75.0, "complete", tightness="tight"))
        out.append(SessionRecord(start, start + timedelta(minutes=4), outcome, "hamstring",
                                 holds if outcome != "cancelled" else holds[:1]))
    return out


def answers(store: SessionStore) -> dict[str, object]:
    since = NOW - timedelta(days=4)
    return {
        "recent": store.recent(5),
        "sessions": store.sessions(since, NOW - timedelta(days=1)),
        "all": store.sessions(),
        "complete_starts": sorted(store.complete_starts(since)),
        "leg_progress": store.leg_progress("left", 4),
        "streak_days": store.streak_days(NOW, UTC),
        "done_today": store.done_today(NOW, UTC),
        "sessions_this_week": store.sessions_this_week(NOW, UTC),
        "sessions_per_week": store.sessions_per_week(NOW, 3, UTC),
        "minutes_today": store.minutes_today(NOW, UTC),
    }


def down() -> History:
    raise HistoryError("the store is locked")


@pytest.mark.parametrize("kind", [History, SafeHistory])
def test_both_stores_are_the_protocol_with_its_signatures(kind: type) -> None:
    for name, member in vars(SessionStore).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        want = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
        got = [(p.name, p.kind) for p in inspect.signature(getattr(kind, name)).parameters.values()]
        assert got == want, name


def test_the_questions_are_written_once_not_per_store() -> None:
    for name in QUESTIONS:
        assert name in vars(StoreQueries)
        assert name not in vars(History) and name not in vars(SafeHistory), name


def test_sqlite_safe_and_safe_while_down_answer_alike(tmp_path: Path) -> None:
    sqlite = History(tmp_path / "a.db")
    safe = SafeHistory(tmp_path / "b.db")
    pending = SafeHistory(tmp_path / "c.db", opener=down)  # every session kept in memory
    older = History(tmp_path / "d.db")  # the older sessions stored...
    for i, s in enumerate(sessions()):
        for store in (sqlite, safe, pending):
            store.record(s)
        if i >= 3:
            older.record(s)
    older.close()
    # ...and the newest pending: the store reads but refuses writes
    half = SafeHistory(tmp_path / "d.db", opener=lambda: History(tmp_path / "d.db",
                                                                  read_only=True))
    for s in sessions()[:3]:
        assert half.record(s) is False
    stores: list[SessionStore] = [sqlite, safe, pending, half]
    assert all(isinstance(store, SessionStore) for store in stores)
    want = answers(sqlite)
    assert want["streak_days"] == 2 and want["done_today"] is True
    assert len(want["sessions"]) == 3 and want["minutes_today"] > 0  # type: ignore[arg-type]
    for store in stores[1:]:
        assert answers(store) == want
    for store in stores:
        store.close()


def test_the_report_reads_any_store(tmp_path: Path) -> None:
    sqlite = History(tmp_path / "a.db")
    pending = SafeHistory(tmp_path / "b.db", opener=down)
    for s in sessions():
        sqlite.record(s)
        pending.record(s)
    assert history_table(pending, NOW, UTC) == history_table(sqlite, NOW, UTC)
    assert "Streak: 2 days" in history_table(sqlite, NOW, UTC)
    sqlite.close()
