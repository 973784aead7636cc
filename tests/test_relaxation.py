"""The relaxation model of a hold (device/core/relaxation.py) on synthetic holds, and
steadiness measured around it (no clock, no sleeping)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from bench.holds import RAMP_AT, RAMP_S, errors, make_hold
from device.core.relaxation import fit_hold, settled_start, tension_seconds
from device.core.tension import TensionCoach
from drivers.fake_nau7802 import StrapModel

CASES = list(itertools.product((8.0, 15.0, 25.0, 40.0), (0.10, 0.25, 0.45), (60.0, 120.0, 300.0)))


@pytest.mark.parametrize(("tau", "relax", "length"), CASES)
def test_fit_recovers_tau_and_relaxation_within_15_percent(tau: float, relax: float,
                                                            length: float) -> None:
    seed = int(tau * 1000 + relax * 100 + length)
    hold = make_hold(seed, relax=relax, tau_s=tau, length_s=length)  # with bounce, over-pull
    fit = fit_hold(hold.samples)
    assert fit is not None and fit.tau_s is not None
    err = errors(hold, fit)
    assert err["tau"] < 0.15 and err["relax_end"] < 0.15 and err["relax_30"] < 0.15, err
    assert fit.relax_45 is not None
    assert abs(fit.start_t - (RAMP_AT + RAMP_S)) <= 0.3  # the end of the pull into it
    # the bounce (5 s) and the over-pull (4 s) are left out, with a margin, not fitted
    assert 9.0 <= fit.left_out_s <= 9.0 + 2 * 2 * 1.0 + 5.0
    assert fit.quality > 95 and fit.rms < 0.05


def test_without_leaving_the_mistakes_out_the_fit_would_be_wrong() -> None:
    """The test above can fail: the same hold fitted with every sample kept is off."""
    import device.core.relaxation as relaxation

    hold = make_hold(7, relax=0.2, tau_s=15.0, length_s=90.0)
    saved = relaxation.MAX_ROUNDS
    relaxation.MAX_ROUNDS = 1  # one fit, nothing left out
    try:
        naive = fit_hold(hold.samples)
    finally:
        relaxation.MAX_ROUNDS = saved
    assert naive is not None
    assert max(errors(hold, naive).values()) > 0.15
    fit = fit_hold(hold.samples)
    assert fit is not None and max(errors(hold, fit).values()) < 0.15


def test_the_callers_flags_are_left_out_from_the_start() -> None:
    hold = make_hold(3, relax=0.3, tau_s=20.0, length_s=90.0, mistakes=False)
    flags = [60.0 <= t < 70.0 for t, _ in hold.samples]
    fit = fit_hold(hold.samples, left_out=flags)
    assert fit is not None and fit.left_out_s >= 10.0


def test_a_flat_hold_has_no_time_constant_and_no_relaxation() -> None:
    model = StrapModel(0.0, noise_kg=0.02, creep_kg_per_min=0.0, seed=2)
    model.set_level(1.0, 6.0, ramp_s=1.0)
    samples = [(k / 10, model.kg(k / 10)) for k in range(900)]
    fit = fit_hold(samples)
    assert fit is not None
    assert abs(fit.relax_end) < 1.0 and fit.settled == pytest.approx(6.0, abs=0.05)


def test_too_little_is_not_fitted() -> None:
    assert fit_hold([(k / 10, 5.0) for k in range(10)]) is None
    assert fit_hold([(k / 10, 0.2) for k in range(300)]) is None  # never loaded


def test_settled_start_and_time_under_tension() -> None:
    samples = [(k / 10, min(5.0, k / 10)) for k in range(100)]  # a 5 s pull, then flat
    i = settled_start(samples, 1.0)
    assert i is not None and samples[i][0] == pytest.approx(5.0)
    assert tension_seconds(samples, 1.0) == pytest.approx(8.85, abs=0.1)  # 1.0 .. 9.9 s


def test_the_core_fit_needs_no_numpy() -> None:
    code = ("import sys, device.core.relaxation, device.core.tension; "
            "sys.exit('numpy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- steadiness around the curve ------------------------------------------------------------


def coach_hold(model: StrapModel, length: float) -> TensionCoach:
    coach = TensionCoach()
    for k in range(int((length + 2.0) * 10)):
        coach.add(k / 10, model.kg(k / 10))
    return coach


@pytest.mark.parametrize("length", [90.0, 300.0])
def test_a_still_relaxing_hold_is_steady(length: float) -> None:
    model = StrapModel(0.0, noise_kg=0.05, creep_kg_per_min=0.0, relax=0.36, tau_s=15.0,
                       seed=4)  # about a third gone over 90 s, as in Magnusson 1996
    model.set_level(1.0, 8.0, ramp_s=1.0)
    summary = coach_hold(model, length).summary()
    assert summary.relaxation is not None
    assert 30.0 <= summary.relaxation.relax_end <= 37.0
    assert summary.steadiness is not None and summary.steadiness >= 90  # "steady" is 75


def test_a_bouncing_relaxing_hold_is_not_steady() -> None:
    model = StrapModel(0.0, noise_kg=0.05, creep_kg_per_min=0.0, relax=0.36, tau_s=15.0,
                       seed=4)
    model.set_level(1.0, 8.0, ramp_s=1.0)
    model.bounce(20.0, 40.0, amplitude_kg=3.0)
    summary = coach_hold(model, 90.0).summary()
    assert summary.steadiness is not None and summary.steadiness < 75
    assert summary.relaxation is not None  # the bounce is left out of the curve
    assert 30.0 <= summary.relaxation.relax_end <= 37.0
