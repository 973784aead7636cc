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
