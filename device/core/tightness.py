"""Objective tightness from the strap: a per-leg index against the leg's own first weeks,
and the left/right asymmetry of each relaxation figure. Pure functions.

The figures of a hold come from its relaxation fit (``device.core.relaxation``): the
settled force F0 (the force needed at the position the person settled in), the percent
of it gone 30 s later, and the time constant tau. The **tightness index** of a hold is the
force still needed to stay in that position after 30 s, ``F30 = F0 * (1 - relax_30 / 100)``,
as a percentage of the same leg's baseline: the median F30 of its first ``BASELINE_HOLDS``
fitted holds (its first weeks). 100: as in the first weeks; above: more force for the
held position (tighter, or pulled further into the stretch); below: less.

The **asymmetry** of a figure is ``(right - left) / mean(right, left)`` in percent: 0 is
even, positive means the right leg's figure is the larger.

What it cannot tell: the box knows force, not angle, so "the same position" is the
position the person settles in, which moves as they progress (range of motion usually
grows mainly through a higher tolerance of the stretch); and a strap pulled by the arms
mixes the leg's relaxation with the arms' own movement.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

BASELINE_HOLDS = 6
"""A leg's baseline: the median of its first this many holds with a relaxation fit."""

ASYMMETRY_FIGURES = ("settled", "relax_30", "tau_s", "index")
"""The figures whose left/right asymmetry is reported."""


class FittedHold(Protocol):
    """What the index needs of a hold (a ``HoldRecord`` or ``HoldResult``)."""

    @property
    def leg(self) -> str: ...

    @property
    def settled(self) -> float | None: ...

    @property
    def relax_30(self) -> float | None: ...

    @property
    def relax_end(self) -> float | None: ...


def held_force(settled: float | None, relax_30: float | None,
               relax_end: float | None = None) -> float | None:
    """F30: the settled force less what relaxed by 30 s (by the end if the fit did not
    reach 30 s); None without a fit."""
    if settled is None or settled <= 0:
        return None
    gone = relax_30 if relax_30 is not None else relax_end
    if gone is None:
        return None
    return settled * (1.0 - gone / 100.0)


def baseline(holds: Iterable[FittedHold], n: int = BASELINE_HOLDS) -> float | None:
    """The median F30 of the first ``n`` fitted ``holds`` (oldest first; one leg)."""
    forces: list[float] = []
    for h in holds:
        f = held_force(h.settled, h.relax_30, h.relax_end)
        if f is not None:
            forces.append(f)
            if len(forces) >= n:
                break
    return statistics.median(forces) if forces else None


def tightness_index(hold: FittedHold, base: float | None) -> float | None:
    """The hold's F30 as a percentage of the leg's ``base`` (None without either)."""
    f = held_force(hold.settled, hold.relax_30, hold.relax_end)
    if f is None or base is None or base <= 0:
        return None
    return round(100.0 * f / base, 1)


def _mean(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.fmean(got) if got else None


def leg_figures(holds: Sequence[Any], leg: str) -> dict[str, float | None]:
    """One leg's figures in a session: the mean over its holds of settled, relax_30,
    relax_end, tau_s and index (None where no hold had it)."""
    mine = [h for h in holds if h.leg == leg]
    out: dict[str, float | None] = {}
    for key in ("settled", "relax_30", "relax_end", "tau_s", "index"):
        value = _mean(getattr(h, key, None) for h in mine)
        out[key] = None if value is None else round(value, 2 if key == "settled" else 1)
    return out


def asymmetry(right: float | None, left: float | None) -> float | None:
    """``(right - left) / mean(right, left)`` in percent (None without both, or a mean
    of 0)."""
    if right is None or left is None:
        return None
    mid = (right + left) / 2.0
    if mid == 0:
        return None
    return round(100.0 * (right - left) / abs(mid), 1)


def session_tightness(holds: Sequence[Any]) -> dict[str, Any] | None:
    """A session's per-leg figures and their asymmetry, or None when no hold had a fit::

        {"right": {settled, relax_30, relax_end, tau_s, index},
         "left": {...}, "asymmetry": {settled, relax_30, tau_s, index}}
    """
    legs = {leg: leg_figures(holds, leg) for leg in ("right", "left")}
    if all(v is None for figures in legs.values() for v in figures.values()):
        return None
    asym = {key: asymmetry(legs["right"][key], legs["left"][key]) for key in ASYMMETRY_FIGURES}
    return {**legs, "asymmetry": asym}


ANSWER_LEVEL = {"easy": 0, "tight": 1, "very_tight": 2}


def disagreement(sessions: Sequence[Mapping[str, Any]], leg: str, runs: int = 3
                 ) -> str | None:
    """Where the measure and the person's answers ("how tight?") have gone opposite ways
    over the last ``runs`` sessions of ``leg`` (each a mapping with ``index`` and
    ``answer``, oldest first): "looser" (index down by 10 or more while the answers got
    tighter), "tighter" (index up by 10 or more while the answers got easier), else None."""
    pts = [(s["index"], ANSWER_LEVEL[s["answer"]]) for s in sessions
           if s.get("index") is not None and s.get("answer") in ANSWER_LEVEL][-runs:]
    if len(pts) < runs:
        return None
    d_index = pts[-1][0] - pts[0][0]
    d_answer = pts[-1][1] - pts[0][1]
    if d_index <= -10 and d_answer > 0:
        return "looser"
    if d_index >= 10 and d_answer < 0:
        return "tighter"
    return None
