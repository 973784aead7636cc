"""Tension coaching: pure functions over strap samples, and a clock-free coach.

A sample is ``(t, kg)``: time in seconds on the session clock and strap tension in kg
(relative units when the strap is not calibrated; the absolute thresholds then apply to
those units). Samples arrive at about 10 Hz. Everything works on a causal median filter
of the tension, which removes single-sample spikes but keeps 1-2 Hz bounces.

Cues: "bounce" (repeated rise and fall), "slack" (tension lost for a few seconds: leg
lowered or knee bent), "overpull" (held well above the hold's own level: a stretch
should never hurt), "yank" (a sudden pull from slack to well above it), "eased" (back at
the settled level after an over-pull: praised).

One coach reads the strap from the moment the leg goes up in the set-up to the release.
It keeps a *reference*: the level the person settled at before any over-pull. A pull
above the reference's over-pull line is an over-pull for as long as it lasts (the level
it raises is never taken as the new reference), and slack is judged against the
reference, so easing back to it after an over-pull is never called slack. The reference
follows a settled level slowly up (deepening the stretch) and down (the tissue relaxing in
a still hold), so the slow fall of force in a still hold is never slack either.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields

from device.core.relaxation import Relaxation, fit_hold

Sample = tuple[float, float]
"""(time s, tension kg)."""

CUES: tuple[str, ...] = ("overpull", "bounce", "slack")
YANK_S = 1.0  # a rise from slack past the over-pull line within this long is a yank (s)
# An over-pull ends once no reading has shown it for this long (s): one reading late or a
# little low does not end it, so it is not cued afresh (the first line, at once) but keeps
# its every-8-s repeat, and a line waiting to be said about it is not dropped.
OVERPULL_RELEASE_S = 1.0
"""Cue names, most urgent first."""

_EPS = 1e-6


@dataclass(frozen=True)
class CoachThresholds:
    """When coaching fires. Times in seconds, tensions in kg (or relative units)."""

    filter_width: int = 3
    """Median filter length, samples (odd). 3 at 10 Hz: drops 1-sample spikes, keeps 2 Hz."""
    loaded_kg: float = 1.0
    """The strap counts as loaded at or above this tension."""
    level_window_s: float = 10.0
    """The hold's own level: median of the filtered tension over this window ..."""
    level_lag_s: float = 2.0
    """... ending this long ago (so the event being judged does not move its reference)."""
    level_min_s: float = 3.0
    """No slack or over-pull judgement until the level window holds this much data."""
    bounce_window_s: float = 4.0
    """Turning points are counted over this window."""
    bounce_min_turns: int = 4
    """Bouncing: at least this many turning points in the window (2 full rise-and-falls)."""
    bounce_min_kg: float = 1.0
    """A swing counts only if at least this big ..."""
    bounce_rel: float = 0.15
    """... and at least this fraction of the hold's level."""
    slack_fraction: float = 0.4
    """Slack: below this fraction of the hold's level (or below ``slack_floor_kg``) ..."""
    slack_floor_kg: float = 0.5
    """... the absolute floor ..."""
    slack_s: float = 2.0
    """... for this long."""
    overpull_ratio: float = 1.5
    """Over-pull: above this multiple of the hold's level ..."""
    overpull_margin_kg: float = 2.0
    """... and at least this much above it ..."""
    overpull_s: float = 0.5
    """... for this long (a jerk within a bounce is shorter) ..."""
    settle_kg: float = 1.0
    """... once the hold has settled: the medians of the two halves of the level window
    differ by at most this ...
    """
    settle_rel: float = 0.2
    """... or this fraction of the level, and its lowest tenth is at least half the level
    (so easing into the stretch is not over-pulling)."""
    cue_gap_s: float = 15.0
    """At most one coaching cue (bounce, slack) per this many seconds."""
    overpull_max: float | None = None
    """Over-pull, always: filtered tension above this ceiling (kg or relative units) for
    ``ceiling_s``, from a hold's first sample, whatever the hold's own level (None: off)."""
    ceiling_s: float = 0.15
    """How long above the ceiling counts (two samples at 10 Hz)."""
    overpull_repeat_s: float = 8.0
    """Over-pull is safety: said again after this long while it lasts (not once per
    episode), then after twice and four times as long."""
    steadiness_cv_zero: float = 0.25
    """Steadiness falls linearly from 100 (perfectly steady) to 0 at this coefficient of
    variation (residual standard deviation / mean, around the hold's fitted relaxation
    curve, or a linear trend when there is no fit)."""

    def __post_init__(self) -> None:
        if self.filter_width < 1 or self.filter_width % 2 == 0:
            raise ValueError(f"filter_width {self.filter_width}: must be an odd number >= 1")
        if self.bounce_min_turns < 2:
            raise ValueError(f"bounce_min_turns {self.bounce_min_turns}: must be >= 2")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "overpull_max" and value is None:
                continue
            if f.name not in ("filter_width", "bounce_min_turns") and not value > 0:
                raise ValueError(f"{f.name} {value!r}: must be > 0")
        if not 0 < self.slack_fraction < 1:
            raise ValueError(f"slack_fraction {self.slack_fraction}: must be between 0 and 1")
        if self.overpull_ratio <= 1:
            raise ValueError(f"overpull_ratio {self.overpull_ratio}: must be > 1")


