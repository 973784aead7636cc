"""History for the page: an SVG chart drawn here (no chart library, nothing from the net).

Hold time per leg over the weeks (each session: the mean held seconds of that leg's holds),
strap steadiness when recorded, and a calendar of stretch days. Colours come from CSS
classes, so the page's light and dark themes style the chart. The time axis spans the data
(at least a week, at most ``weeks``); a hold cut short by stopping the session is a mark on
the axis, not a hold length (a hold stopped at 8 s says nothing of how long one can hold).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from xml.sax.saxutils import escape

from device.core.records import LEGS, SessionRecord
from device.core.streaks import local_day, streak_days

W, H = 360, 230  # viewBox of the hold chart (a phone's width, so text stays readable)
PAD_L, PAD_R, PAD_T, PAD_B = 30, 26, 26, 22
STOPPED = ("cancelled", "interrupted")  # how a hold ends when its session was stopped
MIN_SPAN = timedelta(days=7)
TICK_DAYS = (1, 2, 3, 7, 14, 21, 28)  # spacing of the date labels, the first that fits 6


def _leg_points(sessions: Sequence[SessionRecord], leg: str, field: str,
                tz: tzinfo) -> list[tuple[datetime, float]]:
    points = []
    for s in sessions:
        values = [getattr(h, field) for h in s.holds if h.leg == leg and h.ended not in STOPPED]
        values = [v for v in values if v is not None]
        if values:
            points.append((s.started.astimezone(tz), sum(values) / len(values)))
    return points


def _stopped(sessions: Sequence[SessionRecord], leg: str,
             tz: tzinfo) -> list[tuple[datetime, float]]:
    """(start, held s) of each of ``leg``'s holds cut short by stopping the session."""
    return [(s.started.astimezone(tz), h.held_s) for s in sessions for h in s.holds
            if h.leg == leg and h.ended in STOPPED]


def span_start(sessions: Sequence[SessionRecord], end: datetime, weeks: int) -> datetime:
    """The axis's left end: the first session (less half a day), within ``weeks`` weeks
    and at least ``MIN_SPAN`` before ``end``."""
    earliest = end - timedelta(weeks=weeks)
    first = min((s.started for s in sessions if s.started >= earliest), default=end)
    return max(earliest, min(first - timedelta(hours=12), end - MIN_SPAN))


