"""The breathing light as pure functions of time.

``perceived`` levels (0..1) are what the eye should see; ``duty`` turns them into PWM
duty cycles through the CIE 1931 lightness curve, so equal steps of perceived
brightness look equal. Transitions are eased with a raised cosine: no linear ramps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from device.core.config import BreathSettings, LightSettings


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


# ---- when the eye will next see a change ---------------------------------------------------
#
# Each animated pattern is a chain of monotonic pieces over one period. Within a piece the
# perceived level is v0 + (v1 - v0) * shape(u), u = 0..1 across the piece, with ``shape``
# rising from 0 to 1 and invertible; so the moment the level has moved by one step from
# what is shown is solved exactly, and the light is redrawn only then (and at each turning
# point, so the peaks and troughs are shown exactly).

Shape = tuple[Callable[[float], float], Callable[[float], float]]  # shape, its inverse
EASE: Shape = (ease, lambda y: math.acos(1.0 - 2.0 * y) / math.pi)
SIN_RISE: Shape = (lambda u: math.sin(0.5 * math.pi * u), lambda y: math.asin(y) * 2 / math.pi)
COS_FALL: Shape = (lambda u: 1.0 - math.cos(0.5 * math.pi * u),
                   lambda y: math.acos(1.0 - y) * 2 / math.pi)
FLAT: Shape = (lambda u: 0.0, lambda y: 0.0)


@dataclass(frozen=True)
class Piece:
    """A monotonic piece of a pattern: from ``start`` to ``end`` s into the period, the
    perceived level goes from ``v0`` to ``v1`` along ``shape``."""

    start: float
    end: float
    v0: float
    v1: float
    shape: Shape

    def level(self, t: float) -> float:
        """Perceived level at ``t`` s into the period (start <= t <= end)."""
        u = (t - self.start) / (self.end - self.start)
        return self.v0 + (self.v1 - self.v0) * self.shape[0](min(1.0, max(0.0, u)))

    def time_of(self, v: float) -> float:
        """When (s into the period) the level reaches ``v`` (between v0 and v1)."""
        y = min(1.0, max(0.0, (v - self.v0) / (self.v1 - self.v0)))
        return self.start + (self.end - self.start) * self.shape[1](y)


def pieces(pattern: Pattern, breath: BreathSettings, light: LightSettings
           ) -> tuple[float, list[Piece]]:
    """One period (s) of ``pattern`` and its monotonic pieces; (0, []) when it is still."""
    raw: list[tuple[float, float, float, Shape]] = []  # length, v0, v1, shape
    if pattern is Pattern.BREATH:
        lo, hi = light.low, light.high
        raw = [(breath.inhale, lo, hi, EASE), (breath.hold_in, hi, hi, FLAT),
               (breath.exhale, hi, lo, EASE), (breath.hold_out, lo, lo, FLAT)]
    elif pattern is Pattern.SWITCH:
        g, hi = light.glow, light.high
        raw = [(0.25, g, hi, SIN_RISE), (0.25, hi, g, COS_FALL), (0.1, g, g, FLAT),
               (0.25, g, hi, SIN_RISE), (0.25, hi, g, COS_FALL),
               (SWITCH_PERIOD - 1.1, g, g, FLAT)]
    elif pattern is Pattern.NUDGE:
        raw = [(1.5, 0.0, 0.5, SIN_RISE), (1.5, 0.5, 0.0, COS_FALL),
               (NUDGE_PERIOD - 3.0, 0.0, 0.0, FLAT)]
    out: list[Piece] = []
    at = 0.0
    for length, v0, v1, shape in raw:
        if length > 0:
            out.append(Piece(at, at + length, v0, v1, FLAT if v0 == v1 else shape))
            at += length
    return at, out


def next_change(t: float, step: float, period: float, chain: list[Piece]) -> float | None:
    """The first time after ``t`` (s into the pattern) at which the perceived level will
    have moved by ``step`` from its level at ``t``, or reached a turning point first;
    None for a still pattern. Exact: each piece's shape is inverted, no sampling."""
    return level_and_next(t, step, period, chain)[1]


def level_and_next(t: float, step: float, period: float, chain: list[Piece]
                   ) -> tuple[float, float | None]:
    """The perceived level at ``t`` (s into the pattern) and ``next_change``'s time, found
    together (one piece lookup per light frame)."""
    if not chain or period <= 0:
        return 0.0, None
    base = math.floor(t / period) * period
    p = t - base
    last = len(chain) - 1
    i = 0
    while i < last and p >= chain[i].end:  # the piece ``p`` falls in (a plain loop: this
        i += 1  # runs at every light frame)
    here = chain[i].level(p)
    return here, _next_after(t, here, i, base, step, period, chain)


def _next_after(t: float, here: float, i: int, base: float, step: float, period: float,
                chain: list[Piece]) -> float | None:
    for _ in range(2 * len(chain) + 1):
        piece = chain[i]
        if piece.v0 != piece.v1:
            rising = piece.v1 > piece.v0
            target = here + step if rising else here - step
            end_v = piece.v1
            if (end_v - target) * (1 if rising else -1) >= 0:  # reached inside the piece
                at = base + piece.time_of(target)
                if at > t + 1e-9:
                    return at
            elif abs(end_v - here) > 1e-9:  # the turn comes first: show the extreme
                at = base + piece.end
                if at > t + 1e-9:
                    return at
        i += 1
        if i == len(chain):
            i, base = 0, base + period
    return None
