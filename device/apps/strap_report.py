"""``history --report FILE``: a one-page HTML report of the strap's measure, per leg over
weeks, to hand to a physiotherapist.

Per ISO week (Monday first) and leg: holds with a relaxation fit, the median settled force,
relaxation at 30 s, time constant and tightness index, the answers to "how tight?" and
the holds that were over-pulled; the right-left asymmetry of the weekly index; and an
inline SVG chart of each leg's index per session. Self-contained (no script, no fonts, no
network), printable on one page. Text in the project's own words.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from device.core.records import LEGS, HoldRecord, SessionRecord
from device.core.tightness import asymmetry

ANSWER_WORDS = {"easy": "easy", "tight": "tight", "very_tight": "very tight"}


def _median(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _cell(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return "–" if value is None else fmt.format(value) + unit


def weekly_rows(sessions: Sequence[SessionRecord], tz: tzinfo
                ) -> list[tuple[date, dict[str, dict[str, object]]]]:
    """(Monday, {leg: figures}) per week with any hold, oldest first."""
    weeks: dict[date, dict[str, list[HoldRecord]]] = {}
    for s in sessions:
        day = s.started.astimezone(tz).date()
        monday = day - timedelta(days=day.weekday())
        legs = weeks.setdefault(monday, {leg: [] for leg in LEGS})
        for h in s.holds:
            legs[h.leg].append(h)
    rows = []
    for monday in sorted(weeks):
        figures: dict[str, dict[str, object]] = {}
        for leg, holds in weeks[monday].items():
            fitted = [h for h in holds if h.settled is not None]
            answers: dict[str, int] = {}
            for h in holds:
                if h.tightness:
                    answers[h.tightness] = answers.get(h.tightness, 0) + 1
            figures[leg] = {
                "holds": len(holds), "fitted": len(fitted),
                "settled": _median(h.settled for h in fitted),
                "relax_30": _median(h.relax_30 for h in fitted),
                "tau_s": _median(h.tau_s for h in fitted),
                "index": _median(h.index for h in fitted),
                "answers": answers,
                "overpulled": sum(1 for h in holds if (h.overpull_s or 0) > 0),
            }
        rows.append((monday, figures))
    return rows


def index_chart(sessions: Sequence[SessionRecord], width: int = 640, height: int = 180) -> str:
    """An SVG line per leg: its mean tightness index per session (100 marked)."""
    points: dict[str, list[tuple[datetime, float]]] = {leg: [] for leg in LEGS}
    for s in sessions:
        for leg in LEGS:
            values = [h.index for h in s.holds if h.leg == leg and h.index is not None]
            if values:
                points[leg].append((s.started, sum(values) / len(values)))
    every = [p for leg in LEGS for p in points[leg]]
    if not every:
        return "<p>No hold with a strap fit yet.</p>"
    t0 = min(t for t, _ in every)
    span = max((max(t for t, _ in every) - t0).total_seconds(), 1.0)
    low = min(min(v for _, v in every), 90.0)
    high = max(max(v for _, v in every), 110.0)
    pad = 30

    def xy(t: datetime, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (t - t0).total_seconds() / span
        y = height - pad - (height - 2 * pad) * (v - low) / (high - low)
        return round(x, 1), round(y, 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" '
             'aria-label="tightness index per session, each leg">']
    _, y100 = xy(t0, 100.0)
    parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y100}" y2="{y100}" '
                 'stroke="#999" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="2" y="{y100 + 4}" font-size="10">100</text>')
    colours = {"right": "#c0392b", "left": "#2471a3"}
    for n, leg in enumerate(LEGS):
        if not points[leg]:
            continue
        coords = " ".join(f"{x},{y}" for x, y in (xy(t, v) for t, v in points[leg]))
        parts.append(f'<polyline fill="none" stroke="{colours[leg]}" stroke-width="2" '
                     f'points="{coords}"/>')
        parts.append(f'<text x="{pad + 90 * n}" y="12" font-size="11" '
                     f'fill="{colours[leg]}">{leg}</text>')
    parts.append("</svg>")
    return "".join(parts)


def report_html(sessions: Sequence[SessionRecord], tz: tzinfo, now: datetime,
                units: str = "kg or rel") -> str:
    """The one-page report (UTF-8 HTML)."""
    rows = weekly_rows(sessions, tz)
    esc = html.escape
    head = ["week", "leg", "holds (fitted)", f"settled ({units})", "relaxed by 30 s",
            "tau", "index", "answers", "over-pulled"]
    body = []
    for monday, legs in rows:
        asym = asymmetry(legs["right"]["index"], legs["left"]["index"])  # type: ignore[arg-type]
        for n, leg in enumerate(LEGS):
            f = legs[leg]
            answers = f["answers"]
            assert isinstance(answers, dict)
            said = ", ".join(f"{ANSWER_WORDS[k]} {v}" for k, v in answers.items()) or "–"
            over = int(f["overpulled"])  # type: ignore[call-overload]
            week = esc(monday.isoformat()) if n == 0 else ""
            body.append(
                f"<tr><td>{week}</td><td>{leg}</td><td>{f['holds']} ({f['fitted']})</td>"
                f"<td>{_cell(f['settled'], '{:.1f}')}</td>"  # type: ignore[arg-type]
                f"<td>{_cell(f['relax_30'], '{:.0f}', ' %')}</td>"  # type: ignore[arg-type]
                f"<td>{_cell(f['tau_s'], '{:.0f}', ' s')}</td>"  # type: ignore[arg-type]
                f"<td>{_cell(f['index'])}</td><td>{esc(said)}</td>"  # type: ignore[arg-type]
                f"<td>{'<b>' + str(over) + '</b>' if over else '–'}</td></tr>")
        body.append(f'<tr class="asym"><td></td><td colspan="8">right - left: index '
                    f"{_cell(asym, '{:+.0f}', ' %')}</td></tr>")
    table = ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>") if rows else (
        "<p>No sessions recorded yet.</p>")
    first = sessions[0].started.astimezone(tz).date().isoformat() if sessions else "–"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Hamstring stretch: strap report</title>
<style>
body {{ font: 12px/1.4 sans-serif; margin: 1.5em; max-width: 50em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: right; }}
th:nth-child(-n+2), td:nth-child(-n+2), td:nth-child(8) {{ text-align: left; }}
tr.asym td {{ color: #555; font-style: italic; text-align: left; }}
h1 {{ font-size: 18px; }} h2 {{ font-size: 14px; margin-top: 1.2em; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Hamstring stretch: what the strap measured</h1>
<p>Sessions from {esc(first)} to {esc(now.astimezone(tz).date().isoformat())}; forces in
{esc(units)} (kg once the strap is calibrated, relative units before).</p>
<h2>Tightness index per session (100 = this leg's first weeks)</h2>
{index_chart(sessions)}
<h2>Per week (medians)</h2>
{table}
<h2>How to read it</h2>
<p>Held still, a stretched hamstring gives way: the pull on the strap falls, quickly at first.
For each hold the box fits F(t) = F_inf + (F0 - F_inf) exp(-t / tau), leaving out bouncing,
hard pulls and slack. <b>Settled</b> is the force where the person settled (F0),
<b>relaxed by 30 s</b> the share of it gone 30 s later, <b>tau</b> how fast (s), and the
<b>index</b> the force still needed after 30 s against the same leg's first six fitted holds.
<b>Answers</b> are the person's own ("how tight was that?"); <b>over-pulled</b> counts holds in
which the strap was pulled well past the settled level (the box told them to ease off).</p>
<p>Published figures for comparison: about 33 % relaxation over a 90 s static hamstring
stretch (Magnusson et al. 1996, Scand J Med Sci Sports 6:323-8), most of it within about 45 s
(Magnusson et al. 1995, Scand J Med Sci Sports 5:342-7), and about 25 % over 30 s before and
21 % after a 10-week programme (Peixoto et al. 2015, Muscle Nerve 51:761-4).</p>
<p><b>Limits.</b> The strap measures force, not the leg's angle: a higher index can mean a
tighter leg or a deeper stretch. Pulling with the arms mixes their movement into the curve.
This is a record of home practice, not a diagnosis.</p>
</body></html>
"""


def write_report(sessions: Sequence[SessionRecord], path: Path | str, tz: tzinfo,
                 now: datetime, units: str = "kg or rel") -> None:
    """Write ``report_html`` to ``path`` (UTF-8)."""
    Path(path).write_text(report_html(sessions, tz, now, units), encoding="utf-8")
