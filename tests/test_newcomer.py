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
    assert "59.99999999999999" not in text and ",60.0,complete," in text
    assert ",45.123,early," in text



# ---- run outside systemd ---------------------------------------------------------------------


def test_run_socket_gives_press_and_status_without_a_config_edit(tmp_path: Path) -> None:
    """The README's press/status examples from a laptop or an SSH session (no systemd, so
    no $RUNTIME_DIRECTORY): `run --socket PATH`, then `status --socket PATH`."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    sock = tmp_path / "c.sock"
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    env["GPIOZERO_PIN_FACTORY"] = "mock"
    config = tmp_path / "config.toml"
    config.write_text('[pins]\nfactory = "mock"\n[voice]\nenabled = false\n')
    child = subprocess.Popen([sys.executable, "-m", "device", "run", "--config", str(config),
                              "--history", str(tmp_path / "h.db"),
                              "--socket", str(sock)], cwd=root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 20
        out = None
        while time.monotonic() < end and child.poll() is None:
            r = subprocess.run([sys.executable, "-m", "device", "status", "--socket", str(sock)],
                               cwd=root, env=env, capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                out = json.loads(r.stdout)
                break
            time.sleep(0.1)
        assert out is not None and out["state"] == "idle", child.stderr.read() \
            if child.poll() is not None else "no answer"
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=10)
    assert main(["run", "--socket", "relative.sock", "--config", str(config)]) == 2


def test_a_safety_line_cut_by_a_skip_and_said_again_is_listed_once() -> None:
    """Two quick presses in the set-up cut the safety line; the hold says it again (it is
    owed once a session). The transcript has both; the spoken list (screen, page) once."""
    from device.apps.sim import make_sim
    from tests.conftest import Events

    events = Events()
    box = make_sim(Config(), listeners=[events])
    try:
        box.loop.schedule(1.0, box.press_now)
        box.loop.schedule(3.0, box.press_now)
        box.loop.schedule(3.3, box.press_now)  # straight to the hold
        box.loop.run(until=15.0)
        safety = [e for e in events.kind("speak") if e["key"] == "setup.safety"]
        assert len(safety) == 2  # said, cut, said in full
        spoken = box.view().spoken
        assert sum("pain is not" in line for line in spoken) == 1, spoken
    finally:
        box.close()
