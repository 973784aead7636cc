"""A box that sleeps: no wake-up while idle, no hold thread, light frames only where the
eye sees a change (exact steps on the breath curve, capped at ``light.hz``)."""

from __future__ import annotations

import threading

import pytest

from device.apps.builder import build_box
from device.box.clock import RealClock, VirtualClock
from device.core.breath import (
    Pattern,
    breath_level,
    next_change,
    nudge_level,
    perceived,
    pieces,
    switch_level,
)
from device.core.config import BreathSettings, Config, LightSettings, with_overrides
from device.core.machine import Press

PULSE_STEP = 0.090  # gpiozero PWMLED.pulse(4, 6): its largest perceived step, measured


class CountingClock:
    """A clock that counts the loop's waits and records what each waited for."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.waits: list[float | None] = []
        self.idle = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def now(self) -> float:
        return self.inner.now()

    def wait_until(self, wake, when):
        self.waits.append(when)
        if when is None:
            self.idle.set()
        return self.inner.wait_until(wake, when)


def test_no_hold_thread_and_the_button_still_tells_long_from_short() -> None:
    before = set(threading.enumerate())
    box = build_box(Config(), clock=VirtualClock())
    try:
        assert set(threading.enumerate()) == before  # gpiozero's Button would add a hold thread
        box.loop.schedule(1.0, box.press_now)
        box.loop.schedule(3.0, box.long_press_now)
        seen = []
        box.bus.subscribe(lambda e: seen.append(e.to_json()), ["button"])
        box.loop.run(until=20.0)
        assert [e["action"] for e in seen] == ["press", "long"]
    finally:
        box.close()
    assert set(threading.enumerate()) == before


def test_idle_box_waits_with_no_deadline_on_real_time() -> None:
    clock = CountingClock(RealClock())
    box = build_box(Config(), clock=clock)
    thread = threading.Thread(target=box.loop.run, daemon=True)
    thread.start()
    try:
        assert clock.idle.wait(5), "the idle loop never went to sleep without a deadline"
        assert clock.waits == [None]  # one wait, with no timeout: nothing periodic at all
    finally:
        box.loop.stop()
        thread.join(5)
        box.close()
    assert not thread.is_alive()


def test_idle_box_on_virtual_time_does_not_tick() -> None:
    clock = CountingClock(VirtualClock())
    box = build_box(Config(), clock=clock)
    box.loop.run(until=3600.0)
    box.close()
    # asleep until the cut-off: one wait, straight to it; no frames, no polling
    assert clock.waits == [3600.0]
    assert box.loop.frames == 0


LEVELS = {
    Pattern.BREATH: lambda t: breath_level(t, BreathSettings(), LightSettings()),
    Pattern.SWITCH: lambda t: switch_level(t, LightSettings()),
    Pattern.NUDGE: lambda t: nudge_level(t, LightSettings()),
}


@pytest.mark.parametrize("pattern", list(LEVELS))
def test_next_change_lands_on_exact_steps_and_turning_points(pattern) -> None:
    level = LEVELS[pattern]
    period, chain = pieces(pattern, BreathSettings(), LightSettings())
    step = 0.015
    t, shown, frames = 0.0, level(0.0), 0
    while t < 3 * period:
        nxt = next_change(t, step, period, chain)
        assert nxt is not None and nxt > t
        # nothing the eye could see happens before the next frame
        for k in range(1, 20):
            assert abs(level(t + (nxt - t) * k / 20) - shown) <= step + 1e-9
        t, shown = nxt, level(nxt)
        frames += 1
    peaks = {round(level(x), 9) for x in (chain[0].end, chain[0].start)}
    assert max(peaks) == pytest.approx(max(level(k * period / 997) for k in range(997)), abs=1e-3)
    # one frame per step of travel, plus one at each turning point: no wasted frame
    travel = sum(abs(p.v1 - p.v0) for p in chain)
    assert frames <= 3 * (travel / step + len(chain)) + 1


def test_default_step_is_at_least_five_times_finer_than_pulse() -> None:
    config = Config()
    assert config.light.step <= PULSE_STEP / 5
    box = build_box(config, clock=VirtualClock())
    leds = []
    box.bus.subscribe(lambda e: leds.append(e), ["led"])
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(1.7, box.press_now)
    box.loop.schedule(2.0, box.press_now)  # a double press: the hold starts at 2.1
    box.loop.run(until=40.0)
    box.close()
    inside = [e for e in leds if 2.2 < e.t < 40.0]
    steps = [abs(perceived(b.value) - perceived(a.value))
             for a, b in zip(inside, inside[1:], strict=False)]
    assert max(steps) <= config.light.step + 0.001  # 4-decimal rounding of the duty
    assert len(inside) / 37.8 < config.light.hz / 3  # redrawn far less often than 50 Hz


def test_frames_never_come_faster_than_light_hz() -> None:
    # a steep, fast breath and a fine step: the cap decides
    config = with_overrides(Config(), light={"hz": 20, "step": 0.002},
                            breath={"inhale": 3, "exhale": 2})
    box = build_box(config, clock=VirtualClock())
    leds = []
    box.bus.subscribe(lambda e: leds.append(e.t), ["led"])
    box.loop.schedule(1.0, box.press_now)
    box.loop.schedule(1.7, box.press_now)
    box.loop.schedule(2.0, box.press_now)  # a double press: the hold starts at 2.1
    box.loop.run(until=30.0)
    box.close()
    gaps = [b - a for a, b in zip(leds, leds[1:], strict=False) if 2.2 < a and b < 30.0]
    assert min(gaps) >= 1 / 20 - 1e-3


class LateClock(VirtualClock):
    """Virtual time whose waits overshoot now and then, as a busy machine wakes late."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait_until(self, wake, when):
        self.waits += 1
        if when is not None and self.waits % 7 == 0:
            when += 0.1  # 100 ms late
        return super().wait_until(wake, when)


