"""The device loop on gpiozero mock pins and virtual time: the real device code runs."""

from __future__ import annotations

from device.apps.sim import make_sim
from device.core.breath import perceived
from device.core.config import Config
from device.core.machine import State
from drivers.speech import Pyttsx3Speaker, RecordingSpeaker


def session_done(events) -> bool:
    return any(e["kind"] == "session" for e in events)


def test_full_session_on_mock_pins(make_box, events) -> None:
    box = make_box()
    loop = box.loop
    loop.schedule(1.0, box.press_now)  # the button pin is driven low: gpiozero's Button fires
    loop.run(until=250.0)
    assert loop.machine.state is State.SWITCH
    loop.schedule(260.0, box.press_now)
    loop.run(until=600.0)
    holds = events.kind("hold")
    assert [(h["leg"], h["held_s"], h["ended"]) for h in holds] == [
        ("right", 60.0, "complete"), ("left", 60.0, "complete")]
    assert events.states()[:4] == ["setup", "hold", "ask", "switch"]
    assert events.states()[-2:] == ["done", "idle"]
    assert [e["action"] for e in events.kind("button")] == ["press", "press"]
    assert box.led_pin.state == 0.0 and box.buzzer_pin.state == 0


def test_light_on_the_pin_breathes_during_a_hold(make_box, events) -> None:
    box = make_box()
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(2.0, box.press_now)
    box.loop.schedule(2.3, box.press_now)  # a double press skips set-up: hold starts at 2.4
    samples = []
    for k in range(1, 21):
        at = 2.4 + k * 0.5
        box.loop.schedule(at, lambda: samples.append(box.led_pin.state))
    box.loop.run(until=13.3)
    levels = [perceived(s) for s in samples]
    # 4 s in (rising), 6 s out (falling): the first 7 samples rise, then fall until 10 s
    assert all(b > a for a, b in zip(levels[:7], levels[1:8], strict=False))
    assert all(b < a for a, b in zip(levels[8:19], levels[9:20], strict=False))
    # redrawn only when the eye sees a change: far fewer than 50 Hz, each a small step
    assert 50 < box.loop.frames < 50 * 10.9 / 3


def test_light_glows_in_setup_and_is_off_in_idle(make_box) -> None:
    box = make_box()
    box.loop.schedule(1.0, box.press_now)
    seen = {}
    box.loop.schedule(0.5, lambda: seen.setdefault("idle", box.led_pin.state))
    box.loop.schedule(3.0, lambda: seen.setdefault("setup", box.led_pin.state))
    box.loop.run(until=4.0)
    assert seen["idle"] == 0.0 and 0 < seen["setup"] < 0.1


def test_buzzer_pin_sounds_at_countdown(make_box, events) -> None:
    box = make_box()
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(2.0, box.press_now)
    box.loop.schedule(2.3, box.press_now)
    states = {}
    hold_start = 2.4
    for name, at in (("start", hold_start + 0.1), ("gap", hold_start + 30),
                     ("count", hold_start + 57.05), ("end", hold_start + 60.5),
                     ("after", hold_start + 61.5)):
        box.loop.schedule(at, lambda n=name: states.setdefault(n, box.buzzer_pin.state))
    box.loop.run(until=70.0)
    assert states == {"start": 1, "gap": 0, "count": 1, "end": 1, "after": 0}
    names = [e["name"] for e in events.kind("buzz")]
    assert names == ["start", "count", "count", "count", "end"]


def _speech_spans(events):
    return [(e["t"], e["t"] + e["duration_s"], e) for e in events.kind("speak")]


def test_no_overlapping_speech_and_none_over_the_countdown(make_box, events) -> None:
    box = make_box(session={"switch": "auto", "hold_seconds": 90, "reminder_seconds": 10})
    box.loop.schedule(1.0, box.press_now)
    box.loop.run(until=800.0)
    spans = _speech_spans(events)
    assert len(spans) > 20
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:], strict=False):
        assert start_b >= end_a - 1e-6, (a["text"], b["text"])
    counts = [e["t"] for e in events.kind("buzz") if e["name"] in ("count", "end")]
    for start, end, e in spans:
        for beep in counts:
            assert not (start < beep + 0.2 and end > beep - 0.05), (e["text"], beep)


