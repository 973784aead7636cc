"""The `history` command as a new user meets it: piped into `head`, after trying the
simulator (which keeps its own file), sessions run on virtual time, and the plot."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from device.apps.cli import main

ROOT = Path(__file__).parent.parent


def _sessions(db: Path, n: int, start: datetime, step: timedelta,
              holds: tuple[tuple[float, float], ...] | None = None) -> None:
    from device.core.records import HoldRecord, SessionRecord
    from device.store.sqlite import History

    with History(db) as h:
        for i in range(n):
            right, left = holds[i] if holds else (60.0, 60.0)
            began = start + i * step
            h.record(SessionRecord(began, began + timedelta(minutes=5), "complete",
                                   "hamstring", (
                                       HoldRecord("right", 1, 60.0, right, "complete"),
                                       HoldRecord("left", 1, 60.0, left, "complete"))))


def test_history_piped_into_head_ends_quietly(tmp_path) -> None:
    db = tmp_path / "h.db"
    _sessions(db, 5, datetime(2026, 11, 2, 7, 0).astimezone(), timedelta(days=1))
    child = subprocess.Popen([sys.executable, "-m", "device", "history", "--history", str(db)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader left before anything was written, as `head` does
    err = child.stderr.read().decode()
    assert child.wait(timeout=30) == 0, err
    assert err == ""  # no "[Errno 32] Broken pipe"


def test_history_points_to_the_simulators_own_file(tmp_path, capsys, monkeypatch) -> None:
    from device.store.paths import default_history_path

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert main(["sim", "--headless", "--quiet"]) == 0  # writes sim-history.db
    capsys.readouterr()
    assert main(["history"]) == 0
    captured = capsys.readouterr()
    sim = default_history_path(service=False).with_name("sim-history.db")
    assert "No sessions recorded yet" in captured.out
    assert f"the simulator keeps its own history in {sim}" in captured.err
    assert f"stretch-companion history --history {sim}" in captured.err
    assert main(["history", "--history", str(sim)]) == 0
    assert "complete" in capsys.readouterr().out


def test_history_on_a_folder_or_fifo_is_one_line(tmp_path, capsys) -> None:
    import os

    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)  # sqlite would wait on it for ever
    for target in (tmp_path, fifo):
        assert main(["history", "--history", str(target)]) == 1
        assert capsys.readouterr().err.strip().endswith("not a regular file")


def test_a_virtual_time_session_is_stored_ending_now_not_in_the_future(tmp_path,
                                                                       capsys) -> None:
    from device.store.sqlite import History

    db = tmp_path / "h.db"
    before = datetime.now().astimezone()
    assert main(["sim", "--headless", "--quiet", "--history", str(db)]) == 0
    after = datetime.now().astimezone()
    with History(db, read_only=True) as h:
        (session,) = h.sessions()
    assert session.ended <= after  # the session took minutes of virtual time, in ms
    assert session.ended >= before
    held = sum(hold.held_s for hold in session.holds)
    assert (session.ended - session.started).total_seconds() >= held  # its length is kept


def test_a_session_with_start_moves_with_virtual_time(tmp_path, capsys) -> None:
    from device.store.sqlite import History

    db = tmp_path / "h.db"
    start = "2026-11-26T07:30:00+01:00"
    assert main(["sim", "--headless", "--quiet", "--history", str(db), "--start", start]) == 0
    with History(db, read_only=True) as h:
        (session,) = h.sessions()
    assert session.started >= datetime.fromisoformat(start)
    assert session.ended - datetime.fromisoformat(start) > timedelta(minutes=3)


# ---- history --plot ----------------------------------------------------------------------------


def _figure(sessions, now=None):
    from device.apps.history_report import figure
    from device.core.streaks import local_zone

    fig = figure(sessions, local_zone(env={}), now)  # /etc/localtime: its key is "localtime"
    fig.canvas.draw()
    return fig


def _make(days: list[float], holds: list[tuple[float, float]]):
    from device.core.records import HoldRecord, SessionRecord

    base = datetime(2026, 11, 2, 7, 0).astimezone()
    out = []
    for day, (right, left) in zip(days, holds, strict=True):
        began = base + timedelta(days=day)
        out.append(SessionRecord(began, began + timedelta(minutes=5), "complete", "hamstring", (
            HoldRecord("right", 1, 60.0, right, "complete"),
            HoldRecord("left", 1, 60.0, left, "complete"))))
    return out


def test_plot_equal_legs_are_both_visible() -> None:
    fig = _figure(_make([0, 1, 2], [(60, 60), (75, 75), (90, 90)]))
    held = {line.get_label(): line for line in fig.axes[0].get_lines()
            if line.get_label().endswith("held")}
    right, left = held["right leg, held"], held["left leg, held"]
    assert list(right.get_ydata()) == list(left.get_ydata())  # the same values...
    assert right.get_marker() != left.get_marker()  # ...drawn so both show
    assert right.get_linestyle() != left.get_linestyle()
    assert left.get_markerfacecolor() == "none"  # the circle shows through the square


def test_plot_without_history_has_sensible_axes() -> None:
    from matplotlib.dates import num2date

    now = datetime(2026, 12, 2, 9, 0).astimezone()
    fig = _figure([], now)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert lo == 0 and hi >= 60
    left, right = (num2date(x) for x in ax.get_xlim())
    assert (right - left) >= timedelta(days=7) and left.year == 2026
    assert any("no sessions yet" in t.get_text() for t in ax.texts)


def test_plot_two_sessions_on_one_day_give_distinct_date_ticks() -> None:
    fig = _figure(_make([0, 0.4], [(60, 60), (62, 61)]))
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]
    assert labels and len(labels) == len(set(labels)), labels


def test_plot_never_labels_an_axis_localtime() -> None:
    fig = _figure(_make([0, 3], [(60, 60), (62, 61)]))
    texts = [fig.axes[-1].get_xlabel(), fig.axes[0].get_ylabel()]
    assert not any("localtime" in t for t in texts), texts
    assert "local time" in fig.axes[-1].get_xlabel() or "/" in fig.axes[-1].get_xlabel()
