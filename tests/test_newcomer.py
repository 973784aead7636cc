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
