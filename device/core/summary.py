"""What the voice says about the history: the after-session summary and a hold's growth.

The words are the routine's ([summary] and [progress] in its TOML file); this module only
picks the pieces, fills the numbers in and joins them into sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

from device.core.records import HoldRecord
from device.core.routine import Routine, fill


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration_words(seconds: float) -> str:
    """Seconds as spoken: "60 seconds", "1 minute 30 seconds", "5 minutes"."""
    s = max(0, int(round(seconds)))
    if s < 90:
        return _plural(s, "second")
    m, r = divmod(s, 60)
    return _plural(m, "minute") + (f" {_plural(r, 'second')}" if r else "")


def growth_line(routine: Routine, leg: str, hold_s: float) -> str:
    """What the voice says when ``leg``'s hold grows to ``hold_s`` seconds."""
    return fill(routine.growth, leg=leg, duration=duration_words(hold_s))


def _steadiness_words(words: dict[str, str], value: float) -> str:
    key = "steady" if value >= 75 else "fairly_steady" if value >= 50 else "shaky"
    return fill(words[key], score=round(value))


def summary_line(routine: Routine, holds: Sequence[HoldRecord], sessions_this_week: int,
                 streak_days: int) -> str:
    """A short friendly line for the voice after a session, worded by ``routine``.

    With the built-in wording, e.g. "Nice work. Right leg 60 seconds, left leg 60 seconds.
    That's 3 sessions this week, and a 2 day streak." Early ends and the strap's
    steadiness (0..100) are mentioned; each sentence starts with a capital.
    """
    words = routine.summary
    legs: dict[str, list[HoldRecord]] = {}
    for h in holds:
        legs.setdefault(h.leg, []).append(h)
    parts: list[str] = []
    plain = True
    for leg, hs in legs.items():
        duration = duration_words(sum(h.held_s for h in hs))
        text = (fill(words["leg_holds"], leg=leg, duration=duration, holds=len(hs))
                if len(hs) > 1 else fill(words["leg"], leg=leg, duration=duration))
        extras = []
        if any(h.ended == "early" for h in hs):
            extras.append(words["ended_early"])
        steady = [h.steadiness for h in hs if h.steadiness is not None]
        if any(h.overpull_s for h in hs):
            extras.append(words["overpulled"])  # never "steady" when it pulled too hard
        elif steady:
            extras.append(_steadiness_words(words, sum(steady) / len(steady)))
        plain = plain and not extras
        parts.append(", ".join([text, *extras]))
    if not holds:
        opener = words["empty"]
    elif any(h.ended == "early" for h in holds):
        opener = words["early"]
    else:
        opener = words["complete"]
    sentences = [opener]
    if parts:
        sentences += [", ".join(parts) + "."] if plain else [p + "." for p in parts]
    week = ("" if sessions_this_week <= 0 else words["first_this_week"]
            if sessions_this_week == 1 else fill(words["this_week"], sessions=sessions_this_week))
    if streak_days >= 2:
        streak = fill(words["streak"], days=streak_days)
        week = (fill(words["week_and_streak"], week=week, streak=streak) if week
                else fill(words["streak_alone"], streak=streak))
    if week:
        sentences.append(week + ".")
    sentences[1:] = [s[0].upper() + s[1:] for s in sentences[1:]]
    return " ".join(sentences)
