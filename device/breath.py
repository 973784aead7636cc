"""The breathing light as pure functions of time.

``perceived`` levels (0..1) are what the eye should see; ``duty`` turns them into PWM
duty cycles through the CIE 1931 lightness curve, so equal steps of perceived
brightness look equal. Transitions are eased with a raised cosine: no linear ramps.
"""

from __future__ import annotations

import math
from enum import Enum

from device.config import BreathSettings, LightSettings


class Pattern(Enum):
    """What the light is doing."""

    OFF = "off"
    GLOW = "glow"  # faint steady glow: set-up, idle (by config)
    BREATH = "breath"  # paces the breath in a hold
    SWITCH = "switch"  # a slow double pulse: between legs
    NUDGE = "nudge"  # a slow, distinctive wave: no session yet today

    @property
    def animated(self) -> bool:
        """True when the light changes over time."""
        return self in (Pattern.BREATH, Pattern.SWITCH, Pattern.NUDGE)


def ease(x: float) -> float:
    """Raised-cosine ease from 0 to 1 over x in 0..1 (zero slope at both ends)."""
    x = min(1.0, max(0.0, x))
    return 0.5 - 0.5 * math.cos(math.pi * x)


def duty(perceived: float) -> float:
    """PWM duty (0..1) that looks like ``perceived`` brightness (CIE 1931 L*)."""
    lightness = min(1.0, max(0.0, perceived)) * 100.0
    if lightness <= 8.0:
        return lightness / 903.3
    return ((lightness + 16.0) / 116.0) ** 3


def perceived(duty_cycle: float) -> float:
    """Inverse of ``duty``: the perceived brightness (0..1) of a PWM duty."""
    y = min(1.0, max(0.0, duty_cycle))
    if y <= 0.008856:
        return y * 903.3 / 100.0
    return (116.0 * y ** (1.0 / 3.0) - 16.0) / 100.0


def breath_phase(t: float, breath: BreathSettings) -> tuple[str, float]:
    """Which part of the breath ``t`` seconds into a hold falls in, and how far (0..1)."""
    t = t % breath.period
    for name, length in (
        ("in", breath.inhale),
        ("full", breath.hold_in),
        ("out", breath.exhale),
        ("empty", breath.hold_out),
    ):
        if t < length:
            return name, t / length
        t -= length
    return "empty", 1.0


def breath_level(t: float, breath: BreathSettings, light: LightSettings) -> float:
    """Perceived brightness (0..1) ``t`` seconds into a hold: rises on in, falls on out."""
    phase, x = breath_phase(t, breath)
    if phase == "in":
        k = ease(x)
    elif phase == "full":
        k = 1.0
    elif phase == "out":
        k = 1.0 - ease(x)
    else:
        k = 0.0
    return light.low + (light.high - light.low) * k


SWITCH_PERIOD = 2.4  # s: two soft pulses then a rest
NUDGE_PERIOD = 8.0  # s: one slow wave, clearly unlike a breath


def switch_level(t: float, light: LightSettings) -> float:
    """Perceived brightness for the switch pattern: two short swells, then rest."""
    t = t % SWITCH_PERIOD
    for start in (0.0, 0.6):
        if start <= t < start + 0.5:
            return light.glow + (light.high - light.glow) * math.sin(math.pi * (t - start) / 0.5)
    return light.glow


def nudge_level(t: float, light: LightSettings) -> float:
    """Perceived brightness for the nudge: a slow swell up to half, then dark."""
    t = t % NUDGE_PERIOD
    if t < 3.0:
        return 0.5 * math.sin(math.pi * t / 3.0)
    return 0.0


def light_value(pattern: Pattern, t: float, breath: BreathSettings, light: LightSettings) -> float:
    """PWM duty (0..1) for ``pattern`` at ``t`` seconds after it began."""
    if pattern is Pattern.OFF:
        return 0.0
    if pattern is Pattern.GLOW:
        return duty(light.glow)
    if pattern is Pattern.BREATH:
        return duty(breath_level(t, breath, light))
    if pattern is Pattern.SWITCH:
        return duty(switch_level(t, light))
    return duty(nudge_level(t, light))
