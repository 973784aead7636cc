"""What a newcomer hit (issue 24), each behaviour with a test that failed before."""

from __future__ import annotations

import logging
from pathlib import Path

from device.apps.cli import main
from device.apps.sim import SCRIPT_MARGIN_S, script_margin_s
from device.core.config import Config, with_overrides


def test_a_script_that_leaves_the_box_waiting_stops_after_a_stated_margin_and_says_why(
        tmp_path: Path, capsys, caplog) -> None:
    """``press@1`` with the default (switch on a press): the box waits between legs. The
    run ends 30 min after the last input, not 6 h later, says why, and keeps a short
    interrupted session."""
    from device.store.sqlite import History

    caplog.set_level(logging.WARNING)
    db = tmp_path / "sim-history.db"
    assert main(["sim", "--headless", "--script", "press@1", "--quiet",
                 "--history", str(db)]) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "stopped at 30:01 of virtual time, 30 min after the script's last input" in said
    assert "waiting in switch" in said and "--until" in said
    with History(db, read_only=True) as h:
        (session,) = h.sessions()
    assert session.outcome == "interrupted"
    assert (session.ended - session.started).total_seconds() < SCRIPT_MARGIN_S + 60


def test_until_still_runs_as_long_as_asked(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    assert main(["sim", "--headless", "--script", "press@1", "--quiet", "--no-history",
                 "--until", "7200"]) == 0
    assert "stopped at" not in " ".join(r.getMessage() for r in caplog.records)


def test_a_whole_session_is_not_cut_by_the_margin() -> None:
    long = with_overrides(Config(), session={"hold_seconds": 300, "rounds": 10})
    assert script_margin_s(long) >= 10 * 2 * 300
    assert script_margin_s(Config()) == SCRIPT_MARGIN_S


def test_a_finished_run_says_nothing_of_a_margin(caplog) -> None:
    caplog.set_level(logging.WARNING)
    assert main(["sim", "--headless", "--quiet", "--no-history"]) == 0  # auto switch
    assert "stopped at" not in " ".join(r.getMessage() for r in caplog.records)


# ---- the command-line history ------------------------------------------------------------


def _one_session(db: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from device.core.records import HoldRecord, SessionRecord
    from device.store.sqlite import History

    start = datetime.now(UTC) - timedelta(hours=1)
    holds = (HoldRecord("right", 1, 60, 59.99999999999999, "complete", tightness="tight"),
             HoldRecord("left", 1, 60, 45.123456, "early", tightness="very_tight"))
    with History(db) as h:
        h.record(SessionRecord(start, start + timedelta(minutes=5), "complete", "hamstring",
                               holds))


def test_history_csv_and_plot_write_the_file_not_also_the_table(tmp_path: Path,
                                                                capsys) -> None:
    db = tmp_path / "h.db"
    _one_session(db)
    assert main(["history", "--history", str(db), "--csv", str(tmp_path / "x.csv")]) == 0
    out = capsys.readouterr().out
    assert "Recent sessions" not in out and out == ""


def test_history_csv_numbers_as_a_person_writes_them(tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.db"
    _one_session(db)
    assert main(["history", "--history", str(db), "--csv", "-"]) == 0
    text = capsys.readouterr().out
    assert "59.99999999999999" not in text and ",60,complete," in text
    assert ",45.123,early," in text


def test_history_table_has_a_tightness_column(tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.db"
    _one_session(db)
    assert main(["history", "--history", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].rstrip().endswith("tightness")
    assert lines[2].rstrip().endswith("R tight L very tight")
