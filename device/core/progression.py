"""Hold progression (pure): a leg's hold grows after enough steady, complete sessions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from device.core.config import Config
from device.core.records import MAX_HOLD_S, LegSession

MIN_HOLD_S = 60.0  # the article: 60 s ...
HOLD_CHOICES_S = (60.0, 120.0, 180.0, 300.0)  # what an idle long press cycles through
TIGHTNESS = ("easy", "tight", "very_tight")


def adjust_for_tightness(planned_s: float, answer: str | None, step_s: float,
                         min_s: float = MIN_HOLD_S, max_s: float = MAX_HOLD_S) -> float:
    """A leg's next hold after the answer to "how tight was it?" (s): very tight, one step
    longer (up to ``max_s``, the article's 5 minutes); easy, one step shorter (down to
    ``min_s``, its 60 s); tight or no answer, the same."""
    if answer == "very_tight":
        return float(min(max_s, max(planned_s, min_s) + step_s))
    if answer == "easy":
        return float(max(min_s, min(planned_s, max_s) - step_s))
    return float(planned_s)


def tightness_plan(sessions: Sequence[LegSession], step_s: float) -> float | None:
    """The next hold (s) set by the newest answered hold of a leg (its sessions newest
    first), or None when no hold of it was ever answered. A hold that hurt is never
    followed by a longer one, nor is one given up before half its planned time."""
    for s in sessions:
        for h in reversed(s.holds):
            if h.hurt:
                return float(h.planned_s)
            if h.tightness is not None:
                nxt = adjust_for_tightness(h.planned_s, h.tightness, step_s)
                if h.held_s < h.planned_s / 2:
                    nxt = min(nxt, float(h.planned_s))
                return nxt
    return None


def since_base(sessions: Sequence[LegSession], base_s: float) -> list[LegSession]:
    """A leg's sessions (newest first) held since the set hold length became ``base_s``:
    what the person set is the base, and answers and growth move from it. Holds recorded
    before the base was kept (no ``base_s``) count as held at it."""
    out = []
    for s in sessions:
        if any(h.base_s is not None and abs(h.base_s - base_s) > 0.5 for h in s.holds):
            break
        out.append(s)
    return out


@dataclass(frozen=True)
class Progression:
    """The next hold for one leg (seconds) and why."""

    hold_s: float  # the next hold's length
    previous_s: float  # the length the leg was last offered (or the base)
    grew: bool  # True when earned (the routine's growth line is said)
    streak: int  # qualifying sessions in a row at previous_s
    needed: int  # sessions needed to grow


def next_hold_seconds(sessions: Sequence[LegSession], base_s: float, step_s: float = 15,
                      max_s: float = MAX_HOLD_S, sessions_needed: int = 3,
                      require_steady: float | None = None) -> Progression:
    """Progression for one leg from its sessions, newest first (the store's ``leg_progress``).

    The current length is the newest offered hold (never below ``base_s`` nor above
    ``max_s``). Counting back from the newest session, a complete session whose holds for
    the leg were all planned at the current length, all held to the end and (when
    ``require_steady`` is set and the strap reported it) at least that steady, adds one;
    a cancelled session, an early end or another length stops the count. Interrupted
    sessions (shutdown, power) and sessions without this leg are neutral. After
    ``sessions_needed`` in a row the hold grows by ``step_s``, up to ``max_s``.
    """
    if not 0 < base_s <= max_s <= MAX_HOLD_S:
        raise ValueError(f"need 0 < base_s <= max_s <= {MAX_HOLD_S:g} s")
    if step_s <= 0 or sessions_needed < 1:
        raise ValueError("step_s must be > 0 and sessions_needed >= 1")
    relevant = [s for s in sessions if s.outcome != "interrupted"]
    offered = next((max(h.planned_s for h in s.holds) for s in relevant if s.holds), base_s)
    current = min(max(offered, base_s), max_s)
    streak = 0
    for s in relevant:
        if s.outcome == "cancelled":
            break
        if not s.holds:
            continue
        if any(abs(h.planned_s - current) > 0.5 or h.ended != "complete" for h in s.holds):
            break
        if require_steady is not None and any(
                h.steadiness is not None and h.steadiness < require_steady for h in s.holds):
            break
        streak += 1
    if streak >= sessions_needed and current < max_s:
        return Progression(min(current + step_s, max_s), current, True, streak, sessions_needed)
    return Progression(current, current, False, streak, sessions_needed)


def next_hold(config: Config, sessions: Callable[[], Sequence[LegSession]]) -> tuple[float, bool]:
    """The box's one next-hold rule: a leg's next hold (s), and whether it grew (then the
    growth line is said). ``sessions()`` gives the leg's sessions, newest first (the
    store's ``leg_progress``); it is asked only when the rule needs them.

    When the routine asks how tight a hold was, the newest answer sets it; else, with
    ``history.progression`` off, ``session.hold_seconds``; else ``next_hold_seconds``.
    What the person set wins: only sessions held since ``session.hold_seconds`` became
    the base count (``since_base``)."""
    base = config.session.hold_seconds
    h = config.history
    if not config.session.ask_tightness and h.progression == "off":
        return base, False
    past = since_base(sessions(), base)
    if config.session.ask_tightness:
        answered = tightness_plan(past, config.session.tightness_step_seconds)
        if answered is not None:
            return answered, False
    if h.progression == "off":
        return base, False
    progress = next_hold_seconds(
        past, base, step_s=h.step_seconds, max_s=max(h.max_seconds, base),
        sessions_needed=h.sessions_to_grow, require_steady=h.min_steadiness or None,
    )
    return progress.hold_s, progress.grew
