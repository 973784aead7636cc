"""Issue 20, heard as whole transcripts on virtual time: the strap read for the whole
session, stopping one action away, release then ask, what the person set wins, quiet by
design, a strap clock that never goes silent, and the right words in every case."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.apps.sim import make_sim
from device.core.config import Config, with_overrides
from device.core.script import SENSOR_ACTIONS, parse_script
from tests.conftest import Events
from tests.test_coaching import HOLD_AT, SKIP_AFTER_SAFETY, said, spans

ONE_LEG = with_overrides(Config(), session={"legs": ["right"]})
NO_ASK = with_overrides(ONE_LEG, session={"ask_tightness": False})


def run(script: str, config: Config = ONE_LEG, sensor: bool = True, until: float = 900,
        history: Path | None = None, extra: tuple[tuple[float, object], ...] = ()) -> Events:
    events = Events()
    box = make_sim(config, listeners=[events], sensor=sensor, history=history)
    box.add_script(parse_script(script, SENSOR_ACTIONS if sensor else None))
    for at, action in extra:
        box.loop.schedule(at, lambda a=action, b=box: a(b))  # type: ignore[operator]
    box.loop.run(until=until, stop_when_done=True)
    box.close()
    return events


def keys(events: Events, start: float = 0.0, end: float = 1e9) -> list[str]:
    return [e["key"] for e in said(events, start, end)]


def cues(events: Events, start: float = 0.0, end: float = 1e9) -> list[tuple[float, str]]:
    return [(c["t"], c["cue"]) for c in events.kind("coach") if start <= c["t"] < end]


# ---- one reading of the strap for the whole session ---------------------------------------


def test_overpull_then_back_to_the_settled_level_is_praised_never_called_slack() -> None:
    # the issue: held at 5 kg, a pull to 13 kg held, eased back to the 5 kg started at
    script = SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:5,tension@30:13,tension@45:5"
    events = run(script, NO_ASK)
    start, end, _ = spans(events, "hold")[0]
    found = cues(events, start, end)
    names = [c for _, c in found]
    assert names[0] == "overpull" and 30 < found[0][0] < 32
    # the over-pull lasts as long as the pull (the level it raised is no new reference):
    # said again 8 s on, when the hold's moving level has long taken in the 13 kg
    assert [t for t, c in found if c == "overpull"][-1] > 38
    assert "slack" not in names and "coach.slack" not in keys(events, start, end)
    assert "eased" in names and 45 < dict((c, t) for t, c in found)["eased"] < 48
    assert "coach.eased" in keys(events, start, end)


def test_25_kg_in_the_set_up_is_cued_within_two_seconds() -> None:
    # the leg goes up at "pulling gently on the strap" (set-up step 3), far too hard
    events = run("press@1,tension@32:25,tension@50:5", NO_ASK)
    setup = spans(events, "setup")[0]
    assert setup[0] < 32 < setup[1]
    first = next(e for e in said(events) if e["key"] == "coach.overpull")
    assert first["t"] - 32 <= 2.0 and first["t"] < setup[1]
    # a step cut off by the safety line is said again before the next one, never after
    steps = [int(k.split(".")[1]) for k in keys(events, 0, setup[1])
             if k.startswith("setup.") and k.split(".")[1].isdigit()]
    assert steps == sorted(steps) and 3 in steps


def test_bouncing_in_the_set_up_is_noticed_and_cued() -> None:
    events = run("press@1,tension@32:6,bounce@40:6", NO_ASK)
    setup = spans(events, "setup")[0]
    noticed = [t for t, c in cues(events, *setup[:2]) if c == "bounce"]
    assert noticed and noticed[0] - 40 <= 2.5
    assert "coach.bounce" in [d["key"] for d in events.kind("speak")
                              + events.kind("speak_dropped")]


def test_a_yank_from_slack_is_cued_within_two_seconds() -> None:
    # settled at 5, the strap slack for 12 s, then a sudden pull to well over twice 5
    script = SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:5,tension@30:0,tension@42:12"
    events = run(script, NO_ASK)
    start, end, _ = spans(events, "hold")[0]
    yank = [e for e in said(events, start, end) if e["key"] == "coach.yank"]
    assert yank and yank[0]["t"] - 42 <= 2.0
    assert "sudden" in yank[0]["text"]


def test_the_slow_fall_of_force_in_a_still_hold_is_never_slack() -> None:
    # held still at 6 kg: the tissue relaxes, the force falls by 40 %, fast at first
    def relax(box) -> None:  # noqa: ANN001
        model, now = box.strap.model, box.loop.clock.now()
        model.set_level(now, 4.6, ramp_s=15.0)
        box.loop.schedule(now - box.loop.origin + 15.0,
                          lambda: model.set_level(box.loop.clock.now(), 3.6, ramp_s=45.0))

    config = with_overrides(NO_ASK, session={"hold_seconds": 120})
    events = run(SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:6", config, extra=((30.0, relax),))
    start, end, _ = spans(events, "hold")[0]
    assert [c for _, c in cues(events, start, end)] == []
    tension = [e["value"] for e in events.kind("tension") if start + 80 < e["t"] < end - 5]
    assert max(tension) < 4.0  # it did fall


# ---- stopping is always one action away ---------------------------------------------------


def test_the_safety_line_says_how_to_stop() -> None:
    events = run("press@1", NO_ASK, sensor=False, until=30)
    text = next(e["text"] for e in said(events) if e["key"] == "setup.safety")
    assert "hold the button" in text and "pain" in text


def test_lowering_the_leg_twice_asks_whether_to_stop_and_ends_the_hold_gently() -> None:
    config = with_overrides(NO_ASK, session={"hold_seconds": 120})
    script = SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:6,tension@30:0,tension@37:6,tension@50:0"
    events = run(script, config)
    start, end, _ = spans(events, "hold")[0]
    heard = keys(events, start, end + 10)
    assert heard.count("coach.slack") == 1  # "lift it back up": once
    ask = next(e for e in said(events) if e["key"] == "hold.stop_ask")
    assert 52 <= ask["t"] < 54 and "Hold the button to stop" in ask["text"]
    hold = events.kind("hold")[0]
    assert hold["ended"] == "early"
    assert end == pytest.approx(ask["t"] + ask["duration_s"] + 10.0, abs=0.01)
    assert "hold.ended_early" in heard


def test_a_press_after_the_stop_question_carries_on() -> None:
    config = with_overrides(NO_ASK, session={"hold_seconds": 120})
    script = (SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:6,tension@30:0,tension@37:6,"
              "tension@50:0,press@60,tension@61:6")
    events = run(script, config)
    hold = events.kind("hold")[0]
    assert hold["ended"] == "complete" and hold["held_s"] == 120.0
    assert "hold.stop_go_on" in keys(events)


def test_a_long_press_after_the_stop_question_stops() -> None:
    config = with_overrides(NO_ASK, session={"hold_seconds": 120})
    script = (SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:6,tension@30:0,tension@37:6,"
              "tension@50:0,long@58")
    events = run(script, config)
    assert events.kind("session")[0]["outcome"] == "cancelled"


def test_a_long_press_during_the_question_records_it_hurt(tmp_path: Path) -> None:
    from device.store.sqlite import History

    db = tmp_path / "h.db"
    config = with_overrides(Config(), session={"hold_seconds": 90})
    # right hold 16.4 .. 106.4; the question from about 116 s; a long press at 120 s; a
    # long press at 150 s (waiting to go on) stops the session
    events = run(SKIP_AFTER_SAFETY + ",long@120,long@150", config, sensor=False, history=db,
                 until=400)
    answer = events.kind("tightness")[0]
    assert answer["answer"] == "hurt" and answer["next_s"] == 90.0  # not lengthened
    line = next(e["text"] for e in said(events) if e["key"] == "ask.hurt")
    assert "lower the leg and stop" in line and "physiotherapist" in line
    assert events.states()[3:5] == ["switch", "cancelled"]  # it waited for a press
    assert not any(e["key"] == "switch" and "moment" in e["text"] for e in said(events))
    with History(db) as h:
        holds = h.recent(1)[0].holds
    assert holds[0].hurt and holds[0].tightness is None
    assert holds[0].base_s == 90.0
    # the next session (a fresh box) holds the right leg no longer than before
    events = run(SKIP_AFTER_SAFETY + ",long@200", config, sensor=False, history=db, until=300)
    assert events.kind("hold")[0]["planned_s"] == 90.0


def test_release_first_then_the_question() -> None:
    events = run(SKIP_AFTER_SAFETY, ONE_LEG, sensor=False, until=200)
    release = next(e for e in said(events) if e["key"] == "ask.release")
    question = next(e for e in said(events) if e["key"] == "ask.question")
    end = spans(events, "hold")[0][1]
    assert end < release["t"] < question["t"]
    # time to lower the leg between them
    assert question["t"] - (release["t"] + release["duration_s"]) >= 4.0 - 1e-6
    assert "Release the right leg slowly" in release["text"]
    # and the line after the answer does not say release again
    assert not [e for e in said(events, question["t"]) if "Release" in e["text"]]


def test_stray_presses_are_no_answers() -> None:
    # a double press ends the hold early at 40 s (its second press is part of the gesture),
    # and a press 1 s into the question: neither is an answer
    config = with_overrides(ONE_LEG, session={"answer_seconds": 5})
    probe = run(SKIP_AFTER_SAFETY + ",press@40,press@40.3", config, sensor=False, until=200)
    question = next(e for e in said(probe) if e["key"] == "ask.question")["t"]
    events = run(SKIP_AFTER_SAFETY + f",press@40,press@40.3,press@{question + 0.9:.2f}",
                 config, sensor=False, until=200)
    assert [a["answer"] for a in events.kind("tightness")] == ["none"]
    # a press after the first 1.5 s of the question is an answer
    events = run(SKIP_AFTER_SAFETY + f",press@40,press@40.3,press@{question + 1.7:.2f}",
                 config, sensor=False, until=200)
    assert [a["answer"] for a in events.kind("tightness")] == ["easy"]


def test_a_hold_given_up_before_half_never_lengthens_the_next() -> None:
    probe = run(SKIP_AFTER_SAFETY + ",press@43.4", ONE_LEG, sensor=False, until=200)
    question = next(e for e in said(probe) if e["key"] == "ask.question")["t"]
    at = question + 2
    events = run(SKIP_AFTER_SAFETY + f",press@43.4,press@{at:.2f},press@{at + 0.3:.2f},"
                 f"press@{at + 0.6:.2f}", ONE_LEG, sensor=False, until=200)
    hold = events.kind("hold")[0]
    assert hold["ended"] == "early" and hold["held_s"] == pytest.approx(27.0, abs=0.2)
    answer = events.kind("tightness")[0]
    assert answer["answer"] == "very_tight" and answer["next_s"] == 60.0


# ---- what the person set wins ---------------------------------------------------------------


def test_a_saved_hold_length_beats_an_earlier_answer(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    both = with_overrides(Config(), session={"switch": "auto"})
    probe = run("press@1", both, sensor=False, until=300)
    question = next(e for e in said(probe) if e["key"] == "ask.question")["t"]
    # the right leg answered "tight" (keeps 60 s) in the first session
    run(f"press@1,press@{question + 2:.2f},press@{question + 2.3:.2f}", both, sensor=False,
        history=db, until=600)
    # then 90 s saved (file, page or MQTT): both legs hold 90 s from the next session
    saved = with_overrides(both, session={"hold_seconds": 90})
    events = run("press@1", saved, sensor=False, history=db, until=900)
    assert [(h["leg"], h["planned_s"]) for h in events.kind("hold")] == [
        ("right", 90.0), ("left", 90.0)]


def test_a_setting_saved_while_the_box_runs_beats_this_runs_answers() -> None:
    both = with_overrides(Config(), session={"switch": "auto"})
    probe = run("press@1", both, sensor=False, until=300)
    question = next(e for e in said(probe) if e["key"] == "ask.question")["t"]
    events = Events()
    box = make_sim(both, listeners=[events])
    box.add_script(parse_script(f"press@1,press@{question + 2:.2f},press@{question + 2.3:.2f}"))
    box.loop.run(until=400, stop_when_done=True)
    assert events.kind("tightness")[0]["answer"] == "tight"
    assert box.loop.hold_choice("right") == 60.0  # this run's answer
    box.loop.reload(with_overrides(both, session={"hold_seconds": 90}))
    box.add_script(parse_script("press@420"))
    box.loop.run(until=900, stop_when_done=True)
    box.close()
    assert [h["planned_s"] for h in events.kind("hold")][2:] == [90.0, 90.0]


def test_an_idle_long_press_chooses_the_next_session_only_and_says_both_legs() -> None:
    config = with_overrides(Config(), session={"legs": ["right"], "ask_tightness": False})
    events = run("long@1,press@5,press@20,press@20.3,press@400,press@415,press@415.3",
                 config, sensor=False, until=900)
    line = next(e["text"] for e in said(events) if e["key"] == "idle.hold_length")
    assert line == "Next session only: two minutes, both legs."
    assert [h["planned_s"] for h in events.kind("hold")] == [120.0, 60.0]


# ---- the strap clock never goes silent -------------------------------------------------------


def test_a_paused_strap_clock_speaks_within_ten_seconds_even_in_the_countdown() -> None:
    # the leg lowered 5 s before the end: the clock waits, says so at once, and the hold
    # ends (early, with the time held) after sensor.paused_limit_seconds
    config = with_overrides(NO_ASK, sensor={"hold_clock": "strap", "paused_limit_seconds": 20})
    end = HOLD_AT + 60
    events = run(SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:6,tension@{end - 5}:0", config)
    paused = [e["t"] for e in events.kind("hold_clock") if not e["running"]]
    assert paused
    prompt = [e["t"] for e in said(events) if e["key"] == "hold.paused"]
    assert prompt and prompt[0] - (end - 5) <= 10.0
    hold = events.kind("hold")[0]
    assert hold["ended"] == "early" and 54 <= hold["held_s"] < 56.5
    # (the clock waits from when the strap went slack, a second before it is sure)
    assert hold["t"] - (paused[0] - 1.0) == pytest.approx(20.0, abs=0.3)


# ---- same time in the stretch, and the right words ------------------------------------------


def test_both_legs_are_about_as_long_in_the_stretch_before_their_hold_clocks() -> None:
    # each leg goes up as the voice asks for it (and stays up); released between legs
    both = with_overrides(Config(), session={"switch": "auto", "ask_tightness": False})
    plain = run("press@1", both, sensor=True, until=600)
    right_up = next(e["t"] for e in said(plain) if e["key"] == "setup.3") + 1.0
    probe = run(f"press@1,tension@{right_up}:6", both, sensor=True, until=600)
    right_hold = spans(probe, "hold")[0]
    left_up = next(e["t"] for e in said(probe) if e["key"] == "setup.switch.2") + 1.0
    events = run(f"press@1,tension@{right_up}:6,tension@{right_hold[1] + 0.5}:0,"
                 f"tension@{left_up}:6", both, sensor=True, until=600)
    right, left = spans(events, "hold")[:2]
    before = [right[0] - right_up, left[0] - left_up]
    assert abs(before[0] - before[1]) <= 3.0, before  # (without the strap: 55 s and 25 s)
    plain_before = spans(plain, "hold")[0][0] - right_up
    assert plain_before - before[0] > 20
    # the rest of the first leg's set-up in a few words, then the hold
    keys_right = keys(events, right_up, right[0])
    assert keys_right[-2:] == ["setup.stretch.1", "setup.stretch.2"]
    # the time in the stretch before each hold clock is recorded with the hold
    pre = [h["pre_s"] for h in events.kind("hold")]
    assert pre[0] == pytest.approx(before[0], abs=1.5)
    assert pre[1] == pytest.approx(before[1], abs=1.5)


def test_without_a_strap_every_leg_gets_the_same_set_up_timing() -> None:
    # the first leg's set-up teaches more: later legs wait (quietly, after one "settle"
    # line) until each is as long in the stretch, from the step raising it, as the first
    config = with_overrides(Config(), session={"rounds": 2, "switch": "auto",
                                               "ask_tightness": False})
    events = run("press@1", config, sensor=False, until=1500)
    ups = [e["t"] for e in said(events) if e["key"] in ("setup.3", "setup.switch.2")]
    holds = [s[0] for s in spans(events, "hold")]
    assert len(ups) == len(holds) == 4
    before = [h - u for u, h in zip(ups, holds, strict=True)]
    assert max(before) - min(before) <= 0.01, before  # (was 57.6 s and 27.9 s)
    assert 35 <= before[0] <= 60
    # the wait is quiet: one short line opens it, nothing else until "ready"
    for span in spans(events, "setup")[1:]:
        lines = said(events, *span[:2])
        settle = next(i for i, e in enumerate(lines) if e["key"] == "setup.settle")
        assert [e["key"] for e in lines[settle:]] == ["setup.settle", "setup.ready"]
        gap = lines[settle + 1]["t"] - lines[settle]["t"] - lines[settle]["duration_s"]
        assert gap >= 5.0
    # the time in the stretch before each clock is recorded with the hold
    assert [h["pre_s"] for h in events.kind("hold")] == pytest.approx(before, abs=0.01)


def test_a_strap_in_the_stretch_cuts_a_later_legs_quiet_wait_short() -> None:
    both = with_overrides(Config(), session={"switch": "auto", "ask_tightness": False})
    plain = run("press@1", both, sensor=True, until=600)
    settle = next(e["t"] for e in said(plain) if e["key"] == "setup.settle")
    left_hold = spans(plain, "hold")[1][0]
    assert left_hold - settle > 8  # untouched strap: the full quiet wait
    right_hold = spans(plain, "hold")[0]
    events = run(f"press@1,tension@{right_hold[1] + 0.5}:0,tension@{settle + 1}:6", both,
                 sensor=True, until=600)
    # the leg is in the stretch: "settle" ends, then "ready" and the hold, no quiet wait
    assert left_hold - spans(events, "hold")[1][0] > 8


def test_round_two_opens_with_its_round_and_leg() -> None:
    config = with_overrides(Config(), session={"rounds": 2, "switch": "auto",
                                               "ask_tightness": False})
    events = run("press@1", config, sensor=False, until=900)
    intros = [e["text"] for e in said(events) if e["key"] == "setup.intro"]
    assert intros == ["Right leg first. Let's set up.", "Now the left leg.",
                      "Round two. Right leg.", "Now the left leg."]


def test_a_quick_sessions_first_leg_starts_by_hooking_the_strap() -> None:
    config = with_overrides(Config(), session={"mode": "quick", "switch": "auto"})
    events = run("press@1", config, sensor=False, until=400)
    steps = [e["text"] for e in said(events) if e["key"] == "setup.switch.1"]
    assert steps[0].startswith("Hook the strap around the ball of your right foot")
    assert steps[1] == "Move the strap to the ball of your left foot."


def test_reminder_plans_are_whole_milliseconds_from_the_hold_start() -> None:
    from device.core.config import SessionSettings
    from device.core.machine import Press, SessionMachine
    from device.core.routine import load_routine

    for k in range(40):  # holds starting at awkward times (a double press at any moment)
        m = SessionMachine(load_routine(), SessionSettings(hold_seconds=60 + 15 * (k % 17)))
        t = 1.0 + k * 0.1 + 2.825
        m.handle(Press.SHORT, 0.0)
        m.handle(Press.SHORT, t)
        m.handle(Press.SHORT, t + 0.3)
        start = m.hold_started_at
        assert start is not None
        slots = [x.at - start for x in m._timers if x.kind == "reminder"]
        assert slots and all(abs(s * 1000 - round(s * 1000)) < 1e-6 for s in slots)


def test_a_sensor_replugged_in_the_question_is_noticed_there_and_never_said_inside_it() -> None:
    # unplugged in the hold, replugged as the question starts (about 86 s)
    events = run(SKIP_AFTER_SAFETY + f",tension@{HOLD_AT}:6,unplug@40,replug@85", ONE_LEG)
    ask = spans(events, "ask")[0]
    restored = [e["t"] for e in events.kind("sensor") if e["status"] == "restored"]
    assert restored and ask[0] < restored[0] < ask[1]
    question = next(e for e in said(events) if e["key"] == "ask.question")
    window_end = question["t"] + question["duration_s"] + 5.0
    for e in said(events):
        if e["key"].startswith("sensor."):
            assert not question["t"] <= e["t"] < window_end, e


# ---- quiet by design ---------------------------------------------------------------------------

SAFETY_KEYS = {"setup.safety", "coach.overpull", "coach.yank", "sensor.saturated",
               "hold.stop_ask", "ask.hurt"}  # never held back, outside the talk budget


def _speech(events: list[dict], start: float, end: float) -> list[tuple[float, float, str]]:
    """(from, to, key) of what was actually said in start..end (cut lines end at the cut)."""
    cuts = [c["t"] for c in events if c["kind"] == "speak_cut"]
    out = []
    for e in events:
        if e["kind"] != "speak":
            continue
        a, b = e["t"], e["t"] + e["duration_s"]
        b = min([b, *[t for t in cuts if a < t < b]])
        a, b = max(a, start), min(b, end)
        if b > a:
            out.append((a, b, e["key"]))
    return out


def _random_box(k: int) -> tuple[Config, bool, list[str]]:
    import random

    rng = random.Random(2000 + k)
    sensor = k % 2 == 1
    config = with_overrides(Config(), session={
        "hold_seconds": rng.randrange(60, 301, 5),
        "legs": rng.choice([["right"], ["right", "left"], ["left", "right"]]),
        "rounds": rng.choice([1, 1, 2]),
        "reminder_seconds": rng.choice([0, 10, 20, 45, 60, 120]),
        "ask_tightness": rng.random() < 0.5, "switch": "auto",
    }, breath={"voice_breaths": rng.choice([0, 0, 2])}, light={"hz": 20})
    s = config.session
    per_session = len(s.legs) * s.rounds * (110 + s.hold_seconds + 40) + 60
    items = []
    for n in range(10):
        base = 1.0 + n * per_session
        items.append(f"press@{base}")
        if sensor and n:
            items.append(f"tension@{base - 30}:0")  # the strap let go between sessions
        if rng.random() < 0.5:  # straight to the hold at an awkward moment
            skip = round(base + rng.uniform(16.0, 25.0), 3)
            items += [f"press@{skip}", f"press@{skip + 0.3:.3f}"]
        if sensor:
            items.append(f"tension@{base + 20}:{rng.choice((4, 6, 9))}")
            for _ in range(rng.randint(0, 3)):
                at = round(base + rng.uniform(30, per_session - 80), 1)
                items.append(f"bounce@{at}:{rng.randint(2, 6)}")
    return config, sensor, items


def test_speech_is_at_most_a_quarter_of_every_hold_with_a_long_silence_in_200_sessions() -> None:
    holds_seen = 0
    for k in range(20):
        config, sensor, items = _random_box(k)
        events = run(",".join(items), config, sensor=sensor, until=10 ** 6)
        assert len(events.kind("session")) == 10, k
        for (start, end, _), hold in zip(spans(events, "hold"), events.kind("hold"),
                                         strict=True):
            holds_seen += 1
            planned = hold["planned_s"]
            talk = _speech(events, start, end)
            budgeted = sum(b - a for a, b, key in talk if key not in SAFETY_KEYS)
            assert budgeted <= 0.25 * planned + 1e-6, (k, start, budgeted, planned)
            if planned >= 60 and hold["ended"] == "complete" and not [
                    c for c in events.kind("coach") if start <= c["t"] < end]:
                edges = [start, *[x for a, b, _ in sorted(talk) for x in (a, b)], end]
                gaps = [edges[i + 1] - edges[i] for i in range(0, len(edges), 2)]
                assert max(gaps) >= 20.0 - 1e-6, (k, start, gaps)
            opening = [key for _, _, key in talk][:2]
            assert "hold.start" in opening, (k, start, opening)  # never dropped
    assert holds_seen >= 200


def test_reminder_seconds_is_the_time_between_reminders() -> None:
    for every in (20, 60, 120):
        config = with_overrides(ONE_LEG, session={"hold_seconds": 300, "reminder_seconds": every,
                                                  "ask_tightness": False})
        events = run(SKIP_AFTER_SAFETY, config, sensor=False, until=500)
        start, end, _ = spans(events, "hold")[0]
        times = [e["t"] for e in said(events, start, end) if e["key"].startswith("reminder.")]
        assert 1 <= len(times) <= 2, every
        assert all(b - a >= every - 1e-6 for a, b in zip(times, times[1:], strict=False)), every


def test_a_routines_leg_up_step_must_be_one_of_its_steps() -> None:
    import tomllib

    from device.core.errors import ConfigError
    from device.core.routine import _builtin_bytes, parse_routine

    data = tomllib.loads(_builtin_bytes().decode())
    data["setup"]["leg_up"] = 12
    with pytest.raises(ConfigError, match="setup.leg_up = 12"):
        parse_routine(data)


def test_the_studio_takes_the_holds_new_fields_and_checks_them() -> None:
    from datetime import UTC, datetime

    from device.core.payload import BadPayload, session_message

    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    hold = {"leg": "right", "round": 1, "planned_s": 60.0, "held_s": 60.0,
            "ended": "complete", "hurt": True, "pre_s": 21.0, "base_s": 60.0}
    msg = {"id": "x1", "started": "2026-01-05T08:00:00+00:00",
           "ended": "2026-01-05T08:05:00+00:00", "outcome": "complete",
           "routine": "hamstring", "holds": [hold]}
    assert session_message(msg, now)["holds"][0]["hurt"] is True
    with pytest.raises(BadPayload, match="hurt"):
        session_message({**msg, "holds": [{**hold, "hurt": "yes"}]}, now)
    with pytest.raises(BadPayload, match="pre_s"):
        session_message({**msg, "holds": [{**hold, "pre_s": -1}]}, now)
