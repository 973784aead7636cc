"""The README's example add-on: one module (device/addons/hold_log.py), one builder line."""

from __future__ import annotations

import csv
from pathlib import Path

from device.addons import hold_log
from device.apps.builder import build_box
from device.box.clock import VirtualClock
from device.core.config import Config, with_overrides


def _session(config: Config) -> None:
    box = build_box(config, clock=VirtualClock())
    try:
        box.loop.schedule(1.0, box.press_now)
        box.loop.run(until=600, stop_when_done=True)
    finally:
        box.close()


def test_a_configured_hold_log_gets_a_row_per_hold(tmp_path: Path) -> None:
    path = tmp_path / "holds.csv"
    config = with_overrides(Config(), session={"switch": "auto"},
                            history={"hold_log": str(path)})
    _session(config)
    rows = list(csv.reader(path.open()))
    assert rows[0] == list(hold_log.COLUMNS)
    assert [(r[1], r[5]) for r in rows[1:]] == [("right", "complete"), ("left", "complete")]
    assert all(float(r[4]) == 60.0 for r in rows[1:])
    _session(config)  # a second session appends, without a second header
    assert len(list(csv.reader(path.open()))) == 5


def test_the_example_attaches_by_hand_through_the_port(tmp_path: Path) -> None:
    """As the README shows it: ``attach(port, ...)`` on a built box, closed with it."""
    box = build_box(with_overrides(Config(), session={"switch": "auto"}), clock=VirtualClock())
    log = box.attach(hold_log.attach(box.port, tmp_path / "h.csv"))
    box.loop.schedule(1.0, box.press_now)
    box.loop.run(until=600, stop_when_done=True)
    box.close()
    assert log.rows == 2


def test_an_unwritable_hold_log_costs_a_log_line_not_the_session(tmp_path: Path,
                                                                   caplog) -> None:
    config = with_overrides(Config(), session={"switch": "auto"},
                            history={"hold_log": str(tmp_path / "no" / "such" / "dir.csv")})
    _session(config)
    assert "hold log" in caplog.text
