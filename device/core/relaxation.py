"""How a still hold relaxes: a fit of the strap's force curve, pure Python.

Held at one position, a hamstring's passive tension falls as the muscle-tendon unit
relaxes (viscoelastic stress relaxation): fast at first, most of it within about 45 s
(Magnusson et al. 1995, 1996). A still hold's force is then close to

    F(t) = F_inf + (F0 - F_inf) * exp(-t / tau),      t from the settled start (s).

``fit_hold`` finds the settled start (where the pull into the stretch stops rising),
then fits that curve by least squares: for a fixed ``tau`` the model is linear in
``F_inf`` and ``F0 - F_inf``, solved in closed form (2 x 2 normal equations), so the fit
is a one-dimensional search over ``tau`` (a log-spaced grid from 1 to 1000 s, then a
golden-section refinement). numpy is not a dependency of the box, and this needs none.

Bouncing, over-pulls and slack are no part of the curve: samples below half the hold's
level or the loaded line (slack), and samples far from the fitted curve (more than four
robust standard deviations: median absolute deviation x 1.4826, or 2 % of the level,
whichever is larger; a bounce or an over-pull), with a second either side of them, are
left out, and the fit is repeated until the set of samples used stops changing (at most
``MAX_ROUNDS``). Samples flagged by the caller (the coach's own bounce, over-pull and
slack detection) are left out from the start. To keep the search cheap, the samples used
are averaged in half-second bins (a 300 s hold at 10 Hz: 600 points, not 3000).

Everything is in the strap's units (kg once calibrated, else relative units) and seconds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Sample = tuple[float, float]
"""(time s, tension kg)."""

TAU_MIN_S = 1.0
TAU_MAX_S = 1000.0
"""The time constants searched (s); a best fit at either end is reported as no tau."""

BIN_S = 0.5
"""Samples used are averaged in bins this long for the search (s)."""

MAX_ROUNDS = 5
"""Fit, leave out what is far from the curve, fit again: at most this many times."""

OUTLIER_SIGMAS = 4.0
OUTLIER_FLOOR = 0.02
"""A sample is far from the curve beyond ``OUTLIER_SIGMAS`` robust standard deviations,
or this fraction of the settled force, whichever is larger."""

MARGIN_S = 1.0
"""Around a sample far from the curve, this much either side is left out too (s)."""

RISE_S = 1.0
"""The settled start: the force does not rise (beyond noise) over the next this long (s)."""

MIN_FIT_S = 10.0
"""A fit needs samples used over at least this long (s)."""

SLACK_S = 1.0
"""Slack this long ends a position: what follows is fitted apart (s)."""


@dataclass(frozen=True)
class Relaxation:
    """One hold's relaxation figures (strap units, seconds, percent of the settled force)."""

    start_t: float
    """The settled start: when the pull into the stretch stopped rising (s)."""
    settled: float
    """The force at the settled start, from the fitted curve (F0)."""
    floor: float
    """The force the curve tends to (F_inf; with no ``tau_s``, only the fit's offset)."""
    tau_s: float | None
    """Time constant (s); None when the best fit lies at the search's end (no curve)."""
    relax_30: float | None
    """Percent of the settled force gone 30 s after the start (None: the hold was shorter)."""
    relax_45: float | None
    """... 45 s after the start."""
    relax_end: float
    """... at the end of the samples used."""
    end_t: float
    """The last sample used (s)."""
    rms: float
    """Root-mean-square distance of the samples used from the curve (strap units)."""
    r2: float | None
    """Share of the used samples' variance the curve explains (None: nothing to explain)."""
    used_s: float
    """Seconds of the hold the fit used."""
    left_out_s: float
    """Seconds after the settled start left out (bounce, over-pull, slack)."""
    tension_s: float
    """Time under tension: seconds the strap was loaded."""
    fitted_tau_s: float = 0.0
    """The time constant of the curve as fitted, even at the search's end (s)."""

    def at(self, t: float) -> float:
        """The fitted force at time ``t`` (s, on the samples' clock; the settled force
        before the start)."""
        return self.floor + (self.settled - self.floor) * math.exp(
            -max(0.0, t - self.start_t) / self.fitted_tau_s)

    @property
    def quality(self) -> float:
        """0..100: 100 - the rms distance from the curve in percent of the settled force."""
        if self.settled <= 0:
            return 0.0
        return max(0.0, 100.0 - 100.0 * self.rms / self.settled)