def test_a_late_wake_does_not_show_a_jump() -> None:
    config = Config()
    box = build_box(config, clock=LateClock())
    leds = []
    box.bus.subscribe(lambda e: leds.append(e), ["led"])
    box.loop.schedule(1.0, box.press_now)
    # a double press through the command port: the hold starts at 2.0
    box.loop.schedule(2.0, lambda: (box.loop.command(Press.SHORT),
                                    box.loop.command(Press.SHORT)))
    box.loop.run(until=40.0)
    box.close()
    inside = [e for e in leds if 2.2 < e.t < 40.0]
    steps = [abs(perceived(b.value) - perceived(a.value))
             for a, b in zip(inside, inside[1:], strict=False)]
    assert max(steps) <= config.light.step + 0.001  # caught up in steps, not one jump
    # and it does catch up: the light still reaches the top and the bottom of each breath
    values = [perceived(e.value) for e in inside]
    assert max(values) > config.light.high - 0.02 and min(values) < config.light.low + 0.02


class StalledClock(VirtualClock):
    """Virtual time whose one wait after ``stall_at`` overshoots by ``by`` s: a loop thread
    that a loaded machine left unscheduled (at 1000x, 10 ms of real time is 10 s)."""

    def __init__(self, stall_at: float, by: float) -> None:
        super().__init__()
        self.stall_at, self.by, self.stalled = stall_at, by, False

    def wait_until(self, wake, when):
        if not self.stalled and when is not None and when > self.stall_at:
            self.stalled = True
            self.advance_to(when + self.by)  # woken or not: the thread was not running
            return wake.is_set()
        return super().wait_until(wake, when)


def test_a_short_press_stays_short_when_the_loop_runs_late() -> None:
    """The mock pin's release is scheduled 0.1 s after the press; a loop that wakes 5 s late
    still hears a short press (its edge is stamped with its scheduled time), not a long one
    that would cancel."""
    box = build_box(Config(), clock=StalledClock(stall_at=1.05, by=5.0))
    seen = []
    box.bus.subscribe(lambda e: seen.append(e.to_json()), ["button", "state"])
    box.loop.schedule(1.0, box.press_now)
    box.loop.run(until=10.0)
    box.close()
    assert box.loop.clock.stalled
    assert [e.get("action") or e.get("state") for e in seen][:2] == ["press", "setup"]
