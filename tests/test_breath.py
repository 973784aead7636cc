"""The breathing light as numbers: period, easing, smoothness and gamma."""

from __future__ import annotations

import pytest

from device.core.breath import (
    Pattern,
    breath_level,
    breath_phase,
    duty,
    ease,
    light_value,
    perceived,
)
from device.core.config import BreathSettings, LightSettings

BREATH = BreathSettings()
LIGHT = LightSettings()


def test_period_is_one_whole_breath() -> None:
    for t in (0.3, 2.0, 5.5, 9.9):
        assert breath_level(t, BREATH, LIGHT) == pytest.approx(breath_level(t + 10, BREATH, LIGHT))


def test_rises_for_inhale_and_falls_for_exhale() -> None:
    ins = [breath_level(i / 10, BREATH, LIGHT) for i in range(0, 41)]
    outs = [breath_level(4 + i / 10, BREATH, LIGHT) for i in range(0, 61)]
    assert all(b > a for a, b in zip(ins, ins[1:], strict=False))
    assert all(b < a for a, b in zip(outs, outs[1:], strict=False))
    assert ins[0] == pytest.approx(LIGHT.low) and ins[-1] == pytest.approx(LIGHT.high)
    assert breath_phase(3.9, BREATH)[0] == "in" and breath_phase(4.1, BREATH)[0] == "out"


def test_eased_not_linear() -> None:
    # zero slope at both ends, steepest in the middle
    assert ease(0.01) < 0.001 and 1 - ease(0.99) < 0.001
    assert ease(0.5) == pytest.approx(0.5)
    step_mid = ease(0.51) - ease(0.49)
    step_end = ease(0.02) - ease(0.0)
    assert step_mid > 10 * step_end


def test_holds_stay_flat() -> None:
    breath = BreathSettings(inhale=4, hold_in=2, exhale=6, hold_out=2)
    assert breath_level(4.5, breath, LIGHT) == breath_level(5.9, breath, LIGHT) == LIGHT.high
    assert breath_level(12.5, breath, LIGHT) == breath_level(13.9, breath, LIGHT) == LIGHT.low


def test_gamma_matches_cie_lightness() -> None:
    assert duty(0.0) == 0.0 and duty(1.0) == pytest.approx(1.0)
    assert duty(0.5) == pytest.approx(0.1842, abs=1e-3)  # L* 50 = 18.4 % luminance
    for p in (0.02, 0.1, 0.3, 0.7, 0.95):
        assert perceived(duty(p)) == pytest.approx(p, abs=1e-6)


def test_smooth_at_50_hz_in_perceived_steps() -> None:
    """The largest frame-to-frame step the eye sees stays under 2.5 % of full range."""
    frames = [perceived(light_value(Pattern.BREATH, k / 50, BREATH, LIGHT)) for k in range(500)]
    biggest = max(abs(b - a) for a, b in zip(frames, frames[1:], strict=False))
    assert biggest < 0.025
    # while a linear duty ramp (what PWMLED.pulse does) jumps far more at the dark end
    linear = [perceived(k / 200) for k in range(201)]
    assert max(abs(b - a) for a, b in zip(linear, linear[1:], strict=False)) > 0.04


def test_patterns_differ() -> None:
    assert light_value(Pattern.OFF, 1.0, BREATH, LIGHT) == 0.0
    glow = light_value(Pattern.GLOW, 3.0, BREATH, LIGHT)
    assert glow == light_value(Pattern.GLOW, 7.0, BREATH, LIGHT) > 0
    switch = [light_value(Pattern.SWITCH, k / 50, BREATH, LIGHT) for k in range(120)]
    assert max(switch) > 0.5 and min(switch) == pytest.approx(glow)
    assert Pattern.BREATH.animated and not Pattern.GLOW.animated