def _median3(values: Sequence[float]) -> list[float]:
    return [statistics.median(values[max(0, i - 2): i + 1]) for i in range(len(values))]


def tension_seconds(samples: Sequence[Sample], loaded: float) -> float:
    """Seconds the (median-filtered) strap was at or above ``loaded`` (gaps over 1 s count
    as 1 s)."""
    smooth = _median3([v for _, v in samples])
    return sum(min(1.0, t1 - t0) for (t0, _), (t1, _), f
               in zip(samples, samples[1:], smooth, strict=False) if f >= loaded)


def settled_start(samples: Sequence[Sample], loaded: float) -> int | None:
    """Index of the settled start in (median-filtered) ``samples``: the first sample, from
    the strap first being loaded, that the next ``RISE_S`` do not exceed by more than
    noise (four robust standard deviations of the sample-to-sample change, at least
    0.5 % of the force): the pull into the stretch has stopped rising. None if never
    loaded (or still rising at the end)."""
    first = next((i for i, (_, v) in enumerate(samples) if v >= loaded), None)
    if first is None:
        return None
    vals = [v for _, v in samples[first:]]
    diffs = [b - a for a, b in zip(vals, vals[1:], strict=False)]
    noise = 0.0
    if len(diffs) > 2:
        mid = statistics.median(diffs)
        noise = 1.4826 * statistics.median(abs(d - mid) for d in diffs) / math.sqrt(2)
    hi = first
    for i in range(first, len(samples)):
        t, v = samples[i]
        hi = max(hi, i)
        while hi + 1 < len(samples) and samples[hi + 1][0] <= t + RISE_S:
            hi += 1
        ahead = max(f for _, f in samples[i: hi + 1])
        if ahead <= v + max(0.005 * v, 4.0 * noise):
            return i
    return None


def _solve(xs: Sequence[float], ys: Sequence[float], ws: Sequence[float]
           ) -> tuple[float, float, float]:
    """Weighted least squares of y = a + b x: (a, b, sum of squared errors)."""
    sw = sx = sy = sxx = sxy = syy = 0.0
    for x, y, w in zip(xs, ys, ws, strict=True):
        sw += w
        sx += w * x
        sy += w * y
        sxx += w * x * x
        sxy += w * x * y
        syy += w * y * y
    det = sw * sxx - sx * sx
    if det <= 1e-12 * max(1.0, sw * sxx):
        a = sy / sw
        return a, 0.0, max(0.0, syy - a * sy)
    b = (sw * sxy - sx * sy) / det
    a = (sy - b * sx) / sw
    return a, b, max(0.0, syy - a * sy - b * sxy)


def _fit_bins(ts: Sequence[float], ys: Sequence[float], ws: Sequence[float]
              ) -> tuple[float, float, float, float]:
    """Best (tau, F_inf, F0 - F_inf, sse) over tau for bins at times ``ts`` (from the
    settled start)."""

    def sse(tau: float) -> tuple[float, float, float]:
        return _solve([math.exp(-t / tau) for t in ts], ys, ws)

    grid = [TAU_MIN_S * (TAU_MAX_S / TAU_MIN_S) ** (k / 47) for k in range(48)]
    costs = [sse(tau)[2] for tau in grid]
    k = min(range(len(grid)), key=costs.__getitem__)
    lo, hi = math.log(grid[max(0, k - 1)]), math.log(grid[min(len(grid) - 1, k + 1)])
    golden = (math.sqrt(5) - 1) / 2
    c, d = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fc, fd = sse(math.exp(c))[2], sse(math.exp(d))[2]
    for _ in range(30):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - golden * (hi - lo)
            fc = sse(math.exp(c))[2]
        else:
            lo, c, fc = c, d, fd
            d = lo + golden * (hi - lo)
            fd = sse(math.exp(d))[2]
    tau = math.exp((lo + hi) / 2)
    a, b, err = sse(tau)
    if costs[k] < err:
        tau = grid[k]
        a, b, err = sse(tau)
    return tau, a, b, err


