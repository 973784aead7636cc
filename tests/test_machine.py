"""The pure state machine, driven by events and times alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from device.core.breath import Pattern
from device.core.config import SessionSettings
from device.core.cues import CueQueue
from device.core.machine import (
    Budget,
    Buzz,
    HoldEnded,
    Light,
    Press,
    SessionEnded,
    SessionMachine,
    Speak,
    State,
    StateChanged,
)
from device.core.routine import load_routine

ROUTINE = load_routine()


def run_until(machine: SessionMachine, now: float, until: float) -> tuple[list, float]:
    """Fire every timer up to ``until``; returns the effects and the new time."""
    out = []
    while (d := machine.next_deadline()) is not None and d <= until:
        now = d
        out += machine.tick(now)
    return out, max(now, until)


def states(effects: list) -> list[tuple[str, str | None]]:
    return [(e.state.value, e.leg) for e in effects if isinstance(e, StateChanged)]


def test_full_session_both_legs() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    out = m.handle(Press.SHORT, 0.0)
    assert m.state is State.SETUP and m.leg == "right"
    more, now = run_until(m, 0.0, 500.0)
    out += more
    assert m.state is State.SWITCH
    out += m.handle(Press.SHORT, now)
    more, now = run_until(m, now, now + 500.0)
    out += more
    assert states(out) == [
        ("setup", "right"), ("hold", "right"), ("ask", "right"), ("switch", "right"),
        ("setup", "left"), ("hold", "left"), ("ask", "left"), ("done", "left"), ("idle", None),
    ]
    holds = [e for e in out if isinstance(e, HoldEnded)]
    assert [(h.leg, h.ended, round(h.held_s, 6)) for h in holds] == [
        ("right", "complete", 60.0), ("left", "complete", 60.0)]
    ended = [e for e in out if isinstance(e, SessionEnded)]
    assert len(ended) == 1 and ended[0].outcome == "complete" and len(ended[0].holds) == 2
    spoken = [e.text for e in out if isinstance(e, Speak)]
    assert any("right foot" in s for s in spoken) and any("left foot" in s for s in spoken)


def test_setup_walks_every_step_in_order_then_holds() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    out = m.handle(Press.SHORT, 0.0)
    more, _ = run_until(m, 0.0, 200.0)
    out += more
    keys = [e.key for e in out if isinstance(e, Speak)]
    steps = [k for k in keys if k.startswith("setup.")]
    expected = [f"setup.{i}" for i in range(1, len(ROUTINE.steps) + 1)]
    assert steps == ["setup.intro", "setup.safety", *expected, "setup.ready"]


def test_double_press_in_setup_goes_to_the_hold_the_safety_line_opening_it() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    m.handle(Press.SHORT, 0.0)
    m.handle(Press.SHORT, 3.0)
    out = m.handle(Press.SHORT, 3.3)
    assert m.state is State.HOLD and m.hold_started_at == 3.3
    assert [e.key for e in out if isinstance(e, Speak)] == ["setup.safety", "hold.start"]
    assert Buzz("start", 0.4) in out
    assert Light(Pattern.BREATH, 3.3) in out


def test_double_press_once_the_safety_line_was_heard_goes_straight_to_the_hold() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    m.handle(Press.SHORT, 0.0)
    run_until(m, 0.0, 30.0)  # the safety line has been said
    m.handle(Press.SHORT, 30.0)
    out = m.handle(Press.SHORT, 30.4)
    assert m.state is State.HOLD and m.hold_started_at == 30.4
    assert [e.key for e in out if isinstance(e, Speak)] == ["hold.start"]


def hold_now(m: SessionMachine) -> float:
    m.handle(Press.SHORT, 0.0)
    m.handle(Press.SHORT, 1.0)
    m.handle(Press.SHORT, 1.3)
    while m.state is not State.HOLD and (d := m.next_deadline()) is not None:
        m.tick(d)
    assert m.state is State.HOLD and m.hold_started_at is not None
    return m.hold_started_at


def test_hold_timeline_beeps_and_ten_seconds_left() -> None:
    m = SessionMachine(ROUTINE, SessionSettings(tick_seconds=5))
    t0 = hold_now(m)
    timeline = []
    while (d := m.next_deadline()) is not None and m.state is State.HOLD:
        timeline += [(round(d - t0, 6), e) for e in m.tick(d)]
    buzz = [(t, e.name) for t, e in timeline if isinstance(e, Buzz)]
    assert [b for b in buzz if b[1] != "tick"] == [(57.0, "count"), (58.0, "count"),
                                                   (59.0, "count"), (60.0, "end")]
    ticks = [t for t, n in buzz if n == "tick"]
    assert ticks == [5.0 * k for k in range(1, 12)]  # none inside the countdown
    ten = [t for t, e in timeline if isinstance(e, Speak) and e.key == "hold.ten_left"]
    assert [round(t, 6) for t in ten] == [50.0]


def test_reminders_spaced_never_twice_in_a_row_and_not_near_the_end() -> None:
    m = SessionMachine(ROUTINE, replace(SessionSettings(), hold_seconds=300))
    t0 = hold_now(m)
    said = []
    while (d := m.next_deadline()) is not None and m.state is State.HOLD:
        said += [(d - t0, e.key) for e in m.tick(d)
                 if isinstance(e, Speak) and e.key.startswith("reminder.")]
    keys = [k for _, k in said]
    assert len(keys) == 2  # a long hold carries two reminders, the rest come later
    assert keys[0] != keys[1]
    times = [t for t, _ in said]
    assert all(b - a >= 20 - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert max(times) < 300 - 10


def test_press_in_hold_ends_it_early() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    t0 = hold_now(m)
    out = m.handle(Press.SHORT, t0 + 42.5)
    hold = next(e for e in out if isinstance(e, HoldEnded))
    assert hold.ended == "early" and hold.held_s == pytest.approx(42.5)
    assert m.state is State.ASK


@pytest.mark.parametrize("where", ["setup", "hold", "ask", "switch"])
def test_long_press_cancels_in_each_state(where: str) -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    m.handle(Press.SHORT, 0.0)
    now = 1.0
    if where in ("hold", "ask", "switch"):
        now = hold_now(m)
    if where in ("ask", "switch"):
        now += 61
        m.tick(now)
    if where == "switch":
        now += 30
        m.tick(now)
    assert m.state.value == where
    out = m.handle(Press.LONG, now + 0.5)
    assert m.state is State.CANCELLED
    ended = [e for e in out if isinstance(e, SessionEnded)]
    assert ended and ended[0].outcome == "cancelled"
    assert Light(Pattern.OFF, now + 0.5) in out
    more, _ = run_until(m, now, now + 30)
    assert m.state is State.IDLE and m.next_deadline() is None
    assert not any(isinstance(e, Speak) for e in more)  # nothing of the old session goes on


def test_long_press_in_idle_cycles_the_next_sessions_hold() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    said = []
    for t in (5.0, 10.0, 15.0, 20.0):
        said += [e.text for e in m.handle(Press.LONG, t) if isinstance(e, Speak)]
        assert m.state is State.IDLE
    assert said == ["Next session only: two minutes, both legs.",
                    "Next session only: three minutes, both legs.",
                    "Next session only: five minutes, both legs.",
                    "Next session only: one minute, both legs."]
    m.handle(Press.LONG, 25.0)  # two minutes
    m.handle(Press.SHORT, 30.0)
    out, _ = run_until(m, 30.0, 2000.0)
    assert {e.planned_s for e in out if isinstance(e, HoldEnded)} == {120.0}


def test_auto_switch_goes_on_by_itself() -> None:
    m = SessionMachine(ROUTINE, SessionSettings(switch="auto", switch_pause_seconds=10))
    m.handle(Press.SHORT, 0.0)
    out, _ = run_until(m, 0.0, 1000.0)
    assert [s for s in states(out) if s[0] == "hold"] == [("hold", "right"), ("hold", "left")]
    assert m.state is State.IDLE


def test_rounds_and_leg_order() -> None:
    m = SessionMachine(ROUTINE, SessionSettings(switch="auto", rounds=2, legs=("left", "right")))
    m.handle(Press.SHORT, 0.0)
    out, _ = run_until(m, 0.0, 5000.0)
    holds = [(e.leg, e.round) for e in out if isinstance(e, HoldEnded)]
    assert holds == [("left", 1), ("right", 1), ("left", 2), ("right", 2)]
    # a later round of the same leg hears the short set-up
    keys = [e.key for e in out if isinstance(e, Speak)]
    assert keys.count("setup.1") == 1 and keys.count("setup.switch.1") == 3
    assert any(isinstance(e, Speak) and "round 2" in e.text.lower() for e in out)


def test_interrupt_records_the_session() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    hold_now(m)
    out = m.interrupt(20.0)
    assert [e.outcome for e in out if isinstance(e, SessionEnded)] == ["interrupted"]
    assert m.state is State.IDLE and m.interrupt(21.0) == []


def test_per_leg_hold_plan() -> None:
    m = SessionMachine(ROUTINE, SessionSettings(switch="auto"),
                       plan_hold=lambda leg: 75 if leg == "right" else 60)
    m.handle(Press.SHORT, 0.0)
    out, _ = run_until(m, 0.0, 1000.0)
    assert [(e.leg, e.planned_s) for e in out if isinstance(e, HoldEnded)] == [
        ("right", 75.0), ("left", 60.0)]


def test_press_begun_in_a_hold_ends_it_and_does_not_also_switch() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    t0 = hold_now(m)
    out = m.handle(Press.SHORT, t0 + 60.05, pressed_at=t0 + 59.95)  # released after the end
    holds = [e for e in out if isinstance(e, HoldEnded)]
    assert [(h.ended, round(h.held_s, 6)) for h in holds] == [("complete", 60.0)]
    assert m.state is State.ASK


def test_every_line_fills_the_leg_placeholders() -> None:
    from dataclasses import replace as dc_replace

    routine = dc_replace(ROUTINE, ready="{Leg} ready.", hold_start="{leg} hold.",
                         ten_left="{Leg}: ten.", finish="{leg} done.", cancel="{leg} off.")
    m = SessionMachine(routine, SessionSettings(switch="auto"))
    out = m.handle(Press.SHORT, 0.0)
    more, _ = run_until(m, 0.0, 1000.0)
    texts = [e.text for e in out + more if isinstance(e, Speak)]
    assert not [t for t in texts if "{" in t]
    assert "Right ready." in texts and "Left: ten." in texts and "left done." in texts
    m2 = SessionMachine(routine, SessionSettings())
    m2.handle(Press.SHORT, 0.0)
    cancel = [e.text for e in m2.handle(Press.LONG, 5.0) if isinstance(e, Speak)]
    assert cancel[-1] == "right off."


@pytest.mark.parametrize("how", ["cancelled", "interrupted"])
def test_the_hold_in_progress_is_recorded_when_the_session_stops(how: str) -> None:
    m = SessionMachine(ROUTINE, SessionSettings(hold_seconds=90))
    t0 = hold_now(m)
    out = m.handle(Press.LONG, t0 + 30.0) if how == "cancelled" else m.interrupt(t0 + 30.0)
    holds = [e for e in out if isinstance(e, HoldEnded)]
    assert [(h.leg, h.round, h.planned_s, h.ended) for h in holds] == [("right", 1, 90.0, how)]
    assert holds[0].held_s == pytest.approx(30.0)
    ended = next(e for e in out if isinstance(e, SessionEnded))
    assert ended.outcome == how and ended.holds == tuple(holds)
    assert out.index(holds[0]) < out.index(ended)


def test_a_waiting_hold_clock_counts_up_to_where_it_stopped_when_cancelled() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    t0 = hold_now(m)
    m.pause_hold(t0 + 12.0)
    out = m.handle(Press.LONG, t0 + 100.0)
    hold = next(e for e in out if isinstance(e, HoldEnded))
    assert hold.ended == "cancelled" and hold.held_s == pytest.approx(12.0)


def test_no_hold_is_recorded_when_the_session_stops_outside_a_hold() -> None:
    m = SessionMachine(ROUTINE, SessionSettings())
    m.handle(Press.SHORT, 0.0)  # setup
    out = m.handle(Press.LONG, 3.0)
    assert not any(isinstance(e, HoldEnded) for e in out)
    assert next(e for e in out if isinstance(e, SessionEnded)).holds == ()


def test_a_paused_hold_clock_moves_its_talk_budget_with_it() -> None:
    # the timing lines reserved in the budget wait with the clock and come as much later
    # as it stood still; the speech already spent in the hold still counts
    m = SessionMachine(ROUTINE, SessionSettings(hold_seconds=60))
    m.handle(Press.SHORT, 0.0)
    out = m.handle(Press.SHORT, 0.5) + m.handle(Press.SHORT, 0.7)  # double press: the hold
    assert m.state is State.HOLD
    start = m.hold_started_at
    assert start is not None
    planned = next(e for e in out if isinstance(e, Budget))
    ten_left = max(at for at, _ in planned.reserved)
    assert ten_left == pytest.approx(start + 50.0)
    paused = next(e for e in m.pause_hold(start + 20.0) if isinstance(e, Budget))
    assert paused.keep_spent and max(at for at, _ in paused.reserved) == float("inf")
    resumed = next(e for e in m.resume_hold(start + 32.0) if isinstance(e, Budget))
    assert resumed.keep_spent
    assert max(at for at, _ in resumed.reserved) == pytest.approx(ten_left + 12.0)
    assert [at for at, _ in resumed.reserved if at <= start + 20.0] == [
        at for at, _ in planned.reserved if at <= start + 20.0]  # lines already said
    queue = CueQueue(rate_wpm=160)
    queue.budget(planned.start, planned.limit_s, planned.reserved)
    queue.spent_s = 7.5
    queue.budget(resumed.start, resumed.limit_s, resumed.reserved, resumed.keep_spent)
    assert queue.spent_s == 7.5
    queue.budget(start + 200, 15.0)
    assert queue.spent_s == 0.0  # a new hold's budget starts from nothing