def test_skipping_set_up_cuts_the_line_and_the_hold_opens_on_time(make_box, events) -> None:
    # a slow voice, and the set-up skipped (double press) in the middle of a long step:
    # the step is cut off at once, nothing of it runs into the hold, and the hold's opening
    # lines are said (the safety line first: it had not been heard yet)
    box = make_box(voice={"rate": 80})
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(8.0, box.press_now)
    box.loop.schedule(8.3, box.press_now)
    box.loop.run(until=100.0)
    hold_at = next(e["t"] for e in events.kind("state") if e["state"] == "hold")
    cut = events.kind("speak_cut")
    assert cut and all(c["why"] == "hush" for c in cut) and cut[-1]["t"] == hold_at
    assert box.speaker.stops == len(cut)
    after = [e for e in events.kind("speak") if e["t"] >= hold_at]
    assert [e["key"] for e in after[:2]] == ["setup.safety", "hold.start"]
    assert after[0]["t"] == hold_at
    assert events.kind("speak_dropped") == []
    assert "hold.ten_left" in {e["key"] for e in events.kind("speak")}


def test_voice_failure_keeps_the_session_going(events) -> None:
    from tests.conftest import Events

    events = Events()
    box = make_sim(Config(), speaker=RecordingSpeaker(fail=True), listeners=[events])
    box.add_script([])
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(200.0, box.press_now)
    box.loop.run(until=500.0)
    box.close()
    assert [h["ended"] for h in events.kind("hold")] == ["complete", "complete"]


def test_no_voice_at_all_still_runs_with_light_and_buzzer(events) -> None:
    def broken():
        raise OSError("no audio device")

    from tests.conftest import Events

    events = Events()
    box = make_sim(Config(), speaker=Pyttsx3Speaker(engine_factory=broken), listeners=[events])
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(200.0, box.press_now)
    box.loop.run(until=500.0)
    box.close()
    assert len(events.kind("hold")) == 2 and events.kind("buzz")


def test_long_press_cancels_on_the_injected_clock(make_box, events) -> None:
    box = make_box()
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(20.0, box.long_press_now)
    box.loop.run(until=40.0)
    cancel_at = [e["t"] for e in events.kind("state") if e["state"] == "cancelled"]
    assert cancel_at == [22.0]  # fires when the 2 s are up, not on release
    assert events.kind("button")[-1]["action"] == "long"
    assert events.states()[-1] == "idle"
    assert box.led_pin.state == 0.0


def test_button_held_at_boot_is_ignored_until_released(events) -> None:
    from device.apps.builder import build_box
    from drivers.pins import mock_factory

    factory = mock_factory()
    cfg = Config()
    pin = factory.pin(cfg.pins.button)
    pin.drive_low()  # held down before the loop starts
    box = build_box(cfg, factory=factory, speaker=RecordingSpeaker(), listeners=[events])
    loop = box.loop
    loop.schedule(5.0, pin.drive_high)  # released after 5 s: no long press, no start
    loop.run(until=10.0)
    assert events.kind("button") == [] and loop.machine.state is State.IDLE
    loop.schedule(11.0, pin.drive_low)
    loop.schedule(11.1, pin.drive_high)
    loop.run(until=12.0)
    assert loop.machine.state is State.SETUP


def test_idle_does_not_tick(make_box) -> None:
    box = make_box()
    wakes = []
    box.loop.add_ticker(lambda now: None, wakes.append)
    box.loop.run(until=3600.0)
    assert len(wakes) <= 2


def test_mock_pin_history_stays_small(make_box) -> None:
    box = make_box(session={"hold_seconds": 300})
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(2.0, box.press_now)
    box.loop.schedule(2.3, box.press_now)
    box.loop.run(until=290.0)
    assert len(box.led_pin.states) < 200  # 14,000 light frames went through it


def test_passive_buzzer_plays_tones(make_box, events) -> None:
    box = make_box(buzzer={"kind": "passive"})
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(2.0, box.press_now)
    box.loop.schedule(2.3, box.press_now)
    seen = {}
    box.loop.schedule(2.5, lambda: seen.setdefault("start", box.buzzer_pin.frequency))
    box.loop.schedule(62.5, lambda: seen.setdefault("end", box.buzzer_pin.frequency))
    box.loop.schedule(64.3, lambda: seen.setdefault("after", box.buzzer_pin.state))
    box.loop.run(until=65.0)
    assert seen["start"] == 880.0 and seen["end"] == 1320.0 and seen["after"] == 0
