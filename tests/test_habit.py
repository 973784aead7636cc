"""History wired into the box: sessions recorded, summary spoken, holds grow, nudge."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from device.addons.habit import attach as attach_history
from device.apps.builder import build_box
from device.apps.cli import main
from device.apps.sim import make_sim
from device.box.clock import VirtualClock, wall_clock
from device.core.breath import Pattern
from device.core.config import Config, with_overrides
from tests.conftest import Events

BERLIN = ZoneInfo("Europe/Berlin")
# start, skip set-up (double press), after the tightness question move to the left leg and
# skip its set-up too
SESSION = "press@1,press@2,press@2.3,press@90,press@91,press@91.3"


def run_session(path: Path, start: datetime, config: Config | None = None,
                script: str = SESSION) -> Events:
    events = Events()
    config = config or Config()
    clock = VirtualClock()
    box = make_sim(config, clock=clock, listeners=[events])
    habit = attach_history(box.port, path, wall_clock(clock, start))
    for item in script.split(","):
        at = float(item.split("@")[1])
        box.loop.schedule(at, box.press_now)
    box.loop.run(stop_when_done=True, until=3000)
    box.close()
    habit.history.close()
    return events


def test_two_headless_sessions_show_in_history_json(tmp_path: Path, capsys) -> None:
    db = tmp_path / "history.db"
    for day in ("2026-11-24T07:00:00+01:00", "2026-11-25T07:00:00+01:00"):
        assert main(["sim", "--headless", "--quiet", "--script", SESSION,
                     "--history", str(db), "--start", day]) == 0
    capsys.readouterr()
    assert main(["history", "--history", str(db), "--json"]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert len(sessions) == 2
    for s in sessions:
        assert s["outcome"] == "complete"
        assert [(h["leg"], round(h["held_s"], 6)) for h in s["holds"]] == [
            ("right", 60.0), ("left", 60.0)]
    assert main(["history", "--history", str(db)]) == 0
    assert "streak" in capsys.readouterr().out.lower()


def test_summary_counts_this_week_and_streak(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    start = datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN)  # a Monday
    config = with_overrides(Config(), history={"timezone": "Europe/Berlin"})
    for day in range(3):
        events = run_session(db, start + timedelta(days=day), config)
    summary = [e["text"] for e in events.kind("speak") if e["key"] == "summary"]
    assert len(summary) == 1
    assert "3 sessions this week" in summary[0] and "3 day streak" in summary[0]
    assert "right leg" in summary[0].lower()


def test_cancelled_session_is_recorded_and_not_summarised(tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.db"
    events = run_session(db, datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN),
                         script="press@1,press@2")
    # stop the box mid-hold by a long press: do it with the CLI instead
    assert main(["sim", "--headless", "--quiet", "--script", "press@1,long@20",
                 "--history", str(db)]) == 0
    capsys.readouterr()
    main(["history", "--history", str(db), "--json"])
    outcomes = sorted(s["outcome"] for s in json.loads(capsys.readouterr().out))
    assert outcomes == ["cancelled"]
    assert not [e for e in events.kind("speak") if e["key"] == "summary"]


def test_holds_grow_after_steady_sessions_per_leg(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    config = with_overrides(Config(), history={"progression": "steady", "sessions_to_grow": 2,
                                               "step_seconds": 15})
    start = datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN)
    # session 1 and 2: right complete, left ended early at 30 s
    script = SESSION + ",press@121.4"
    for day in range(2):
        run_session(db, start + timedelta(days=day), config, script)
    events = run_session(db, start + timedelta(days=2), config,
                         "press@1,press@2,press@2.3,press@105,press@106,press@106.3")
    holds = [(h["leg"], h["planned_s"]) for h in events.kind("hold")]
    assert holds == [("right", 75.0), ("left", 60.0)]
    lines = [e["text"] for e in events.kind("speak") if e["key"] == "progress"]
    assert lines == ["Your right-leg hold grows to 75 seconds."]


def test_progression_off_keeps_the_configured_hold(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    start = datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN)
    for day in range(4):
        events = run_session(db, start + timedelta(days=day))
    assert {h["planned_s"] for h in events.kind("hold")} == {60.0}


def test_unwritable_history_never_stops_a_session(tmp_path: Path) -> None:
    db = tmp_path / "is-a-folder.db"
    db.mkdir()
    events = run_session(db, datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN))
    assert [h["ended"] for h in events.kind("hold")] == ["complete", "complete"]
    assert events.kind("history")[0]["saved"] is False
    assert [e for e in events.kind("speak") if e["key"] == "summary"]


def test_nudge_light_when_no_session_by_the_set_time(tmp_path: Path) -> None:
    events = Events()
    config = with_overrides(Config(), history={"nudge_at": "19:00",
                                               "timezone": "Europe/Berlin"})
    clock = VirtualClock()
    box = make_sim(config, clock=clock, listeners=[events])
    start = datetime(2026, 11, 23, 18, 0, tzinfo=BERLIN)
    attach_history(box.port, tmp_path / "h.db", wall_clock(clock, start))
    box.loop.run(until=3590)  # 18:59:50
    assert box.loop.idle_pattern is Pattern.OFF and box.led_pin.state == 0.0
    box.loop.run(until=3700)
    nudges = events.kind("nudge")
    assert nudges and nudges[0]["on"] is True and abs(nudges[0]["t"] - 3600) < 1e-6
    assert box.loop.idle_pattern is Pattern.NUDGE
    # a session today stops the nudge afterwards
    box.loop.schedule(3800, box.press_now)
    box.loop.schedule(3801, box.press_now)
    box.loop.schedule(3870, box.press_now)
    box.loop.schedule(3871, box.press_now)
    box.loop.run(until=4500)
    assert [n["on"] for n in events.kind("nudge")][-1] is False
    assert box.led_pin.state == 0.0
    box.close()


def test_nudge_line_is_the_routines(tmp_path: Path) -> None:
    from dataclasses import replace

    from device.core.routine import load_routine

    def spoken_nudges(routine_nudge: str | None) -> list[str]:
        events = Events()
        config = with_overrides(Config(), history={"nudge_at": "19:00", "nudge_voice": True,
                                                   "timezone": "Europe/Berlin"})
        clock = VirtualClock()
        routine = load_routine()
        if routine_nudge is not None:
            routine = replace(routine, nudge=routine_nudge)
        box = build_box(config, clock=clock, listeners=[events], routine=routine)
        start = datetime(2026, 11, 23, 18, 0, tzinfo=BERLIN)
        habit = attach_history(box.port, tmp_path / f"{routine_nudge}.db",
                               wall_clock(clock, start))
        box.loop.run(until=3700)
        box.close()
        habit.history.close()
        return [e["text"] for e in events.kind("speak") if e["key"] == "nudge"]

    assert spoken_nudges(None) == ["Your hamstrings are waiting. One short stretch today?"]
    assert spoken_nudges("Strap time, whenever you like.") == ["Strap time, whenever you like."]


# ---- a box with no clock (issue 25): stamped, corrected at sync, counted only when trusted --


def _trusting_box(path: Path, config: Config, synced: bool):  # noqa: ANN202 - test helper
    from dataclasses import dataclass

    from device.core.timetrust import TimeTrust
    from tests.test_timetrust import FakeSource

    events = Events()
    clock = VirtualClock()

    @dataclass
    class LoopSource(FakeSource):
        """The fake source's monotonic clock is the box's virtual one."""

        def monotonic(self) -> float:
            return clock.now()

    src = LoopSource(saved=datetime(2026, 2, 1, 22, 15, tzinfo=BERLIN),
                     true_boot=datetime(2026, 11, 23, 18, 0, tzinfo=BERLIN), synced=synced)
    box = make_sim(config, clock=clock, listeners=[events])
    box.port.provide(TimeTrust(src, recheck_s=0.0))  # as build_box does for ``run``
    habit = attach_history(box.port, path, src.wall)
    return box, habit, src, events


def _session_at(box, at: float) -> None:  # noqa: ANN001
    for dt in (0.0, 1.0, 1.3, 89.0, 90.0, 90.3):  # as SESSION, from ``at``
        box.loop.schedule(at + dt, box.press_now)


def test_untrusted_session_is_kept_marked_and_counted_nowhere(tmp_path: Path) -> None:
    config = with_overrides(Config(), history={"nudge_at": "19:00",
                                               "timezone": "Europe/Berlin"})
    box, habit, src, events = _trusting_box(tmp_path / "h.db", config, synced=False)
    _session_at(box, 10.0)
    box.loop.run(until=600)
    habit.wait_for_writes()
    [stored] = habit.history.recent()
    assert stored.outcome == "complete" and stored.clock == "untrusted"
    assert stored.started.date() == src.saved.date()  # the wrong date, kept as recorded
    assert habit.tally.starts() == [] and habit.history.complete_starts() == []
    summary = [e["text"] for e in events.kind("speak") if e["key"] == "summary"]
    assert summary and "this week" not in summary[0] and "streak" not in summary[0]
    box.loop.run(until=2 * 86400)  # past 19:00 by its wrong clock, twice: no date, no nudge
    assert events.kind("nudge") == []
    box.close()


def test_sessions_before_sync_are_dated_again_at_sync(tmp_path: Path) -> None:
    config = with_overrides(Config(), history={"timezone": "Europe/Berlin"})
    box, habit, src, events = _trusting_box(tmp_path / "h.db", config, synced=False)
    _session_at(box, 10.0)
    box.loop.run(until=600)
    habit.wait_for_writes()
    src.synced = True  # the network came: the wall clock jumps to the truth
    box.loop.run(until=700)  # the box notices on its own (CLOCK_CHECK_S), off the loop
    import time

    for _ in range(500):  # the correcting thread (real time; no virtual time passes)
        if habit.tally.starts():  # the thread dates them again, then counts them
            break
        time.sleep(0.01)
    [fixed] = habit.history.recent()
    assert fixed.clock == "corrected"
    assert abs((fixed.started - (src.true_boot + timedelta(seconds=10))).total_seconds()) < 1
    assert habit.tally.starts() == [fixed.started]  # in the streak from now on
    _session_at(box, 800.0)
    box.loop.run(until=1400)
    habit.wait_for_writes()
    newest = habit.history.recent()[0]
    assert newest.clock == "synced"
    summary = [e["text"] for e in events.kind("speak") if e["key"] == "summary"]
    assert "2 sessions this week" in summary[-1]
    box.close()


def test_a_phone_lends_its_time_and_the_session_is_dated_by_it(tmp_path: Path) -> None:
    from device.core.timetrust import TimeTrust

    config = with_overrides(Config(), history={"timezone": "Europe/Berlin"})
    box, habit, src, events = _trusting_box(tmp_path / "h.db", config, synced=False)
    trust = box.port.find(TimeTrust)
    assert trust is not None
    box.loop.run(until=5)
    trust.phone_time(src.truth())  # the page sent the phone's Date.now()
    _session_at(box, 10.0)
    box.loop.run(until=600)
    habit.wait_for_writes()
    [stored] = habit.history.recent()
    assert stored.clock == "phone"
    assert abs((stored.started - (src.true_boot + timedelta(seconds=10))).total_seconds()) < 1
    assert habit.tally.starts() == [stored.started]  # counted: its date is trusted
    summary = [e["text"] for e in events.kind("speak") if e["key"] == "summary"]
    assert "first session this week" in summary[-1]  # with a date, the week is counted
    box.close()


def test_a_phone_lending_its_time_dates_the_earlier_sessions_at_once(tmp_path: Path) -> None:
    from device.core.timetrust import TimeTrust

    config = with_overrides(Config(), history={"timezone": "Europe/Berlin"})
    box, habit, src, events = _trusting_box(tmp_path / "h.db", config, synced=False)
    _session_at(box, 10.0)
    box.loop.run(until=600)
    habit.wait_for_writes()
    assert habit.history.recent()[0].clock == "untrusted"
    trust = box.port.find(TimeTrust)
    assert trust is not None
    trust.phone_time(src.truth())  # as the page's POST /api/clock does, from its thread
    [fixed] = habit.history.recent()
    assert fixed.clock == "corrected"
    assert abs((fixed.started - (src.true_boot + timedelta(seconds=10))).total_seconds()) < 1
    box.close()