def hold_chart(sessions: Sequence[SessionRecord], now: datetime, tz: tzinfo,
               weeks: int = 12) -> str:
    """An SVG (text) of held seconds per leg, over the days the data spans (at most the
    last ``weeks`` weeks)."""
    end = now.astimezone(tz)
    start = span_start(sessions, end, weeks).astimezone(tz)
    span = (end - start).total_seconds()
    days = span / 86400
    series = {leg: [(t, v) for t, v in _leg_points(sessions, leg, "held_s", tz) if t >= start]
              for leg in LEGS}
    stopped = {leg: [(t, v) for t, v in _stopped(sessions, leg, tz) if t >= start]
               for leg in LEGS}
    steady = {leg: [(t, v) for t, v in _leg_points(sessions, leg, "steadiness", tz)
                    if t >= start] for leg in LEGS}
    top = max([60.0] + [v for pts in series.values() for _, v in pts])
    top = float(((int(top) + 59) // 60) * 60)

    def x(t: datetime) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * (t - start).total_seconds() / span

    def y(v: float, hi: float) -> float:
        return PAD_T + (H - PAD_T - PAD_B) * (1 - v / hi)

    n = sum(len(p) for p in series.values())
    cut = sum(len(p) for p in stopped.values())
    title = (f"Hold time per leg, last {round(days)} days: {n} holds" if n
             else f"Hold time per leg, last {round(days)} days: no holds yet")
    if cut:
        title += f", {cut} stopped early (marked on the axis)"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{escape(title)}" class="chart">', f"<title>{escape(title)}</title>"]
    for i in range(5):
        v = top * i / 4
        yy = y(v, top)
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy:.1f}" '
                   f'y2="{yy:.1f}"/>')
        out.append(f'<text class="axis" x="{PAD_L - 6}" y="{yy + 4:.1f}" '
                   f'text-anchor="end">{v:.0f}</text>')
    gap = next((d for d in TICK_DAYS if days / d <= 6), TICK_DAYS[-1])
    tick = datetime.combine(end.date(), datetime.min.time(), tz)
    while tick >= start:
        out.append(f'<text class="axis" x="{x(tick):.1f}" y="{H - 8}" text-anchor="middle">'
                   f'{tick:%d %b}</text>')
        tick -= timedelta(days=gap)
    out.append(f'<text class="axis" x="{PAD_L - 6}" y="{PAD_T - 6}" text-anchor="end">s</text>')
    for leg in LEGS:
        pts = series[leg]
        if len(pts) > 1:
            path = " ".join(f"{x(t):.1f},{y(v, top):.1f}" for t, v in pts)
            out.append(f'<polyline class="line {leg}" points="{path}"/>')
        for t, v in pts:
            out.append(f'<circle class="dot {leg}" cx="{x(t):.1f}" cy="{y(v, top):.1f}" r="3">'
                       f"<title>{leg} {t:%d %b}: {v:.0f} s</title></circle>")
        base = H - PAD_B - 5
        for t, held in stopped[leg]:
            xx = x(t)
            out.append(f'<path class="mark {leg}" d="M{xx - 3:.1f} {base - 3:.1f}l6 6m0 -6l-6 6">'
                       f"<title>{leg} {t:%d %b}: stopped after {held:.0f} s</title></path>")
        spts = steady[leg]
        if len(spts) > 1:
            path = " ".join(f"{x(t):.1f},{y(v, 100):.1f}" for t, v in spts)
            out.append(f'<polyline class="line steady {leg}" points="{path}"/>')
    lx, ly = PAD_L + 4, 10
    for leg in LEGS:
        out.append(f'<circle class="dot {leg}" cx="{lx}" cy="{ly - 4}" r="4"/>'
                   f'<text class="legend" x="{lx + 8}" y="{ly}">{leg} leg</text>')
        lx += 70
    if cut:
        mx, my = W - PAD_R - 84, ly + 12  # a second legend row, right
        out.append(f'<path class="mark" d="M{mx} {my - 7}l6 6m0 -6l-6 6"/>'
                   f'<text class="legend" x="{mx + 10}" y="{my}">stopped early</text>')
    if any(steady.values()):
        out.append(f'<line class="line steady" x1="{lx}" x2="{lx + 16}" y1="{ly - 4}" '
                   f'y2="{ly - 4}"/><text class="legend" x="{lx + 20}" y="{ly}">'
                   "steadiness (right axis)</text>")
        for v in (0, 50, 100):
            out.append(f'<text class="axis steady" x="{W - PAD_R + 4}" y="{y(v, 100) + 4:.1f}">'
                       f"{v}</text>")
    out.append("</svg>")
    return "".join(out)


def calendar(sessions: Sequence[SessionRecord], now: datetime, tz: tzinfo,
             weeks: int = 12) -> dict[str, Any]:
    """Stretch days for the page's calendar: Monday-first weeks, each day 0/1/2
    (nothing / started but not complete / complete), and the streak. A session whose date
    cannot be trusted (device.core.timetrust) is on no day."""
    today = local_day(now, tz)
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    marks: dict[date, int] = {}
    sessions = [s for s in sessions if s.trusted]
    for s in sessions:
        day = local_day(s.started, tz)
        if day >= first:
            marks[day] = max(marks.get(day, 0), 2 if s.outcome == "complete" else 1)
    rows = []
    for w in range(weeks):
        monday = first + timedelta(weeks=w)
        rows.append({"week": monday.isoformat(),
                     "days": [marks.get(monday + timedelta(days=d), 0)
                              if monday + timedelta(days=d) <= today else -1
                              for d in range(7)]})
    complete = [s.started for s in sessions if s.outcome == "complete"]
    return {"weeks": rows, "streak": streak_days(complete, now, tz),
            "today": today.isoformat()}
