"""Objective tightness: the index against a leg's first weeks, the left/right asymmetry,
through the simulated box into the history, its JSON, CSV and table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.addons.mqtt import latest_tightness
from device.apps.history_report import history_table, to_csv, to_json
from device.apps.sim import make_sim
from device.core.config import Config, with_overrides
from device.core.records import HoldRecord
from device.core.script import SENSOR_ACTIONS, parse_script
from device.core.tightness import (
    asymmetry,
    baseline,
    disagreement,
    held_force,
    session_tightness,
    tightness_index,
)
from device.store.sqlite import History
from tests.conftest import Events

NO_ASK = with_overrides(Config(), session={"ask_tightness": False})


def hold(leg: str, settled: float | None, relax_30: float | None = 25.0,
         **kw: float) -> HoldRecord:
    return HoldRecord(leg, 1, 60, 60, "complete", settled=settled, relax_30=relax_30, **kw)


def test_held_force_and_index() -> None:
    assert held_force(8.0, 25.0) == pytest.approx(6.0)
    assert held_force(8.0, None, 30.0) == pytest.approx(5.6)  # no 30 s: the end
    assert held_force(None, 25.0) is None and held_force(8.0, None) is None
    base = baseline([hold("right", 8.0), hold("right", 10.0), hold("right", None),
                     hold("right", 12.0)], n=2)
    assert base == pytest.approx((6.0 + 7.5) / 2)  # the first two fitted holds only
    assert tightness_index(hold("right", 9.0), base) == pytest.approx(100.0)
    assert tightness_index(hold("right", 10.8), base) == pytest.approx(120.0)
    assert tightness_index(hold("right", 9.0), None) is None


def test_asymmetry_is_right_minus_left_over_their_mean() -> None:
    assert asymmetry(11.0, 9.0) == pytest.approx(20.0)
    assert asymmetry(9.0, 11.0) == pytest.approx(-20.0)
    assert asymmetry(None, 9.0) is None and asymmetry(0.0, 0.0) is None
    figures = session_tightness([hold("right", 11.0, 20.0, index=110.0),
                                 hold("left", 9.0, 30.0, index=90.0)])
    assert figures is not None
    assert figures["asymmetry"]["settled"] == pytest.approx(20.0)
    assert figures["asymmetry"]["relax_30"] == pytest.approx(-40.0)
    assert figures["asymmetry"]["index"] == pytest.approx(20.0)
    assert session_tightness([HoldRecord("right", 1, 60, 60, "complete")]) is None


def test_measure_and_answers_disagreeing_over_sessions() -> None:
    looser = [{"index": 110, "answer": "easy"}, {"index": 100, "answer": "tight"},
              {"index": 95, "answer": "very_tight"}]
    assert disagreement(looser, "right") == "looser"
    tighter = [{"index": 90, "answer": "very_tight"}, {"index": 96, "answer": "tight"},
               {"index": 104, "answer": "easy"}]
    assert disagreement(tighter, "right") == "tighter"
    agree = [{"index": 110, "answer": "very_tight"}, {"index": 100, "answer": "tight"},
             {"index": 90, "answer": "easy"}]
    assert disagreement(agree, "right") is None
    assert disagreement(looser[:2], "right") is None  # too few


def run_session(db: Path, start: datetime, right_kg: float, left_kg: float) -> Events:
    events = Events()
    box = make_sim(NO_ASK, listeners=[events], sensor=True, history=db, start=start)
    box.add_script(parse_script(
        f"press@1,press@8,press@8.3,tension@9:{right_kg},tension@69:0,press@80,press@88,"
        f"press@88.3,tension@89:{left_kg}", SENSOR_ACTIONS))
    box.loop.run(until=400, stop_when_done=True)
    box.close()
    return events


def test_index_and_asymmetry_reach_the_history(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    day = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    first = run_session(db, day, 6.0, 6.0)
    session = first.kind("session")[0]
    assert session["legs"]["right"]["settled"] == pytest.approx(6.0, abs=0.3)
    assert session["legs"]["asymmetry"]["settled"] is not None
    run_session(db, day + timedelta(days=1), 8.0, 6.0)  # the right leg needs more force
    with History(db) as h:
        latest, oldest = h.recent(2)
        table = history_table(h, day + timedelta(days=2), UTC)
        stats = latest_tightness(h)  # the MQTT stats (Home Assistant sensors)
    right0 = next(x for x in oldest.holds if x.leg == "right")
    assert right0.index == pytest.approx(100.0)  # the first weeks start here
    right, left = (next(x for x in latest.holds if x.leg == leg) for leg in ("right", "left"))
    assert right.index is not None and right.index > 110
    assert left.index == pytest.approx(100.0, abs=5)
    assert right.relax_30 is not None and 20 <= right.relax_30 <= 35
    data = json.loads(to_json([latest]))[0]
    assert data["legs"]["asymmetry"]["index"] > 5
    assert data["holds"][0]["index"] == right.index
    out = tmp_path / "h.csv"
    to_csv([latest], out)
    header, row = out.read_text().splitlines()[:2]
    assert header.endswith(",settled,relax_30,relax_45,relax_end,tau_s,fit,tension_s,index")
    assert row.split(",")[-1] == str(right.index)
    assert "tightness index" in table and "R-L +" in table
    assert stats["right"] == right.index and stats["left"] == left.index
    assert stats["asymmetry"] == data["legs"]["asymmetry"]["index"] > 5


def test_history_says_when_measure_and_answers_disagree() -> None:
    from device.apps.history_report import disagreement_lines
    from device.core.records import SessionRecord

    def session(day: int, index: float, answer: str) -> SessionRecord:
        start = datetime(2026, 3, day, 8, tzinfo=UTC)
        h = HoldRecord("left", 1, 60, 60, "complete", tightness=answer, settled=6.0,
                       relax_30=25.0, index=index)
        return SessionRecord(start, start + timedelta(minutes=5), "complete", "hamstring", (h,))

    recent = [session(4, 88, "very_tight"), session(3, 95, "tight"), session(2, 101, "easy")]
    assert disagreement_lines(recent) == [
        "Note: over the last three sessions your left leg measured looser on the strap while "
        "your answers said tighter."]
    assert disagreement_lines(recent[:2]) == []


def test_history_report_writes_a_one_page_html(tmp_path: Path) -> None:
    from device.apps.cli import main

    db = tmp_path / "h.db"
    day = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    run_session(db, day, 6.0, 6.0)
    run_session(db, day + timedelta(days=8), 8.0, 6.0)
    out = tmp_path / "report.html"
    assert main(["history", "--history", str(db), "--report", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<script" not in text and "http" not in \
        text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "2026-03-02" in text and "2026-03-09" in text  # two weeks
    assert text.count("<polyline") == 2  # each leg's index
    assert "Magnusson et al. 1996" in text and "Peixoto et al. 2015" in text
    assert "right - left: index +" in text
