"""Synthetic strap holds with a known relaxation, and the "relaxation" benchmark: how well
and how fast ``device.core.relaxation.fit_hold`` recovers them.

A hold: the strap pulled to ``F0`` over a second, then relaxing as
``F0 * (1 - relax * (1 - exp(-t / tau)))`` (the simulated strap's own model), sampled at
10 Hz with Gaussian noise at the ADC's level (0.02 kg: a NAU7802 at 10 SPS on a 50 kg cell
is quieter still), with a bout of bouncing (half of F0, 1.5 Hz, 5 s) and an over-pull
(0.8 x F0 on top for 4 s) at random places, and the release at the end.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from device.core.relaxation import Relaxation, fit_hold
from drivers.fake_nau7802 import StrapModel

RAMP_AT = 2.0  # the pull into the stretch starts here (s) ...
RAMP_S = 1.0  # ... and takes this long: relaxation runs from RAMP_AT + RAMP_S
ADC_NOISE_KG = 0.02


@dataclass(frozen=True)
class Hold:
    """One synthetic hold and its truth."""

    f0: float
    relax: float  # 0..1 of F0, as t -> infinity
    tau_s: float
    length_s: float
    samples: list[tuple[float, float]]

    def true_gone(self, t: float) -> float:
        """Percent of F0 gone ``t`` s after the settled start."""
        return 100.0 * self.relax * (1.0 - math.exp(-t / self.tau_s))


def make_hold(seed: int, *, f0: float | None = None, relax: float | None = None,
              tau_s: float | None = None, length_s: float | None = None,
              noise_kg: float = ADC_NOISE_KG, hz: float = 10.0, mistakes: bool = True) -> Hold:
    """A hold drawn from ``seed`` (F0 3-12 kg, relaxation 10-45 %, tau 8-40 s, 60-300 s)
    unless given; ``mistakes`` adds the bounce and the over-pull."""
    rng = random.Random(seed)
    f0 = rng.uniform(3.0, 12.0) if f0 is None else f0
    relax = rng.uniform(0.10, 0.45) if relax is None else relax
    tau_s = rng.uniform(8.0, 40.0) if tau_s is None else tau_s
    length_s = rng.uniform(60.0, 300.0) if length_s is None else length_s
    model = StrapModel(0.0, noise_kg=noise_kg, creep_kg_per_min=0.0, relax=relax,
                       tau_s=tau_s, seed=seed)
    model.set_level(RAMP_AT, f0, ramp_s=RAMP_S)
    start = RAMP_AT + RAMP_S
    if mistakes:
        model.bounce(start + rng.uniform(8.0, 0.45 * length_s), 5.0, amplitude_kg=0.5 * f0)
        model.pull(start + rng.uniform(0.5 * length_s, 0.9 * length_s), 4.0, 0.8 * f0)
    model.set_level(start + length_s, 0.0, ramp_s=RAMP_S)
    n = int((start + length_s + 2.0) * hz)
    samples = [(k / hz, model.kg(k / hz)) for k in range(n)]
    return Hold(f0, relax, tau_s, length_s, samples)


def errors(hold: Hold, fit: Relaxation) -> dict[str, float]:
    """Relative errors of the fit's tau and relaxation (at 30 s and at the end)."""
    start = RAMP_AT + RAMP_S
    out = {"tau": abs((fit.tau_s or math.inf) - hold.tau_s) / hold.tau_s}
    true_end = hold.true_gone(fit.end_t - start)
    out["relax_end"] = abs(fit.relax_end - true_end) / true_end
    if fit.relax_30 is not None:
        true_30 = hold.true_gone(30.0)
        out["relax_30"] = abs(fit.relax_30 - true_30) / true_30
    out["settled"] = abs(fit.settled - hold.f0) / hold.f0
    return out


def run_relaxation(holds: int) -> dict[str, Any]:
    """Fit ``holds`` synthetic holds; errors and fit time per hold (CPU of this process)."""
    worst: dict[str, float] = {}
    errs: dict[str, list[float]] = {}
    cost_ms: list[float] = []
    per_300: list[float] = []
    failed = 0
    for seed in range(holds):
        hold = make_hold(seed)
        t0 = time.process_time()
        fit = fit_hold(hold.samples)
        took = (time.process_time() - t0) * 1000
        cost_ms.append(took)
        per_300.append(took * 300.0 / hold.length_s)
        if fit is None:
            failed += 1
            continue
        for key, value in errors(hold, fit).items():
            errs.setdefault(key, []).append(value)
            worst[key] = max(worst.get(key, 0.0), value)
    return {
        "holds": holds, "failed": failed,
        "median_err": {k: statistics.median(v) for k, v in errs.items()},
        "worst_err": worst,
        "cost_ms_median": statistics.median(cost_ms), "cost_ms_max": max(cost_ms),
        "cost_ms_per_300s_median": statistics.median(per_300),
    }


def bench_relaxation(plan: Any, scratch: Any, env: Any, bench: Any) -> None:
    """The benchmark row: recovery errors and the fit's cost per hold."""
    from bench.report import Figure

    res = run_relaxation(10 if plan.quick else 200)
    bench.raw = res
    worst, median = res["worst_err"], res["median_err"]
    bench.figures.append(Figure(
        key="relaxation.tau_err_worst", label=f"tau, worst relative error of {res['holds']}",
        value=100 * worst["tau"], unit="%", target_op="<=", target=15.0,
        note=f"median {100 * median['tau']:.1f} %"))
    bench.figures.append(Figure(
        key="relaxation.relax_err_worst", label="relaxation at the end, worst relative error",
        value=100 * worst["relax_end"], unit="%", target_op="<=", target=15.0,
        note=f"median {100 * median['relax_end']:.1f} %"))
    bench.figures.append(Figure(
        key="relaxation.fit_ms", label="fit cost per hold (CPU, median; 60-300 s at 10 Hz)",
        value=res["cost_ms_median"], unit="ms",
        note=f"max {res['cost_ms_max']:.0f} ms; per 300 s of hold "
             f"{res['cost_ms_per_300s_median']:.0f} ms"))
    bench.notes.append(
        f"synthetic holds: F0 3-12 kg, relaxation 10-45 %, tau 8-40 s, 60-300 s, noise "
        f"{ADC_NOISE_KG} kg, a 5 s bounce and a 4 s over-pull each; {res['failed']} not fitted")