DEFAULT_THRESHOLDS = CoachThresholds()


@dataclass(frozen=True)
class HoldSummary:
    """One hold's tension figures (kg or relative units). None: not enough loaded data."""

    mean_kg: float | None
    """Mean filtered tension while loaded."""
    peak_kg: float | None
    """Highest filtered tension (single-sample spikes removed)."""
    steadiness: float | None
    """0..100, 100 = perfectly steady."""
    loaded_s: float
    """Seconds the strap was loaded."""
    samples: int
    relaxation: Relaxation | None = None
    """How the hold relaxed (``device.core.relaxation``); None: too little to fit."""


# --- pure functions -----------------------------------------------------------------------


def median_filter(values: Sequence[float], width: int = 3) -> list[float]:
    """Causal running median: output i is the median of values[i-width+1 .. i]."""
    return [statistics.median(values[max(0, i - width + 1) : i + 1]) for i in range(len(values))]


def strap_loaded(kg: float, thresholds: CoachThresholds = DEFAULT_THRESHOLDS) -> bool:
    """Whether a (filtered) tension counts as the strap being loaded, for the hold clock."""
    return kg >= thresholds.loaded_kg


def _between(samples: Sequence[Sample], start: float, end: float) -> list[float]:
    return [v for t, v in samples if start - _EPS <= t <= end + _EPS]


def _covers(samples: Sequence[Sample], start: float) -> bool:
    return bool(samples) and samples[0][0] <= start + _EPS


def reference_level(
    filtered: Sequence[Sample], now: float, th: CoachThresholds = DEFAULT_THRESHOLDS
) -> float | None:
    """The hold's own level: median over ``level_window_s`` ending ``level_lag_s`` before
    ``now``; None until that window spans ``level_min_s``. Readings above the over-pull
    ceiling are no part of it: a hold that starts too hard and then eases off as it is told
    is not taken for a strap gone slack."""
    end = now - th.level_lag_s
    top = th.overpull_max if th.overpull_max is not None else math.inf
    window = [(t, v) for t, v in filtered
              if end - th.level_window_s - _EPS <= t <= end + _EPS and v <= top]
    if not window or window[-1][0] - window[0][0] < th.level_min_s - _EPS:
        return None
    return statistics.median(v for _, v in window)