def _bins(samples: Sequence[Sample], use: Sequence[bool], t0: float
          ) -> tuple[list[float], list[float], list[float]]:
    sums: dict[int, list[float]] = {}
    for (t, v), ok in zip(samples, use, strict=True):
        if ok:
            acc = sums.setdefault(int((t - t0) // BIN_S), [0.0, 0.0, 0.0])
            acc[0] += t - t0
            acc[1] += v
            acc[2] += 1
    ts = [acc[0] / acc[2] for acc in sums.values()]
    ys = [acc[1] / acc[2] for acc in sums.values()]
    return ts, ys, [acc[2] for acc in sums.values()]


def slack_splits(samples: Sequence[Sample], loaded: float) -> list[tuple[int, int]]:
    """The hold cut where the strap went slack (median-filtered below the loaded line, or
    below half the loaded median, for ``SLACK_S`` or more): each stretch between is a
    position of its own, ``(first, end)`` index ranges, in order."""
    smooth = _median3([v for _, v in samples])
    loaded_vals = [f for f in smooth if f >= loaded]
    if not loaded_vals:
        return []
    line = max(loaded, 0.5 * statistics.median(loaded_vals))
    parts: list[tuple[int, int]] = []
    begin: int | None = None
    low_from: int | None = None
    for i, f in enumerate(smooth):
        if f >= line:
            if begin is None:
                begin = i
            low_from = None
            continue
        if low_from is None:
            low_from = i
        if begin is not None and samples[i][0] - samples[low_from][0] >= SLACK_S:
            parts.append((begin, low_from))
            begin = None
    if begin is not None:
        parts.append((begin, len(samples) if low_from is None else low_from))
    return parts


def fit_hold(samples: Sequence[Sample], loaded: float = 1.0,
             left_out: Sequence[bool] | None = None) -> Relaxation | None:
    """Fit one hold's relaxation to its raw ``samples`` (time order). ``loaded`` is the
    strap's loaded line; ``left_out`` flags samples known to be bounce, over-pull or slack
    (the coach's). A hold that went slack and was taken up again is a new position each
    time: each stretch between slacks is fitted, and the one with a time constant that
    uses the most of the hold is kept. None when the hold has too little settled data."""
    if len(samples) < 20:
        return None
    tension_s = tension_seconds(samples, loaded)
    flags = list(left_out) if left_out is not None else [False] * len(samples)
    best: Relaxation | None = None
    for first, end in slack_splits(samples, loaded):
        pad = max(0, first - 3)  # the pull into the position, for its settled start
        fit = _fit_stretch(samples[pad:end], flags[pad:end], loaded, tension_s)
        if fit is not None and (best is None or _better(fit, best)):
            best = fit
    return best


def _better(a: Relaxation, b: Relaxation) -> bool:
    """A fit with a time constant beats one without; then the one using more of the hold."""
    if (a.tau_s is None) != (b.tau_s is None):
        return a.tau_s is not None
    return a.used_s > b.used_s


def _fit_stretch(samples: Sequence[Sample], left_out: Sequence[bool], loaded: float,
                 tension_s: float) -> Relaxation | None:
    """Fit one position's stretch of samples (see ``fit_hold``)."""
    if len(samples) < 20:
        return None
    smooth = _median3([v for _, v in samples])
    filtered = [(t, f) for (t, _), f in zip(samples, smooth, strict=True)]
    start = settled_start(filtered, loaded)
    if start is None:
        return None
    t0 = samples[start][0]
    after = samples[start:]
    flags = list(left_out[start:])
    level = statistics.median(v for _, v in after if v >= loaded) if any(
        v >= loaded for _, v in after) else 0.0
    slack_line = max(loaded, 0.5 * level)
    base = [not flag and f >= slack_line
            for flag, f in zip(flags, smooth[start:], strict=True)]
    use = list(base)
    fit: tuple[float, float, float, float] | None = None
    for _ in range(MAX_ROUNDS):
        ts, ys, ws = _bins(after, use, t0)
        if len(ts) < 4 or max(ts) - min(ts) < MIN_FIT_S:
            return None
        fit = _fit_bins(ts, ys, ws)
        tau, a, b, _ = fit
        resid = [v - (a + b * math.exp(-(t - t0) / tau)) for t, v in after]
        used = [r for r, ok in zip(resid, use, strict=True) if ok]
        centre = statistics.median(used)
        sigma = 1.4826 * statistics.median(abs(r - centre) for r in used)
        limit = max(OUTLIER_SIGMAS * sigma, OUTLIER_FLOOR * max(a + b, loaded))
        far = [abs(r - centre) > limit for r in resid]
        new = list(base)
        far_times = [t for (t, _), f in zip(after, far, strict=True) if f]
        j = 0
        for i, (t, _) in enumerate(after):
            while j < len(far_times) and far_times[j] < t - MARGIN_S:
                j += 1
            if j < len(far_times) and far_times[j] <= t + MARGIN_S:
                new[i] = False
        if new == use:
            break
        use = new
    assert fit is not None
    tau, a, b, _ = fit
    kept = [(t, v) for (t, v), ok in zip(after, use, strict=True) if ok]
    if len(kept) < 3:
        return None
    end_t = kept[-1][0]
    settled = a + b
    curve = [a + b * math.exp(-(t - t0) / tau) for t, _ in kept]
    sse = sum((v - c) ** 2 for (_, v), c in zip(kept, curve, strict=True))
    rms = math.sqrt(sse / len(kept))
    mean = statistics.fmean(v for _, v in kept)
    sst = sum((v - mean) ** 2 for _, v in kept)
    edge = tau <= TAU_MIN_S * 1.05 or tau >= TAU_MAX_S / 1.05

    def gone(t: float) -> float:
        if settled <= 0:
            return 0.0
        return 100.0 * (settled - (a + b * math.exp(-t / tau))) / settled

    dt = [t1 - t0_ for (t0_, _), (t1, _) in zip(samples, samples[1:], strict=False)]
    period = statistics.median(dt) if dt else 0.1
    used_s = len(kept) * period
    span = samples[-1][0] - t0
    return Relaxation(
        start_t=t0, settled=settled, floor=a, tau_s=None if edge else tau,
        relax_30=gone(30.0) if end_t - t0 >= 30.0 - 1e-6 else None,
        relax_45=gone(45.0) if end_t - t0 >= 45.0 - 1e-6 else None,
        relax_end=gone(end_t - t0), end_t=end_t, rms=rms,
        r2=None if sst <= 0 else max(0.0, 1.0 - sse / sst),
        used_s=used_s, left_out_s=max(0.0, span - used_s), tension_s=tension_s,
        fitted_tau_s=tau,
    )


FIGURES = ("settled", "relax_30", "relax_45", "relax_end", "tau_s", "fit", "tension_s")
"""The relaxation figures of a hold, as events, the history and the network name them:
settled force (kg or rel), percent relaxed at 30 s, 45 s and the end, time constant (s),
fit quality (0..100) and time under tension (s)."""


def relaxation_figures(fit: Relaxation | None, tension_s: float | None = None
                       ) -> dict[str, float | None]:
    """A hold's relaxation as ``FIGURES`` (rounded; None where there is no fit)."""

    def r(v: float | None, digits: int = 2) -> float | None:
        return None if v is None else round(v, digits)

    if fit is None:
        out: dict[str, float | None] = dict.fromkeys(FIGURES)
        out["tension_s"] = r(tension_s, 1)
        return out
    return {"settled": r(fit.settled), "relax_30": r(fit.relax_30, 1),
            "relax_45": r(fit.relax_45, 1), "relax_end": r(fit.relax_end, 1),
            "tau_s": r(fit.tau_s, 1), "fit": r(fit.quality, 1),
            "tension_s": r(fit.tension_s, 1)}
