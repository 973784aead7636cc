"""What a session is, as the history keeps it: holds, sessions, one leg's view, and JSON.

Plain frozen dataclasses that check themselves on creation; times are aware datetimes,
durations seconds. The store, the fallback file, the report and the habit maths all
speak these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from device.core.tightness import session_tightness

LEGS = ("right", "left")
OUTCOMES = ("complete", "cancelled", "interrupted")
HOLD_ENDS = ("complete", "early", "cancelled", "interrupted")
TIGHTNESS = (None, "easy", "tight", "very_tight")
MAX_HOLD_S = 300.0  # the product allows holds of 60 s to 5 min
RELAX_FIELDS = ("settled", "relax_30", "relax_45", "relax_end", "tau_s", "fit", "tension_s",
                "index")
"""A hold's relaxation figures and tightness index, in the history's order."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class HoldRecord:
    """One hold of one leg: planned and held seconds, how it ended, strap figures if fitted."""

    leg: str  # "right" | "left"
    round: int  # 1-based
    planned_s: float
    held_s: float
    ended: str  # "complete" | "early" | "cancelled" | "interrupted" (the session stopped)
    mean: float | None = None  # strap tension (kg, or relative units without calibration)
    peak: float | None = None
    steadiness: float | None = None  # 0..100
    tightness: str | None = None  # the answer after the hold: easy, tight, very_tight
    overpull_s: float | None = None  # with a strap: seconds spent over-pulling
    # with a strap, how the hold relaxed (device.core.relaxation.FIGURES) ...
    settled: float | None = None  # the settled force (kg or rel)
    relax_30: float | None = None  # percent of it gone 30 s later
    relax_45: float | None = None  # ... 45 s later
    relax_end: float | None = None  # ... at the hold's end
    tau_s: float | None = None  # time constant of the fitted curve (s)
    fit: float | None = None  # fit quality 0..100
    tension_s: float | None = None  # time under tension (s)
    index: float | None = None  # tightness index: 100 = this leg's first weeks
    hurt: bool = False  # a long press during the question: that hold hurt
    pre_s: float | None = None  # s in the stretch before the hold clock (strap, else set-up)
    base_s: float | None = None  # session.hold_seconds when it was held (the set base)

    def __post_init__(self) -> None:
        object.__setattr__(self, "round", int(self.round))  # numpy numbers become plain ones
        if self.tightness not in TIGHTNESS:
            raise ValueError(f"hold tightness {self.tightness!r}: must be one of {TIGHTNESS}")
        object.__setattr__(self, "hurt", bool(self.hurt))
        for name in ("planned_s", "held_s", "mean", "peak", "steadiness", "overpull_s",
                     *RELAX_FIELDS, "pre_s", "base_s"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        if self.leg not in LEGS:
            raise ValueError(f"hold leg {self.leg!r}: must be one of {LEGS}")
        if self.round < 1:
            raise ValueError(f"hold round {self.round}: must be >= 1")
        if self.ended not in HOLD_ENDS:
            raise ValueError(f"hold ended {self.ended!r}: must be one of {HOLD_ENDS}")
        for name in ("planned_s", "held_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"hold {name} {value!r}: must be a finite number >= 0")
        if self.steadiness is not None and not 0 <= self.steadiness <= 100:
            raise ValueError(f"hold steadiness {self.steadiness!r}: must be 0..100")


@dataclass(frozen=True)
class SessionRecord:
    """One session: aware start and end, outcome, routine name and its holds in order."""

    started: datetime  # aware
    ended: datetime  # aware
    outcome: str  # "complete" | "cancelled" | "interrupted"
    routine: str  # e.g. "hamstring"
    holds: tuple[HoldRecord, ...] = field(default=())
    # the session's own id (the box draws one per session): the history stores a session
    # once per id, so two sessions that began at the same instant are two (issue 22);
    # None: the start instant stands in for it
    uid: str | None = field(default=None, compare=False)
    # How its dates were known (device.core.timetrust): synced, phone, corrected or untrusted
    # (kept and marked; never in a streak or a week). boot_id and mono_s (monotonic s at
    # the start) let an untrusted session be corrected later in the same boot.
    clock: str = "synced"
    boot_id: str | None = None
    mono_s: float | None = None

    @property
    def trusted(self) -> bool:
        """Its dates can be believed (streaks, weeks and the nudge count only these)."""
        return self.clock != "untrusted"

    def __post_init__(self) -> None:
        if self.clock not in ("synced", "phone", "corrected", "untrusted"):
            raise ValueError(f"session clock {self.clock!r}: synced, phone, corrected or "
                             "untrusted")
        for name in ("started", "ended"):
            if is_naive(getattr(self, name)):
                raise ValueError(f"session {name} must be an aware datetime")
        if self.ended < self.started:
            raise ValueError("session ended before it started")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"session outcome {self.outcome!r}: must be one of {OUTCOMES}")
        object.__setattr__(self, "holds", tuple(self.holds))


@dataclass(frozen=True)
class LegSession:
    """One session seen from one leg: when, its outcome, and that leg's holds (maybe none)."""

    started: datetime
    outcome: str
    holds: tuple[HoldRecord, ...]

    @classmethod
    def of(cls, session: SessionRecord, leg: str) -> LegSession:
        """The ``leg`` view of ``session``."""
        return cls(session.started, session.outcome,
                   tuple(h for h in session.holds if h.leg == leg))


def is_naive(dt: datetime) -> bool:
    """True when ``dt`` has no usable time zone."""
    return dt.tzinfo is None or dt.utcoffset() is None


def instant_us(dt: datetime) -> int:
    """Exact microseconds since the Unix epoch (a session's identity and sort key)."""
    return (dt - _EPOCH) // _US


def session_to_dict(s: SessionRecord) -> dict[str, Any]:
    """The stable JSON shape of a session (see ``history_report`` for the documentation)."""

    out: dict[str, Any] = {
        "started": s.started.isoformat(),
        "ended": s.ended.isoformat(),
        "outcome": s.outcome,
        "routine": s.routine,
        "clock": s.clock,
        "holds": [
            {"leg": h.leg, "round": h.round, "planned_s": h.planned_s, "held_s": h.held_s,
             "ended": h.ended, "mean": h.mean, "peak": h.peak, "steadiness": h.steadiness,
             "tightness": h.tightness, "overpull_s": h.overpull_s,
             **{k: getattr(h, k) for k in RELAX_FIELDS}, "hurt": h.hurt,
             "pre_s": h.pre_s, "base_s": h.base_s}
            for h in s.holds
        ],
    }
    figures = session_tightness(s.holds)
    if figures is not None:
        out["legs"] = figures
    return out


def session_from_dict(d: Mapping[str, Any]) -> SessionRecord:
    """Inverse of ``session_to_dict``; raises ValueError/KeyError/TypeError on bad input."""
    holds = tuple(
        HoldRecord(leg=h["leg"], round=int(h["round"]), planned_s=float(h["planned_s"]),
                   held_s=float(h["held_s"]), ended=h["ended"], mean=h.get("mean"),
                   peak=h.get("peak"), steadiness=h.get("steadiness"),
                   tightness=h.get("tightness"), overpull_s=h.get("overpull_s"),
                   **{k: h.get(k) for k in RELAX_FIELDS},
                   hurt=bool(h.get("hurt", False)), pre_s=h.get("pre_s"),
                   base_s=h.get("base_s"))
        for h in d["holds"]
    )
    uid = d.get("uid")
    return SessionRecord(datetime.fromisoformat(d["started"]), datetime.fromisoformat(d["ended"]),
                         d["outcome"], d["routine"], holds,
                         uid if isinstance(uid, str) and 0 < len(uid) <= 64 else None,
                         clock=d.get("clock", "synced"), boot_id=d.get("boot_id"),
                         mono_s=d.get("mono_s"))
