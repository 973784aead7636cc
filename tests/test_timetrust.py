"""A date the box can trust without a clock (device.core.timetrust), on a fake time source:
synchronized or not, a jump of the wall clock at synchronization, a phone's time, a reboot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.box import timesource
from device.box.timesource import SystemTimeSource
from device.core import timetrust
from device.core.records import SessionRecord, session_from_dict, session_to_dict
from device.core.timetrust import (
    CORRECTED,
    PHONE,
    SYNCED,
    UNTRUSTED,
    TimeTrust,
)
from device.store.sqlite import History

TRUE_BOOT = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)  # when the box really booted
SAVED = datetime(2026, 2, 1, 22, 15, tzinfo=UTC)  # the time it last saved (fake-hwclock)


@dataclass
class FakeSource:
    """A box with no clock: the wall clock starts at ``saved`` at boot, the monotonic one
    at 0; ``sync()`` jumps the wall clock to the truth, as timesyncd does."""

    saved: datetime = SAVED
    true_boot: datetime = TRUE_BOOT
    mono: float = 0.0
    synced: bool | None = False
    boot: str = "boot-1"

    def wall(self) -> datetime:
        base = self.true_boot if self.synced else self.saved
        return base + timedelta(seconds=self.monotonic())

    def monotonic(self) -> float:
        return self.mono

    def boot_id(self) -> str:
        return self.boot

    def synchronized(self) -> bool | None:
        return self.synced

    def truth(self) -> datetime:
        return self.true_boot + timedelta(seconds=self.monotonic())


def test_synchronized_clock_is_trusted_as_it_is() -> None:
    src = FakeSource(synced=True)
    trust = TimeTrust(src)
    src.mono = 30.0
    stamp = trust.stamp()
    assert stamp.clock == SYNCED and stamp.mono_s == 30.0 and stamp.boot_id == "boot-1"
    assert trust.now() == src.truth()


@pytest.mark.parametrize("answer", [False, None])
def test_unsynchronized_or_unknown_is_untrusted(answer: bool | None) -> None:
    src = FakeSource(synced=answer)
    trust = TimeTrust(src)
    assert trust.stamp().clock == UNTRUSTED
    assert trust.now() is None  # nothing to date things with: the caller marks them


def test_sessions_before_sync_are_corrected_at_sync_in_the_same_boot() -> None:
    src = FakeSource()
    trust = TimeTrust(src)
    src.mono = 600.0  # a session ten minutes after boot, on the saved (wrong) clock
    stamp = trust.stamp()
    wrong_start = src.wall()
    assert trust.correction(wrong_start, stamp) is None  # no reference yet
    src.mono = 3600.0
    src.synced = True  # timesyncd reached a server: the wall clock jumps
    assert trust.check()
    shift = trust.correction(wrong_start, stamp)
    assert shift is not None
    assert wrong_start + shift == TRUE_BOOT + timedelta(seconds=600)
    assert shift == TRUE_BOOT - SAVED  # exactly the jump


def test_a_session_of_another_boot_is_never_corrected() -> None:
    src = FakeSource()
    old = TimeTrust(src).stamp()
    src.boot, src.synced = "boot-2", True
    trust = TimeTrust(src)
    assert trust.check()
    assert trust.correction(SAVED, old) is None


def test_phone_time_dates_the_box_while_unsynchronized() -> None:
    src = FakeSource(mono=120.0)
    trust = TimeTrust(src)
    untrusted = trust.stamp()
    wrong = src.wall()
    ref = trust.phone_time(src.truth() + timedelta(milliseconds=300))  # a phone, 0.3 s off
    assert ref is not None and ref.kind == PHONE
    src.mono = 900.0
    stamp = trust.stamp()
    assert stamp.clock == PHONE
    dated = trust.date(src.wall(), stamp)
    assert abs((dated - src.truth()).total_seconds()) < 0.5
    now = trust.now()
    assert now is not None and abs((now - src.truth()).total_seconds()) < 0.5
    # and the session from before the phone came is corrected by it too
    shift = trust.correction(wrong, untrusted)
    assert shift is not None and abs((wrong + shift - (TRUE_BOOT + timedelta(seconds=120)))
                                     .total_seconds()) < 0.5


def test_a_phone_with_an_implausible_time_is_ignored() -> None:
    trust = TimeTrust(FakeSource())
    assert trust.phone_time(datetime(1970, 1, 1, tzinfo=UTC)) is None
    assert trust.stamp().clock == UNTRUSTED
    with pytest.raises(ValueError):
        trust.phone_time(datetime(2026, 3, 10, 7, 0))  # naive


def test_a_synchronized_clock_wins_over_a_phone() -> None:
    src = FakeSource(synced=True, mono=5.0)
    trust = TimeTrust(src)
    ref = trust.phone_time(TRUE_BOOT + timedelta(hours=3))  # a phone three hours off
    assert ref is not None and ref.kind == SYNCED
    assert trust.now() == src.truth()


# ----------------------------------------------------------------- in the store ---

def _session(start: datetime, stamp: timetrust.Stamp, outcome: str = "complete") -> SessionRecord:
    return SessionRecord(start, start + timedelta(minutes=4), outcome, "hamstring",
                         clock=stamp.clock, boot_id=stamp.boot_id, mono_s=stamp.mono_s)


def test_store_keeps_the_marker_and_counts_only_trusted_sessions(tmp_path: Path) -> None:
    src = FakeSource(mono=60.0)
    trust = TimeTrust(src)
    with History(tmp_path / "h.db") as h:
        bad = trust.stamp()
        h.record(_session(src.wall(), bad))
        [stored] = h.recent()
        assert stored.clock == UNTRUSTED and not stored.trusted
        assert stored.boot_id == "boot-1" and stored.mono_s == 60.0
        assert h.complete_starts() == []  # kept and marked, in no streak or week
        assert h.count() == 1
        assert session_to_dict(stored)["clock"] == UNTRUSTED
        assert session_from_dict(session_to_dict(stored)).clock == UNTRUSTED


def test_store_corrects_the_boots_untrusted_sessions_at_sync(tmp_path: Path) -> None:
    src = FakeSource(mono=60.0)
    trust = TimeTrust(src)
    with History(tmp_path / "h.db") as h:
        h.record(_session(src.wall(), trust.stamp()))
        src.mono = 7200.0
        h.record(_session(src.wall(), trust.stamp(), "cancelled"))
        src.mono = 9000.0
        src.synced = True
        assert trust.check()
        ref = trust.reference
        assert ref is not None
        assert h.correct_dates("boot-2", ref.offset_s) == 0  # another boot's: untouched
        assert h.correct_dates(ref.boot_id, ref.offset_s) == 2
        first, second = h.sessions()
        assert first.clock == second.clock == CORRECTED
        assert first.started == TRUE_BOOT + timedelta(seconds=60)
        assert second.started == TRUE_BOOT + timedelta(seconds=7200)
        assert first.ended - first.started == timedelta(minutes=4)  # only moved
        assert h.complete_starts() == [first.started]  # now it counts
        assert h.correct_dates(ref.boot_id, ref.offset_s) == 0  # once


def test_migration_marks_older_sessions_synced(tmp_path: Path) -> None:
    import sqlite3

    from device.store import sqlite as store

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    version = store.MIGRATIONS.index(next(m for m in store.MIGRATIONS
                                          if any("clock" in s for s in m)))
    for step in store.MIGRATIONS[:version]:
        for sql in step:
            conn.execute(sql)
    conn.execute("INSERT INTO sessions (uid, started_us, started, ended_us, ended, outcome,"
                 " routine) VALUES ('started-1', 1, '2026-01-01T08:00:00+00:00', 2,"
                 " '2026-01-01T08:04:00+00:00', 'complete', 'hamstring')")
    conn.execute(f"PRAGMA user_version={version}")
    conn.commit()
    conn.close()
    with History(path) as h:
        [old] = h.recent()
        assert old.clock == SYNCED and old.boot_id is None
        assert len(h.complete_starts()) == 1


# ----------------------------------------------------------------- the real source ---

def test_system_source_reads_the_timesyncd_flag_and_the_boot_id(tmp_path: Path) -> None:
    flag, boot = tmp_path / "synchronized", tmp_path / "boot_id"
    boot.write_text("3f2a\n")
    src = SystemTimeSource(sync_file=flag, boot_file=boot)
    assert src.boot_id() == "3f2a"
    flag.touch()
    assert src.synchronized() is True
    flag.unlink()
    assert src.synchronized() in (True, False, None)  # the kernel's answer, whatever it is
    assert src.wall().tzinfo is not None


def test_kernel_status_is_read_without_changing_the_clock() -> None:
    answer = timesource.kernel_synchronized()
    assert answer in (True, False, None)


def test_minutes_today_leaves_out_an_untrusted_session() -> None:
    from device.core.records import HoldRecord
    from device.core.streaks import minutes_today

    hold = (HoldRecord("right", 1, 60.0, 60.0, "complete"),)
    now = TRUE_BOOT + timedelta(hours=1)
    good = SessionRecord(TRUE_BOOT, TRUE_BOOT + timedelta(minutes=2), "complete", "hamstring",
                         hold)
    bad = SessionRecord(TRUE_BOOT, TRUE_BOOT + timedelta(minutes=2), "complete", "hamstring",
                        hold, clock=UNTRUSTED)
    assert minutes_today([good], now, UTC) == 1.0
    assert minutes_today([good, bad], now, UTC) == 1.0


def test_the_page_calendar_leaves_out_an_untrusted_session() -> None:
    from device.addons.web.charts import calendar

    now = TRUE_BOOT + timedelta(hours=1)
    bad = SessionRecord(TRUE_BOOT, TRUE_BOOT + timedelta(minutes=4), "complete", "hamstring",
                        clock=UNTRUSTED)
    good = SessionRecord(TRUE_BOOT, TRUE_BOOT + timedelta(minutes=4), "complete", "hamstring",
                         clock=CORRECTED)
    assert calendar([bad], now, UTC)["streak"] == 0
    assert calendar([bad], now, UTC)["weeks"][-1]["days"][TRUE_BOOT.weekday()] == 0
    assert calendar([good], now, UTC)["streak"] == 1


def test_run_offers_the_trust_to_the_history_through_the_port(tmp_path: Path) -> None:
    from device.apps.builder import build_box
    from device.box.clock import VirtualClock
    from device.core.config import Config
    from drivers.pins import mock_factory
    from drivers.speech import RecordingSpeaker

    trust = TimeTrust(FakeSource())
    box = build_box(Config(), mode="run", clock=VirtualClock(), factory=mock_factory(),
                    speaker=RecordingSpeaker(), history=tmp_path / "h.db", trust=trust)
    try:
        assert box.port.find(TimeTrust) is trust
        assert box.habit is not None and box.habit.trust is trust
    finally:
        box.close()