def level_settled(
    filtered: Sequence[Sample], now: float, level: float, th: CoachThresholds = DEFAULT_THRESHOLDS
) -> bool:
    """Whether the level window is a settled hold rather than the pull into it: the medians
    of its earlier and later halves differ by at most ``max(settle_kg, settle_rel * level)``
    and its lowest tenth is at least half the level."""
    end = now - th.level_lag_s
    values = _between(filtered, end - th.level_window_s, end)
    half = len(values) // 2
    if half == 0:
        return False
    shift = abs(statistics.median(values[half:]) - statistics.median(values[:half]))
    low = sorted(values)[len(values) // 10]
    return shift <= max(th.settle_kg, th.settle_rel * level) and low >= 0.5 * level


def count_turns(values: Sequence[float], min_swing: float) -> int:
    """Turning points between swings of at least ``min_swing`` (hysteresis zig-zag): a peak
    or trough counts once the signal has come back from it by ``min_swing``."""
    if not values:
        return 0
    low = high = extreme = values[0]
    direction = 0
    turns = 0
    for x in values[1:]:
        if direction == 0:
            low, high = min(low, x), max(high, x)
            if x - low >= min_swing:
                direction, extreme = 1, x
            elif high - x >= min_swing:
                direction, extreme = -1, x
        elif direction * (x - extreme) > 0:
            extreme = x
        elif abs(x - extreme) >= min_swing:
            turns += 1
            direction, extreme = -direction, x
    return turns


def bounce_turns(
    filtered: Sequence[Sample], now: float, level: float, th: CoachThresholds = DEFAULT_THRESHOLDS
) -> int:
    """Turning points in the last ``bounce_window_s`` with swings above the noise."""
    min_swing = max(th.bounce_min_kg, th.bounce_rel * level)
    return count_turns(_between(filtered, now - th.bounce_window_s, now), min_swing)


def is_bouncing(
    filtered: Sequence[Sample], now: float, level: float, th: CoachThresholds = DEFAULT_THRESHOLDS
) -> bool:
    """Repeated rise and fall: at least ``bounce_min_turns`` turning points in the window."""
    return bounce_turns(filtered, now, level, th) >= th.bounce_min_turns


def is_slack(
    filtered: Sequence[Sample], now: float, level: float, th: CoachThresholds = DEFAULT_THRESHOLDS
) -> bool:
    """Tension below ``slack_fraction`` of ``level`` (or the floor) for ``slack_s``."""
    limit = max(th.slack_floor_kg, th.slack_fraction * level)
    start = now - th.slack_s
    recent = _between(filtered, start, now)
    return _covers(filtered, start) and bool(recent) and max(recent) < limit


def is_overpulling(
    filtered: Sequence[Sample], now: float, level: float, th: CoachThresholds = DEFAULT_THRESHOLDS
) -> bool:
    """Tension above ``overpull_ratio`` x ``level`` and ``level + overpull_margin_kg``,
    for ``overpull_s``."""
    limit = max(th.overpull_ratio * level, level + th.overpull_margin_kg)
    start = now - th.overpull_s
    recent = _between(filtered, start, now)
    return _covers(filtered, start) and bool(recent) and min(recent) > limit


def steadiness(samples: Sequence[Sample], cv_zero: float = 0.25,
               curve: Relaxation | None = None) -> float | None:
    """0..100 from the coefficient of variation about the hold's fitted relaxation
    ``curve`` (so a still hold that relaxes is steady), or without one about a linear
    trend (so slowly deepening a stretch is not unsteady); None with fewer than 3 samples
    or a mean <= 0."""
    n = len(samples)
    if n < 3:
        return None
    t_mean = statistics.fmean(t for t, _ in samples)
    x_mean = statistics.fmean(x for _, x in samples)
    if x_mean <= 0:
        return None
    if curve is not None:
        ss = sum((x - curve.at(t)) ** 2 for t, x in samples)
        return 100.0 * max(0.0, 1.0 - math.sqrt(ss / (n - 1)) / x_mean / cv_zero)
    stt = sum((t - t_mean) ** 2 for t, _ in samples)
    slope = 0.0 if stt == 0 else sum((t - t_mean) * (x - x_mean) for t, x in samples) / stt
    ss = sum((x - x_mean - slope * (t - t_mean)) ** 2 for t, x in samples)
    cv = math.sqrt(ss / (n - 2)) / x_mean
    return 100.0 * max(0.0, 1.0 - cv / cv_zero)


def hold_stats(samples: Sequence[Sample], th: CoachThresholds = DEFAULT_THRESHOLDS,
               left_out: Sequence[bool] | None = None) -> HoldSummary:
    """Mean and peak (filtered, while loaded), steadiness and relaxation of one hold's raw
    samples (``left_out``: samples the coach found bouncing, over-pulling or slack, which
    the relaxation fit leaves out).

    Steadiness uses the samples at or above half the loaded median, so the pull at the
    start and the release at the end are not counted as unsteadiness (slack has its own
    cue), and from the fitted curve's settled start when there is one; it is measured
    around that curve. It needs 2 s of such samples.
    """
    times = [t for t, _ in samples]
    smooth = median_filter([kg for _, kg in samples], th.filter_width)
    loaded = [(t, f) for t, f in zip(times, smooth, strict=True) if strap_loaded(f, th)]
    loaded_s = sum(
        min(1.0, t1 - t0)
        for t0, t1, f in zip(times, times[1:], smooth, strict=False)
        if strap_loaded(f, th)
    )
    if not loaded:
        return HoldSummary(None, max(smooth) if smooth else None, None, loaded_s, len(samples))
    middle = statistics.median(f for _, f in loaded)
    fit = fit_hold(samples, th.loaded_kg, left_out)
    holding = [(t, f) for t, f in loaded
               if f >= 0.5 * middle and (fit is None or t >= fit.start_t)]
    steady = None
    if holding and holding[-1][0] - holding[0][0] >= 2.0 - _EPS:
        steady = steadiness(holding, th.steadiness_cv_zero, fit)
    return HoldSummary(
        mean_kg=statistics.fmean(f for _, f in loaded),
        peak_kg=max(smooth),
        steadiness=steady,
        loaded_s=loaded_s,
        samples=len(samples),
        relaxation=fit,
    )


# --- the coach ----------------------------------------------------------------------------


class TensionCoach:
    """Feeds on samples in time order and returns cues; knows no clock. One per hold.

    A cue is returned once per episode (the condition must clear before it can be cued
    again), at most one per ``cue_gap_s``, and never while quiet (``quiet(until_t)`` or
    ``add(..., allow_cues=False)``, e.g. during the countdown).
    """

    def __init__(self, thresholds: CoachThresholds = DEFAULT_THRESHOLDS) -> None:
        self.thresholds = thresholds
        th = thresholds
        self._keep_s = (
            max(th.level_window_s + th.level_lag_s, th.bounce_window_s, th.slack_s, th.overpull_s)
            + 1.0
        )
        self._samples: list[Sample] = []
        self._left_out: list[bool] = []  # per sample: bounce, over-pull or slack found
        self._tail: deque[float] = deque(maxlen=th.filter_width)
        self._recent: deque[Sample] = deque()
        self._quiet_until = -math.inf
        self._last_cue_t: float | None = None
        self._latched: set[str] = set()
        self._last_overpull_t: float | None = None
        self._overpull_seen_t: float | None = None  # the last reading found over-pulling
        self._over_at_last = False  # whether that was the previous reading
        self.overpull_cues = 0
        """Over-pull cues in the current episode (1: the first; more: it goes on)."""
        self.overpull_s = 0.0
        """Seconds of this hold spent over-pulling."""
        self.active: frozenset[str] = frozenset()
        """Conditions detected at the last sample (cued or not), for display."""
        self.reference: float | None = None
        """The level settled at before any over-pull (None until one has settled)."""
        self._hold_from: float | None = None  # the hold clock started here (s)
        self._yank_cued = False  # this over-pull episode began with a yank, cued as such

    @property
    def filtered(self) -> float | None:
        """The latest filtered tension, or None before the first sample."""
        return self._recent[-1][1] if self._recent else None

    @property
    def loaded(self) -> bool:
        """Whether the strap is loaded now (filtered), for a hold clock that counts only
        while it is."""
        value = self.filtered
        return value is not None and strap_loaded(value, self.thresholds)

    @property
    def level(self) -> float | None:
        """The hold's own level now (see ``reference_level``)."""
        if not self._recent:
            return None
        return reference_level(self._recent, self._recent[-1][0], self.thresholds)

    def over_line(self, level: float) -> float:
        """The over-pull line above ``level``: ``overpull_ratio`` times it and at least
        ``overpull_margin_kg`` above it."""
        th = self.thresholds
        return max(th.overpull_ratio * level, level + th.overpull_margin_kg)

    def start_hold(self, t: float) -> None:
        """The hold clock starts at ``t`` (s): figures and over-pull seconds count from
        here; what came before is the set-up."""
        self._hold_from = t
        self.overpull_s = 0.0

    def loaded_before_hold(self) -> float:
        """Seconds the strap was loaded before the hold clock started (time in the
        stretch before it)."""
        if self._hold_from is None:
            return 0.0
        before = [(t, kg) for t, kg in self._samples if t < self._hold_from]
        return float(hold_stats(before, self.thresholds).loaded_s) if before else 0.0

    def quiet(self, until_t: float) -> None:
        """Return no cue for samples before ``until_t`` (s)."""
        self._quiet_until = until_t

    def add(self, t: float, kg: float, allow_cues: bool = True,
            allow_safety: bool = True) -> list[str]:
        """Take one sample (time s, tension kg); return the cue names to speak now.

        ``allow_cues`` False holds back the coaching cues (bounce, slack); over-pull is
        safety and is held back only by ``allow_safety`` False. It is returned at its
        start and again every ``overpull_repeat_s`` while it lasts."""
        if not math.isfinite(kg) or not math.isfinite(t):
            raise ValueError(f"sample ({t}, {kg}) is not finite")
        if self._samples and t <= self._samples[-1][0]:
            raise ValueError(f"sample at {t} s is not after {self._samples[-1][0]} s")
        th = self.thresholds
        self._samples.append((t, kg))
        self._tail.append(kg)
        self._recent.append((t, statistics.median(self._tail)))
        while self._recent[0][0] < t - self._keep_s:
            self._recent.popleft()

        previous_t = self._samples[-2][0] if len(self._samples) > 1 else None
        was_over = "overpull" in self.active
        found = self._detect(t)
        yank = "yank" in found
        if yank:
            found.remove("yank")
        over_now = "overpull" in found
        if over_now:
            if self._over_at_last and previous_t is not None:
                self.overpull_s += min(1.0, t - previous_t)
            self._overpull_seen_t = t
        elif ("overpull" in self.active and self._overpull_seen_t is not None
              and t - self._overpull_seen_t < OVERPULL_RELEASE_S - _EPS):
            found.append("overpull")  # a late or low reading or two does not end it
        self._over_at_last = over_now
        self.active = frozenset(found)
        self._left_out.append(bool(found))
        self._latched &= self.active
        self._follow(t)
        if "overpull" in self.active:
            # said again while it lasts, less often the longer it goes on (8, 16, 32 s):
            # a warning, not a drone over the whole hold
            repeat = th.overpull_repeat_s * min(4, 2 ** max(0, self.overpull_cues - 1))
            due = (self._last_overpull_t is None or self.overpull_cues == 0
                   or t - self._last_overpull_t >= repeat - _EPS)
            if allow_safety and due and over_now and t >= self._quiet_until:
                self._last_overpull_t = t
                self.overpull_cues += 1
                # a sudden pull from slack: said as a yank (the same safety, its own words)
                return ["yank" if yank and self.overpull_cues == 1 else "overpull"]
        else:
            self.overpull_cues = 0
            if was_over and self._eased(t) and allow_cues and t >= self._quiet_until:
                return ["eased"]
        if not allow_cues or t < self._quiet_until:
            return []
        if self._last_cue_t is not None and t - self._last_cue_t < th.cue_gap_s - _EPS:
            return []
        for cue in CUES[1:]:  # over-pull is handled above
            if cue in self.active and cue not in self._latched:
                self._latched.add(cue)
                self._last_cue_t = t
                return [cue]
        return []

    def _follow(self, t: float) -> None:
        """Move the reference to a settled, loaded level that is no over-pull (and no
        bounce): up as the person deepens the stretch, down as the tissue relaxes."""
        th, recent = self.thresholds, self._recent
        if self.active & {"overpull", "bounce"}:
            return
        level = reference_level(recent, t, th)
        if level is None or not strap_loaded(level, th):
            return
        ref = self.reference
        if ref is not None and level > self.over_line(ref):
            return  # raised by a pull over the line: never the new reference
        if level_settled(recent, t, level, th):
            self.reference = level

    def _eased(self, t: float) -> bool:
        """Back from an over-pull to the reference's band (not slack, not over)."""
        ref, now = self.reference, self.filtered
        if ref is None or now is None:
            return False
        th = self.thresholds
        return max(th.slack_floor_kg, th.slack_fraction * ref) <= now <= self.over_line(ref)

    def _detect(self, now: float) -> list[str]:
        th, recent = self.thresholds, self._recent
        found: list[str] = []
        level = reference_level(recent, now, th)
        ref = self.reference
        bounce_level = level
        if bounce_level is None:
            bounce_level = statistics.median(_between(recent, now - th.bounce_window_s, now))
        turns = 0
        if strap_loaded(bounce_level, th):
            turns = bounce_turns(recent, now, bounce_level, th)
            if turns >= th.bounce_min_turns:
                found.append("bounce")
        if th.overpull_max is not None:
            top = _between(recent, now - th.ceiling_s, now)
            if len(top) >= 2 and min(top) > th.overpull_max:
                found.append("overpull")  # above the ceiling: from the first second
        if ref is not None and "overpull" not in found and turns < 2:
            # above the line drawn from the settled reference: an over-pull for as long as
            # it lasts, however long (the level it raises never becomes the reference)
            if is_overpulling(recent, now, ref, th):
                found.append("overpull")
                low = _between(recent, now - YANK_S - th.overpull_s, now)
                if low and min(low) < max(th.slack_floor_kg, th.slack_fraction * ref):
                    found.append("yank")  # from slack to over the line within a second
        if level is not None and strap_loaded(level, th):
            # Over-pull is a rise above a settled hold; within a bounce it is the bounce.
            if (
                "overpull" not in found
                and turns < 2
                and is_overpulling(recent, now, level, th)
                and level_settled(recent, now, level, th)
            ):
                found.append("overpull")
            # slack against the settled reference, never a level an over-pull raised
            against = level if ref is None else min(level, ref)
            if "overpull" not in found and is_slack(recent, now, against, th):
                found.append("slack")
        return found

    def summary(self) -> HoldSummary:
        """Mean, peak, steadiness and relaxation over the hold's samples (from
        ``start_hold``; every sample if it was never called)."""
        start = self._hold_from
        if start is None:
            return hold_stats(self._samples, self.thresholds, self._left_out)
        keep = [i for i, (t, _) in enumerate(self._samples) if t >= start - _EPS]
        return hold_stats([self._samples[i] for i in keep], self.thresholds,
                          [self._left_out[i] for i in keep])
